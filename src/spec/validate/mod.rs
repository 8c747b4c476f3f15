//! Validation of a parsed experiment file, by section: every problem located (file, line,
//! column) and collected, never the first one only. `mod.rs` holds the validator and the
//! `[experiment]`, `[corpus]` and `[run]` sections; the others have a file each.

mod arms;
mod backend;
mod compare;
mod run;
mod server;

use arms::server_parallel;

use super::*;

/// Validates `raw` (parsed from `text`); every problem found, or the checked [`Spec`].
pub(super) fn run(
    map: &SourceMap,
    file: &Path,
    text: &str,
    raw: RawSpec,
    check_paths: bool,
) -> Result<Spec, Vec<Diagnostic>> {
    let mut v = Validator {
        map,
        diags: Vec::new(),
        limits: (1, DEFAULT_MAX_CALLS),
        check_paths,
        prompt_version: PromptVersion::default(),
        persona_mode: PersonaMode::default(),
        kind: BackendKind::Ollama,
        server: None,
    };
    let spec = v.spec(file, text, raw);
    if v.diags.is_empty() {
        Ok(spec)
    } else {
        Err(v.diags)
    }
}

/// The validator: the located problems found so far and what later sections need of
/// earlier ones.
pub(super) struct Validator<'a> {
    pub(super) map: &'a SourceMap<'a>,
    pub(super) diags: Vec<Diagnostic>,
    /// (units per cell = repetitions + warm-up, `[run] max_calls`) for the grid bound.
    pub(super) limits: (u32, u64),
    /// Check paths on this machine (the corpus directory).
    pub(super) check_paths: bool,
    /// `[experiment]` defaults that arms and agents inherit.
    pub(super) prompt_version: PromptVersion,
    pub(super) persona_mode: PersonaMode,
    /// `[backend] kind` and `[server]`: which options a cell can carry (see [`route`]).
    pub(super) kind: BackendKind,
    pub(super) server: Option<ServerConfig>,
}

pub(super) fn span_of<T>(s: &Spanned<T>) -> Option<Range<usize>> {
    Some(s.span())
}

