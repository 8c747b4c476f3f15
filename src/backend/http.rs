//! Plumbing shared by the HTTP backends: one reqwest client per backend, a reusable line
//! buffer for NDJSON/SSE bodies, deadline handling for the first-token and total timeouts,
//! and the mapping of transport failures onto [`BackendError`].

use super::{BackendError, TimeoutPhase};
use crate::spec::Timeouts;
use std::error::Error as _;
use std::ops::Range;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Longest error body we keep from a failed response (the message is all we want).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Builds the client: HTTP/1.1, connect timeout from the config, no overall timeout
/// (first-token and total are enforced per call so that each gets its own error kind).
/// `fresh_connections` keeps no idle connection (see `BackendConfig::fresh_connections`).
pub(crate) fn client(
    t: &Timeouts,
    fresh_connections: bool,
) -> Result<reqwest::Client, BackendError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(secs(t.connect_s, "connect_s")?)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(30));
    if fresh_connections {
        b = b.pool_max_idle_per_host(0);
    }
    b.build()
        .map_err(|e| BackendError::InvalidRequest(format!("cannot build HTTP client: {e}")))
}

fn secs(s: f64, what: &str) -> Result<Duration, BackendError> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        BackendError::InvalidRequest(format!(
            "timeout {what} must be a positive number of seconds, found {s}"
        ))
    })
}

/// Checks every configured endpoint is an http(s) URL and returns them without a trailing
/// slash, so that paths can be appended.
pub(crate) fn base_urls(urls: &[String]) -> Result<Vec<String>, BackendError> {
    if urls.is_empty() {
        return Err(BackendError::InvalidRequest(
            "the backend needs at least one url".into(),
        ));
    }
    urls.iter().map(|u| base_url(u)).collect()
}

/// Normalises one endpoint URL (trailing slash removed; must parse as http or https).
pub(crate) fn base_url(u: &str) -> Result<String, BackendError> {
    let parsed = reqwest::Url::parse(u)
        .map_err(|e| BackendError::InvalidRequest(format!("bad endpoint url {u:?}: {e}")))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(BackendError::InvalidRequest(format!(
            "endpoint url {u:?} must start with http:// or https://"
        )));
    }
    Ok(u.trim_end_matches('/').to_string())
}

/// The two per-call deadlines, enforced with one reusable timer (no allocation per chunk).
pub(crate) struct Deadlines {
    connect_s: f64,
    first_token: Instant,
    total: Instant,
    first_token_s: f64,
    total_s: f64,
    sleep: Pin<Box<Sleep>>,
    got_first: bool,
}

impl Deadlines {
    /// Starts both clocks now (right before the request is sent).
    pub(crate) fn start(t: &Timeouts) -> Result<Self, BackendError> {
        let now = Instant::now();
        let first_token = now + secs(t.first_token_s, "first_token_s")?;
        let total = now + secs(t.total_s, "total_s")?;
        Ok(Self {
            connect_s: t.connect_s,
            first_token,
            total,
            first_token_s: t.first_token_s,
            total_s: t.total_s,
            sleep: Box::pin(tokio::time::sleep_until(first_token.min(total))),
            got_first: false,
        })
    }

    /// Deadlines for a metadata request (version, tags, models): only the total applies.
    pub(crate) fn metadata(t: &Timeouts) -> Result<Self, BackendError> {
        let mut d = Self::start(t)?;
        d.first_token_seen();
        Ok(d)
    }

    /// After the first token only the total deadline remains.
    pub(crate) fn first_token_seen(&mut self) {
        if !self.got_first {
            self.got_first = true;
            self.sleep.as_mut().reset(self.total);
        }
    }

    /// The error for whichever deadline fired. Before the first token it is always a
    /// first-token timeout, even when the total deadline is the one that fired (with only
    /// `timeout_s` set the two are equal): a server that never started answering is a
    /// first-token stall, not a slow generation.
    fn expired(&self) -> BackendError {
        if !self.got_first {
            BackendError::Timeout {
                phase: TimeoutPhase::FirstToken,
                after_s: if self.first_token <= self.total {
                    self.first_token_s
                } else {
                    self.total_s
                },
            }
        } else {
            BackendError::Timeout {
                phase: TimeoutPhase::Total,
                after_s: self.total_s,
            }
        }
    }

