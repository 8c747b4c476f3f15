//! Client-side timing of a streamed generation from one monotonic clock.
//!
//! The per-chunk path is one `Instant::now()` and one push into a pre-sized vector: no
//! formatting, no allocation beyond the vector's occasional growth.

use serde::{Deserialize, Serialize};
use std::time::Instant;

/// What the client measured. All times in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientTiming {
    /// Request written → first non-empty token chunk (includes any model load).
    pub ttft_ms: Option<f64>,
    /// Gaps between successive non-empty token chunks.
    pub itl_ms: Vec<f64>,
    /// Request written → final chunk.
    pub e2e_ms: f64,
    /// Non-empty token chunks received.
    pub chunks: u64,
}

impl ClientTiming {
    /// Median inter-token gap (type-7 interpolation), if there are any gaps.
    pub fn itl_p50_ms(&self) -> Option<f64> {
        if self.itl_ms.is_empty() {
            return None;
        }
        let mut v = self.itl_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let h = (v.len() - 1) as f64 * 0.5;
        let lo = h.floor() as usize;
        let hi = h.ceil() as usize;
        Some(v[lo] + (h - lo as f64) * (v[hi] - v[lo]))
    }
}

/// Stopwatch for one call: start it when the request is written, feed it chunks.
#[derive(Debug)]
pub struct ClientTimer {
    start: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    itl_ms: Vec<f64>,
    chunks: u64,
}

impl ClientTimer {
    /// Starts the clock now.
    pub fn start() -> Self {
        Self::start_at(Instant::now())
    }

    /// Starts the clock at `start` instead of now (to replay a known timeline).
    pub fn start_at(start: Instant) -> Self {
        Self {
            start,
            first: None,
            last: None,
            itl_ms: Vec::with_capacity(1024),
            chunks: 0,
        }
    }

    /// Records a chunk arriving now; empty chunks (keep-alives, role-only deltas) do not count.
    #[inline]
    pub fn chunk(&mut self, non_empty: bool) {
        if non_empty {
            self.chunk_at(Instant::now());
        }
    }

    #[inline]
    pub(crate) fn chunk_at(&mut self, now: Instant) {
        if self.first.is_none() {
            self.first = Some(now);
        }
        if let Some(prev) = self.last {
            self.itl_ms.push(ms(now - prev));
        }
        self.last = Some(now);
        self.chunks += 1;
    }

    /// Time since start, for timeout checks.
    pub fn elapsed_ms(&self) -> f64 {
        ms(self.start.elapsed())
    }

    pub(crate) fn has_first_token(&self) -> bool {
        self.first.is_some()
    }

    /// Stops the clock at the final chunk (now).
    pub fn finish(self) -> ClientTiming {
        self.finish_at(Instant::now())
    }

    pub(crate) fn finish_at(self, end: Instant) -> ClientTiming {
        ClientTiming {
            ttft_ms: self.first.map(|f| ms(f - self.start)),
            itl_ms: self.itl_ms,
            e2e_ms: ms(end - self.start),
            chunks: self.chunks,
        }
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ttft_itl_e2e_from_instants() {
        let t0 = Instant::now();
        let mut t = ClientTimer::start_at(t0);
        t.chunk_at(t0 + Duration::from_millis(100));
        t.chunk_at(t0 + Duration::from_millis(130));
        t.chunk_at(t0 + Duration::from_millis(170));
        let c = t.finish_at(t0 + Duration::from_millis(200));
        assert!((c.ttft_ms.unwrap() - 100.0).abs() < 1e-6);
        assert_eq!(c.itl_ms.len(), 2);
        assert!((c.itl_ms[0] - 30.0).abs() < 1e-6);
        assert!((c.itl_ms[1] - 40.0).abs() < 1e-6);
        assert!((c.e2e_ms - 200.0).abs() < 1e-6);
        assert!((c.itl_p50_ms().unwrap() - 35.0).abs() < 1e-6);
        assert_eq!(c.chunks, 3);
    }

    #[test]
    fn empty_chunks_do_not_start_ttft() {
        let mut t = ClientTimer::start();
        t.chunk(false);
        assert!(!t.has_first_token());
        let c = t.finish();
        assert_eq!(c.ttft_ms, None);
        assert_eq!(c.itl_p50_ms(), None);
    }
}