impl Validator<'_> {
    pub(super) fn err(&mut self, span: Option<Range<usize>>, msg: impl Into<String>) {
        let d = self.map.at(span, msg);
        // One grid axis checked value by value says a problem of the axis once per line.
        if !self
            .diags
            .iter()
            .any(|x| x.line == d.line && x.message == d.message)
        {
            self.diags.push(d);
        }
    }

    pub(super) fn int_in(&mut self, v: &Spanned<i64>, what: &str, min: i64, max: i64) -> i64 {
        let x = *v.get_ref();
        if x < min || x > max {
            self.err(
                span_of(v),
                format!("{what} must be between {min} and {max}, found {x}"),
            );
            return min;
        }
        x
    }

    /// A timeout: positive, finite, at most [`MAX_SECONDS`].
    pub(super) fn positive_f64(&mut self, v: &Spanned<f64>, what: &str) -> f64 {
        let x = *v.get_ref();
        if !(x.is_finite() && x > 0.0 && x <= MAX_SECONDS) {
            self.err(
                span_of(v),
                format!(
                    "{what} must be a positive number of seconds up to {MAX_SECONDS} (one day), found {}",
                    number(x)
                ),
            );
            return 1.0;
        }
        x
    }

    /// A wait in seconds from `min` to [`MAX_SECONDS`].
    pub(super) fn seconds_in(&mut self, v: &Spanned<f64>, what: &str, min: f64) -> f64 {
        let x = *v.get_ref();
        if !(x.is_finite() && x >= min && x <= MAX_SECONDS) {
            self.err(
                span_of(v),
                format!(
                    "{what} must be a number of seconds from {min} to {MAX_SECONDS} (one day), found {}",
                    number(x)
                ),
            );
            return min;
        }
        x
    }

    pub(super) fn failed_share(&mut self, v: &Spanned<f64>) -> f64 {
        let x = *v.get_ref();
        if x > 0.0 && x <= 1.0 {
            return x;
        }
        self.err(
            span_of(v),
            format!("max_failed_share must be a share above 0 and at most 1 (0.5 = half of the last {FAILED_SHARE_WINDOW} calls; 1 = never pause for failures), found {x}"),
        );
        DEFAULT_MAX_FAILED_SHARE
    }

    fn spec(&mut self, file: &Path, text: &str, raw: RawSpec) -> Spec {
        let hash = hex(&Sha256::digest(text.as_bytes()));
        let e = raw.experiment.into_inner();
        let name = e.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            self.err(
                span_of(&e.name),
                format!("experiment name must be a non-empty word of letters, digits, '_', '-' or '.' (it names a results folder), found {:?}", e.name.get_ref()),
            );
        }
        let defaults = Experiment::default();
        let repetitions = e
            .repetitions
            .as_ref()
            .map(|r| self.int_in(r, "repetitions", 1, 100_000) as u32)
            .unwrap_or(defaults.repetitions);
        let warmup = e
            .warmup
            .as_ref()
            .map(|r| self.int_in(r, "warmup", 0, 1000) as u32)
            .unwrap_or(defaults.warmup);
        let seed = e
            .seed
            .as_ref()
            .map(|r| self.int_in(r, "seed", 0, i64::MAX) as u64)
            .unwrap_or(defaults.seed);
        let order = self.order(&e.order);

        self.prompt_version = self.prompt_version(&e.prompt_version, PromptVersion::default());
        self.persona_mode = self.persona_mode(&e.persona_mode, PersonaMode::default());
        let num_parallel = raw
            .backend
            .get_ref()
            .num_parallel
            .as_ref()
            .map(|n| self.int_in(n, "num_parallel", 1, 1024) as u32);
        self.kind = match raw.backend.get_ref().kind.get_ref().as_str() {
            "openai" => BackendKind::Openai,
            "embedded" => BackendKind::Embedded,
            _ => BackendKind::Ollama,
        };
        self.server = raw.server.map(|s| self.server(s));
        let backend = self.backend(raw.backend);
        let corpus = self.corpus(raw.corpus.into_inner());
        let run = self.run(raw.run);
        self.limits = (repetitions + warmup, run.max_calls);
        let mut arms = Vec::new();
        let mut seen: BTreeMap<String, Range<usize>> = BTreeMap::new();
        match &raw.arms {
            None => self.err(
                None,
                "no [[arm]] tables: an experiment needs at least one arm (agent + options)",
            ),
            Some(list) if list.get_ref().is_empty() => self.err(
                span_of(list),
                "no [[arm]] tables: an experiment needs at least one arm",
            ),
            _ => {}
        }
        for arm in raw.arms.into_iter().flat_map(|a| a.into_inner()) {
            let span = arm.span();
            let arm = arm.into_inner();
            let aname = arm.name.get_ref().clone();
            if let Some(first) = seen.get(&aname) {
                let (line, _) = {
                    let d = self.map.at(Some(first.clone()), "");
                    (d.line, d.col)
                };
                self.err(
                    span_of(&arm.name),
                    format!("duplicate arm name {aname:?} (first defined on line {line}); arm names must be unique"),
                );
            } else {
                seen.insert(aname.clone(), arm.name.span());
            }
            if let Some(a) = self.arm(arm, span) {
                arms.push(a);
            }
        }

        let reference = match &e.reference {
            Some(r) => {
                if !arms.is_empty() && !arms.iter().any(|a| &a.name == r.get_ref()) {
                    let names: Vec<_> = arms.iter().map(|a| a.name.as_str()).collect();
                    self.err(
                        span_of(r),
                        format!(
                            "reference arm {:?} is not defined; expected one of: {}",
                            r.get_ref(),
                            names.join(", ")
                        ),
                    );
                }
                r.get_ref().clone()
            }
            None => arms.first().map(|a| a.name.clone()).unwrap_or_default(),
        };

        let compare = self.compare(raw.compare);
        let analysis = self.analysis(raw.analysis);
        let slo = self.slo(raw.slo);
        let tables = self.tables(raw.tables, &arms);

        let num_parallel = server_parallel(&self.server, &arms).or(num_parallel);
        Spec {
            file: file.to_path_buf(),
            source: text.to_string(),
            hash,
            experiment: Experiment {
                name,
                description: e.description,
                repetitions,
                warmup,
                seed,
                order,
                reference,
            },
            backend,
            corpus,
            arms,
            compare,
            analysis,
            run,
            num_parallel,
            tables,
            server: self.server.take(),
            slo,
        }
    }
}