    /// Awaits `fut` unless the current deadline passes first.
    pub(crate) async fn run<F: std::future::Future>(
        &mut self,
        fut: F,
    ) -> Result<F::Output, BackendError> {
        tokio::select! {
            biased;
            out = fut => Ok(out),
            _ = self.sleep.as_mut() => Err(self.expired()),
        }
    }
}

/// Sends a request within the deadlines, mapping failures and non-2xx statuses.
pub(crate) async fn send(
    rb: reqwest::RequestBuilder,
    endpoint: &str,
    deadlines: &mut Deadlines,
    model: &str,
    hint: fn(&str) -> String,
) -> Result<reqwest::Response, BackendError> {
    let resp = deadlines
        .run(rb.send())
        .await?
        .map_err(|e| transport_error(e, endpoint, deadlines.connect_s))?;
    check_status(resp, deadlines, model, hint).await
}

/// The next piece of a streamed body within the deadlines; `None` at the end of the body.
#[inline]
pub(crate) async fn next_chunk(
    resp: &mut reqwest::Response,
    deadlines: &mut Deadlines,
) -> Result<Option<bytes::Bytes>, BackendError> {
    deadlines
        .run(resp.chunk())
        .await?
        .map_err(|e| BackendError::Reset { message: chain(&e) })
}

/// Reads a small JSON answer (version, tags, models) within the deadlines.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    mut resp: reqwest::Response,
    deadlines: &mut Deadlines,
) -> Result<T, BackendError> {
    let mut body = Vec::new();
    while let Some(c) = next_chunk(&mut resp, deadlines).await? {
        body.extend_from_slice(&c);
        if body.len() > 16 * 1024 * 1024 {
            return Err(BackendError::Malformed {
                message: "metadata answer larger than 16 MiB".into(),
                line: String::new(),
            });
        }
    }
    serde_json::from_slice(&body).map_err(|e| BackendError::Malformed {
        message: e.to_string(),
        line: quote_line(&body),
    })
}

/// Turns a non-2xx response into an error carrying the server's own message.
async fn check_status(
    resp: reqwest::Response,
    deadlines: &mut Deadlines,
    model: &str,
    hint: fn(&str) -> String,
) -> Result<reqwest::Response, BackendError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = deadlines.run(read_capped(resp)).await?;
    let message = error_message(&body);
    if status.as_u16() == 404 && mentions_missing_model(&message) {
        return Err(BackendError::ModelNotFound {
            model: model.to_string(),
            hint: hint(model),
        });
    }
    Err(BackendError::Http {
        status: status.as_u16(),
        message,
    })
}

/// Reads at most [`MAX_ERROR_BODY`] bytes of a body; a broken body just ends early.
async fn read_capped(mut resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(c)) = resp.chunk().await {
        let room = MAX_ERROR_BODY.saturating_sub(out.len());
        out.extend_from_slice(&c[..c.len().min(room)]);
        if out.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    out
}

/// The server's message: Ollama's `{"error": "..."}`, OpenAI's `{"error": {"message": ...}}`,
/// vLLM's `{"message": ...}`, or the body as text.
pub(crate) fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let m = match &v["error"] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string),
            _ => None,
        }
        .or_else(|| v["message"].as_str().map(str::to_string))
        .or_else(|| v["detail"].as_str().map(str::to_string));
        if let Some(m) = m {
            return m;
        }
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    if text.is_empty() {
        "(empty body)".to_string()
    } else {
        text
    }
}

/// Whether a 404's message is about a missing model (Ollama: "model 'x' not found";
/// vLLM: "The model `x` does not exist.").
fn mentions_missing_model(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("model") && (m.contains("not found") || m.contains("does not exist"))
}

/// Maps a reqwest error raised before or while reading the body.
pub(crate) fn transport_error(e: reqwest::Error, endpoint: &str, connect_s: f64) -> BackendError {
    if e.is_connect() {
        if io_kind(&e) == Some(std::io::ErrorKind::ConnectionRefused) {
            return BackendError::ConnectionRefused {
                endpoint: endpoint.to_string(),
            };
        }
        if e.is_timeout() || chain_mentions(&e, "timed out") {
            return BackendError::Timeout {
                phase: TimeoutPhase::Connect,
                after_s: connect_s,
            };
        }
        return BackendError::Connect {
            endpoint: endpoint.to_string(),
            message: chain(&e),
        };
    }
    if e.is_builder() {
        return BackendError::InvalidRequest(chain(&e));
    }
    BackendError::Reset { message: chain(&e) }
}

