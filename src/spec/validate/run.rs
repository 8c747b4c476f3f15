//! `[corpus]`, `[run]` and the `[experiment] order`.

use super::*;

impl Validator<'_> {
    /// `[corpus]`: a non-empty path (an existing directory when paths are checked).
    pub(super) fn corpus(&mut self, c: raw::RawCorpus) -> CorpusConfig {
        if c.path.get_ref().trim().is_empty() {
            self.err(span_of(&c.path), "corpus path must not be empty");
        }
        let max_file_bytes = c
            .max_file_bytes
            .as_ref()
            .map(|m| self.int_in(m, "max_file_bytes", 1, i64::MAX) as u64)
            .unwrap_or(DEFAULT_MAX_FILE_BYTES);
        let path = PathBuf::from(c.path.get_ref());
        if self.check_paths && !c.path.get_ref().trim().is_empty() {
            self.corpus_dir(&c.path, &path);
        }
        CorpusConfig {
            path,
            max_file_bytes,
        }
    }

    /// `[run]`: every value in range, [`RunConfig::default`] for what the file leaves out.
    pub(super) fn run(&mut self, r: Option<Spanned<raw::RawRun>>) -> RunConfig {
        match r {
            None => RunConfig::default(),
            Some(r) => {
                let r = r.into_inner();
                let defaults = RunConfig::default();
                RunConfig {
                    concurrency: r
                        .concurrency
                        .as_ref()
                        .map(|c| self.int_in(c, "concurrency", 1, 1024) as u32)
                        .unwrap_or(defaults.concurrency),
                    results_dir: r
                        .results_dir
                        .map(|d| PathBuf::from(d.into_inner()))
                        .unwrap_or(defaults.results_dir),
                    max_calls: r
                        .max_calls
                        .as_ref()
                        .map(|c| self.int_in(c, "max_calls", 1, i64::MAX))
                        .unwrap_or(DEFAULT_MAX_CALLS as i64) as u64,
                    max_failed_share: r
                        .max_failed_share
                        .as_ref()
                        .map(|v| self.failed_share(v))
                        .unwrap_or(DEFAULT_MAX_FAILED_SHARE),
                    unreachable_streak: r
                        .unreachable_streak
                        .as_ref()
                        .map(|c| self.int_in(c, "unreachable_streak", 1, 10_000))
                        .unwrap_or(i64::from(DEFAULT_UNREACHABLE_STREAK))
                        as u32,
                    outage_wait_s: r
                        .outage_wait_s
                        .as_ref()
                        .map(|v| self.seconds_in(v, "outage_wait_s", 0.0))
                        .unwrap_or(DEFAULT_OUTAGE_WAIT_S),
                }
            }
        }
    }

    /// `[experiment] order` (randomized blocks when unset).
    pub(super) fn order(&mut self, o: &Option<Spanned<String>>) -> Order {
        match o.as_ref().map(|o| o.get_ref().as_str()) {
            None | Some("blocks") => Order::Blocks,
            Some("interleaved") | Some("grouped") => Order::Interleaved,
            Some("random") => Order::Random,
            Some("sequential") => Order::Sequential,
            Some(other) => {
                let span = o.as_ref().and_then(span_of);
                self.err(
                span,
                format!("order must be \"blocks\" (randomized blocks, the default), \"interleaved\" (fewest reloads), \"random\" or \"sequential\", found {other:?}"),
            );
                Order::Blocks
            }
        }
    }
}
