//! The Ollama peer's model scheduler: which model is loaded with which runner options, when
//! it expires, and what a request costs in load time. Modelled on ollama/ollama
//! `server/sched.go` (`needsReload`, the expiry timer, `loadedModels`) and
//! `server/routes.go` (`PsHandler`), at the commit the comments cite.

use crate::{LoadTimes, MockModel};
use rand::Rng;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// The server's default `num_ctx` on a machine with under 23 GiB of VRAM: ollama/ollama
/// `server/routes.go` (VRAM-based default context: 4096 / 32768 / 262144).
pub const DEFAULT_NUM_CTX: u64 = 4096;
/// Vision-capable models get at least this context: ollama/ollama `server/sched.go`
/// `getRunner` ("multimodal models require at least 2048 context").
pub const VISION_MIN_CTX: u64 = 2048;
/// `OLLAMA_KEEP_ALIVE`'s default: ollama/ollama `docs/api.md` ("default: `5m`").
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(300);

/// How long a model stays loaded after its last request (`keep_alive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    For(Duration),
    /// A negative value: ollama/ollama `api/types.go` `Duration.UnmarshalJSON` turns it into
    /// `math.MaxInt64` ns, which `time.Now().Add` makes an expiry ~292 years away.
    Forever,
}

impl KeepAlive {
    /// Ollama's reading of a request's `keep_alive`: a JSON number is seconds, a string is a
    /// Go duration (`"5m"`, `"1h30m"`, `"0"`, `"-1m"`); absent or null is the default.
    /// A string Go cannot parse is the server's 400 error text.
    pub fn from_request(v: Option<&Value>) -> Result<KeepAlive, String> {
        match v {
            None | Some(Value::Null) => Ok(KeepAlive::For(DEFAULT_KEEP_ALIVE)),
            Some(Value::Number(n)) => {
                let s = n.as_f64().unwrap_or(0.0);
                if s < 0.0 {
                    Ok(KeepAlive::Forever)
                } else {
                    Ok(KeepAlive::For(Duration::from_secs_f64(s.min(1e12))))
                }
            }
            Some(Value::String(s)) => match parse_go_duration(s)? {
                (true, d) if !d.is_zero() => Ok(KeepAlive::Forever),
                (_, d) => Ok(KeepAlive::For(d)),
            },
            Some(other) => Err(format!("Unsupported type: '{}'", go_type_name(other))),
        }
    }

    fn after(self, now: SystemTime) -> SystemTime {
        let d = match self {
            KeepAlive::For(d) => d,
            KeepAlive::Forever => Duration::from_nanos(i64::MAX as u64),
        };
        now.checked_add(d).unwrap_or(now)
    }
}

fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
        _ => "string",
    }
}

/// Go's `time.ParseDuration`: (negative, magnitude) or Go's own error text.
pub fn parse_go_duration(orig: &str) -> Result<(bool, Duration), String> {
    let quote = |s: &str| format!("{s:?}");
    let invalid = || format!("time: invalid duration {}", quote(orig));
    let mut s = orig;
    let neg = s.starts_with('-');
    if let Some(r) = s.strip_prefix('-').or_else(|| s.strip_prefix('+')) {
        s = r;
    }
    if s == "0" {
        return Ok((neg, Duration::ZERO));
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !s.is_empty() {
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let num = &s[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        s = &s[num_end..];
        let unit_end = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let unit = &s[..unit_end];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", quote(orig)));
        }
        let ns = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(unit),
                    quote(orig)
                ))
            }
        };
        total += value * ns;
        s = &s[unit_end..];
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    Ok((neg, Duration::from_nanos(total as u64)))
}

/// A time as Go's `time.Time` marshals to JSON (RFC 3339 with nanoseconds, trailing zeros
/// trimmed), in UTC.
pub fn go_time(t: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    let base = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = dt.timestamp_subsec_nanos();
    if nanos == 0 {
        format!("{base}Z")
    } else {
        let frac = format!("{nanos:09}");
        format!("{base}.{}Z", frac.trim_end_matches('0'))
    }
}