fn io_kind(e: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        src = s.source();
    }
    None
}

fn chain_mentions(e: &reqwest::Error, needle: &str) -> bool {
    chain(e).to_ascii_lowercase().contains(needle)
}

/// The error and its causes on one line (reqwest's top-level message alone is vague).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

/// Splits a byte stream into lines without copying each line out: bytes are appended to one
/// buffer that is reused for the whole call, and lines are handed back as ranges into it.
#[derive(Debug, Default)]
pub struct LineBuf {
    buf: Vec<u8>,
    /// Start of the first unconsumed byte.
    pos: usize,
}

impl LineBuf {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
            pos: 0,
        }
    }

    /// Appends received bytes, first dropping the lines already consumed.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line (without `\n` or `\r\n`), as a range for [`LineBuf::get`].
    pub fn next_line(&mut self) -> Option<Range<usize>> {
        let rest = &self.buf[self.pos..];
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let start = self.pos;
        let mut end = start + nl;
        self.pos = end + 1;
        if end > start && self.buf[end - 1] == b'\r' {
            end -= 1;
        }
        Some(start..end)
    }

    pub fn get(&self, r: Range<usize>) -> &[u8] {
        &self.buf[r]
    }

    /// Bytes after the last newline (a final line the server did not terminate).
    pub fn take_rest(&mut self) -> Option<Range<usize>> {
        let r = self.pos..self.buf.len();
        self.pos = self.buf.len();
        let trimmed = trim_ascii(&self.buf[r.clone()]);
        if trimmed.is_empty() {
            None
        } else {
            Some(r)
        }
    }
}

pub(crate) fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// A line quoted for an error message, cut to a readable length.
pub(crate) fn quote_line(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    let mut out: String = s.chars().take(200).collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// Nanoseconds (Ollama's durations) to milliseconds.
pub(crate) fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(lb: &mut LineBuf) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(r) = lb.next_line() {
            out.push(String::from_utf8_lossy(lb.get(r)).into_owned());
        }
        out
    }

    #[test]
    fn lines_split_across_pushes_and_crlf() {
        let mut lb = LineBuf::with_capacity(16);
        lb.push(b"{\"a\":1}\r\n{\"b\"");
        assert_eq!(lines(&mut lb), vec!["{\"a\":1}"]);
        lb.push(b":2}\n\n");
        assert_eq!(lines(&mut lb), vec!["{\"b\":2}", ""]);
        lb.push(b"tail");
        assert_eq!(lines(&mut lb), Vec::<String>::new());
        let r = lb.take_rest().unwrap();
        assert_eq!(lb.get(r), b"tail");
        assert!(lb.take_rest().is_none());
    }

    #[test]
    fn error_messages_of_each_server_family() {
        assert_eq!(
            error_message(br#"{"error":"model 'x' not found"}"#),
            "model 'x' not found"
        );
        assert_eq!(
            error_message(br#"{"error":{"message":"bad key","type":"auth"}}"#),
            "bad key"
        );
        assert_eq!(
            error_message(br#"{"object":"error","message":"The model `x` does not exist."}"#),
            "The model `x` does not exist."
        );
        assert_eq!(
            error_message(b"Internal Server Error"),
            "Internal Server Error"
        );
        assert_eq!(error_message(b""), "(empty body)");
        assert!(mentions_missing_model("model 'gemma3' not found"));
        assert!(mentions_missing_model("The model `x` does not exist."));
        assert!(!mentions_missing_model("page not found"));
    }

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(
            base_urls(&["http://127.0.0.1:11434/".into()]).unwrap(),
            vec!["http://127.0.0.1:11434"]
        );
        assert!(base_urls(&[]).is_err());
        assert!(base_urls(&["ftp://x".into()]).is_err());
        assert!(base_urls(&["not a url".into()]).is_err());
    }
}