/// The runner options that force a reload when they change: ollama/ollama `api/types.go`
/// `Runner` (num_ctx, num_batch, num_gpu, main_gpu, use_mmap, num_thread), compared by
/// `needsReload` in `server/sched.go`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerOpts {
    pub num_ctx: u64,
    pub num_batch: Option<i64>,
    /// -1: "as many layers as fit" (the default).
    pub num_gpu: i64,
    pub main_gpu: Option<i64>,
    pub use_mmap: Option<bool>,
    pub num_thread: Option<i64>,
}

impl RunnerOpts {
    /// The options a request asks for, with the server's defaults and clamps applied
    /// (`getRunner`: at least 4, at least 2048 for vision models; `effectiveContext`: at most
    /// the training context).
    pub fn from_request(options: Option<&Value>, model: &MockModel) -> RunnerOpts {
        let int = |k: &str| -> Option<i64> {
            let v = options?.get(k)?;
            v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
        };
        let mut num_ctx = int("num_ctx")
            .filter(|&n| n > 0)
            .map_or(DEFAULT_NUM_CTX, |n| n as u64)
            .max(4);
        if model.vision {
            num_ctx = num_ctx.max(VISION_MIN_CTX);
        }
        if model.context_length > 0 {
            num_ctx = num_ctx.min(model.context_length);
        }
        RunnerOpts {
            num_ctx,
            num_batch: int("num_batch"),
            num_gpu: int("num_gpu").unwrap_or(-1),
            main_gpu: int("main_gpu"),
            use_mmap: options
                .and_then(|o| o.get("use_mmap"))
                .and_then(Value::as_bool),
            num_thread: int("num_thread"),
        }
    }

    /// `needsReload`: any runner option differs, except that a new `num_gpu` below zero
    /// ("auto") matches whatever offload the loaded runner has.
    fn needs_reload(&self, new: &RunnerOpts) -> bool {
        let mut old = self.clone();
        let mut new = new.clone();
        if new.num_gpu < 0 {
            old.num_gpu = -1;
            new.num_gpu = -1;
        }
        old != new
    }
}

struct Loaded {
    model: MockModel,
    opts: RunnerOpts,
    keep_alive: KeepAlive,
    /// Set when the last request ends (the expiry timer); `None` while requests run.
    expires_at: Option<SystemTime>,
    /// When the (really slept) load finishes; requests arriving before wait for it.
    ready_at: Instant,
    in_flight: u32,
}

/// What one request pays before its first token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadCost {
    /// Really slept by the peer.
    pub sleep: Duration,
    /// Reported as `load_duration`.
    pub reported: Duration,
    pub cold: bool,
}

/// Every loaded model of one peer.
#[derive(Default)]
pub struct Scheduler {
    loaded: Vec<Loaded>,
}

impl Scheduler {
    /// Drops models whose keep-alive ran out with no request running.
    fn expire(&mut self, now: SystemTime) {
        self.loaded
            .retain(|l| l.in_flight > 0 || l.expires_at.is_none_or(|e| e > now));
    }

    /// A request for `model` with `opts` starts now: loads (cold) unless that model is
    /// loaded with options that do not force a reload (warm).
    pub fn begin(
        &mut self,
        model: &MockModel,
        opts: RunnerOpts,
        keep_alive: KeepAlive,
        load: &LoadTimes,
        rng: &mut impl Rng,
    ) -> LoadCost {
        let now = SystemTime::now();
        let now_i = Instant::now();
        self.expire(now);
        let key = crate::norm(&model.name);
        let pos = self
            .loaded
            .iter()
            .position(|l| crate::norm(&l.model.name) == key);
        if let Some(p) = pos {
            let l = &mut self.loaded[p];
            if !l.opts.needs_reload(&opts) {
                l.in_flight += 1;
                l.keep_alive = keep_alive;
                l.expires_at = None;
                let warm = draw(&load.warm, rng);
                // Still loading for an earlier request: wait for it, and report the wait
                // (Ollama's load_duration spans the request's wait for a ready runner).
                let pending = l.ready_at.saturating_duration_since(now_i);
                let reported_pending = if load.cold_sleep_scale > 0.0 {
                    Duration::try_from_secs_f64(pending.as_secs_f64() / load.cold_sleep_scale)
                        .unwrap_or(pending)
                } else {
                    pending
                };
                return LoadCost {
                    sleep: pending + warm,
                    reported: reported_pending + warm,
                    cold: !pending.is_zero(),
                };
            }
            self.loaded.remove(p);
        }
        let reported = draw(&load.cold, rng);
        let scale = if load.cold_sleep_scale.is_finite() {
            load.cold_sleep_scale.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let sleep = reported.mul_f64(scale);
        self.loaded.push(Loaded {
            model: model.clone(),
            opts,
            keep_alive,
            expires_at: None,
            ready_at: now_i + sleep,
            in_flight: 1,
        });
        LoadCost {
            sleep,
            reported,
            cold: true,
        }
    }

    /// The request on `model` ended: start its expiry timer, or unload it now when its
    /// keep-alive is zero (sched.go: "runner with zero duration has gone idle").
    pub fn end(&mut self, model: &str) {
        let now = SystemTime::now();
        let key = crate::norm(model);
        if let Some(p) = self
            .loaded
            .iter()
            .position(|l| crate::norm(&l.model.name) == key)
        {
            let l = &mut self.loaded[p];
            l.in_flight = l.in_flight.saturating_sub(1);
            if l.in_flight == 0 {
                if l.keep_alive == KeepAlive::For(Duration::ZERO) {
                    self.loaded.remove(p);
                } else {
                    l.expires_at = Some(l.keep_alive.after(now));
                }
            }
        }
    }

    /// Unloads `model` now (a load request with `keep_alive: 0`).
    pub fn unload(&mut self, model: &str) {
        let key = crate::norm(model);
        self.loaded.retain(|l| crate::norm(&l.model.name) != key);
    }

    /// Unloads everything (keep-alive expiry, another client's model, `ollama stop`).
    pub fn unload_all(&mut self) {
        self.loaded.clear();
    }

    /// `GET /api/ps`: ollama/ollama `server/routes.go` `PsHandler`, fields of
    /// `api.ProcessModelResponse` (`api/types.go`), longest remaining time first.
    pub fn ps(&mut self) -> Value {
        let now = SystemTime::now();
        self.expire(now);
        let mut rows: Vec<(SystemTime, Value)> = self
            .loaded
            .iter()
            .map(|l| {
                // While a request runs the expiry is not set yet: loadedModels() estimates
                // it from the session duration.
                let exp = l.expires_at.unwrap_or_else(|| l.keep_alive.after(now));
                let (size, vram) = l.model.memory(&l.opts);
                let v = json!({
                    "name": l.model.name, "model": l.model.name, "size": size,
                    "digest": l.model.digest, "details": l.model.details(),
                    "expires_at": go_time(exp), "size_vram": vram,
                    "context_length": l.opts.num_ctx
                });
                (exp, v)
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        json!({ "models": rows.into_iter().map(|r| r.1).collect::<Vec<_>>() })
    }
}

/// A draw from `[start, end)`, or `start` when the range is empty.
pub fn draw(r: &std::ops::Range<Duration>, rng: &mut impl Rng) -> Duration {
    if r.end > r.start {
        rng.gen_range(r.start..r.end)
    } else {
        r.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn go_durations() {
        let d = |s: &str| parse_go_duration(s).map(|(n, d)| (n, d.as_secs_f64()));
        assert_eq!(d("5m"), Ok((false, 300.0)));
        assert_eq!(d("1h30m"), Ok((false, 5400.0)));
        assert_eq!(d("1.5s"), Ok((false, 1.5)));
        assert_eq!(d("300ms"), Ok((false, 0.3)));
        assert_eq!(d("0"), Ok((false, 0.0)));
        assert_eq!(d("-1m"), Ok((true, 60.0)));
        assert_eq!(
            d("10"),
            Err("time: missing unit in duration \"10\"".to_string())
        );
        assert_eq!(
            d("5x"),
            Err("time: unknown unit \"x\" in duration \"5x\"".to_string())
        );
        assert!(d("").is_err() && d("m").is_err() && d("1..2s").is_err());
    }

    #[test]
    fn keep_alive_from_json() {
        let k = |v: Value| KeepAlive::from_request(Some(&v));
        assert_eq!(
            KeepAlive::from_request(None),
            Ok(KeepAlive::For(DEFAULT_KEEP_ALIVE))
        );
        assert_eq!(k(json!(30)), Ok(KeepAlive::For(Duration::from_secs(30))));
        assert_eq!(k(json!(-1)), Ok(KeepAlive::Forever));
        assert_eq!(k(json!("-1m")), Ok(KeepAlive::Forever));
        assert_eq!(k(json!("0")), Ok(KeepAlive::For(Duration::ZERO)));
        assert!(k(json!(true)).is_err());
        // Forever is ~292 years away, as Go's time.Now().Add(math.MaxInt64) is.
        let far = KeepAlive::Forever.after(SystemTime::UNIX_EPOCH);
        assert!(go_time(far).starts_with("2262-"), "{}", go_time(far));
    }

    #[test]
    fn go_time_trims_zeros() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_120_000_000);
        assert_eq!(go_time(t), "2023-11-14T22:13:20.12Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(go_time(t), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn reload_rules() {
        let m = MockModel::default();
        let o = |v: Value| RunnerOpts::from_request(Some(&v), &m);
        let base = o(json!({}));
        assert_eq!(base.num_ctx, DEFAULT_NUM_CTX);
        // gemma3:latest is multimodal: small contexts are raised to 2048, so 512 and 1024
        // are the same runner.
        assert_eq!(o(json!({"num_ctx": 512})).num_ctx, 2048);
        assert!(!o(json!({"num_ctx": 512})).needs_reload(&o(json!({"num_ctx": 1024}))));
        assert!(base.needs_reload(&o(json!({"num_ctx": 8192}))));
        assert!(base.needs_reload(&o(json!({"num_gpu": 10}))));
        // An omitted num_gpu (auto) keeps whatever offload is loaded.
        assert!(!o(json!({"num_gpu": 10})).needs_reload(&base));
        assert!(o(json!({"num_gpu": 10})).needs_reload(&o(json!({"num_gpu": 20}))));
        // Sampling options never reload.
        assert!(!base.needs_reload(&o(json!({"temperature": 0.1, "seed": 3}))));
        assert_eq!(o(json!({"num_ctx": 1_000_000})).num_ctx, m.context_length);
    }

    #[test]
    fn cold_then_warm_then_keep_alive_zero() {
        let m = MockModel::default();
        let mut s = Scheduler::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let load = LoadTimes::default();
        let opts = RunnerOpts::from_request(None, &m);
        let ka = KeepAlive::For(DEFAULT_KEEP_ALIVE);
        let c = s.begin(&m, opts.clone(), ka, &load, &mut rng);
        assert!(c.cold && c.reported >= load.cold.start && c.reported < load.cold.end);
        assert_eq!(c.sleep, c.reported.mul_f64(load.cold_sleep_scale));
        s.end(&m.name);
        std::thread::sleep(c.sleep);
        let w = s.begin(
            &m,
            opts.clone(),
            KeepAlive::For(Duration::ZERO),
            &load,
            &mut rng,
        );
        assert!(!w.cold && w.reported < load.warm.end && w.sleep == w.reported);
        assert_eq!(s.ps()["models"].as_array().unwrap().len(), 1);
        s.end(&m.name);
        assert_eq!(s.ps()["models"], json!([]));
    }
}
