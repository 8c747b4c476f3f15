//! The plumbing both streaming protocols share: bytes in, complete lines out to a
//! protocol's line parser, token pieces into the [`ClientTimer`] and the text, and the
//! [`Generation`] at the end. Ollama's NDJSON and the OpenAI-compatible SSE differ only in
//! how a line is read ([`LineParser`]).

use super::http::{self, Deadlines, LineBuf};
use super::{BackendError, ClientTimer, Generation, ServerMetrics, TOKENS_FROM_CHUNKS};
use std::time::Instant;

/// What a line parser updates as it reads a body.
#[derive(Debug)]
pub struct StreamState {
    timer: Option<ClientTimer>,
    text: String,
    /// The server's own figures, as far as the body has told them.
    pub server: ServerMetrics,
    /// When the body's end marker arrived.
    pub end: Option<Instant>,
}

impl StreamState {
    /// A token piece arrived now (an empty one is a keep-alive and does not count).
    #[inline]
    pub fn piece(&mut self, piece: &str) {
        if let Some(t) = self.timer.as_mut() {
            t.chunk(!piece.is_empty());
        }
        self.text.push_str(piece);
    }
}

/// One protocol's reading of a line.
pub trait LineParser: Default {
    /// Reads one line (without its newline); true once the body's end marker has been seen.
    fn line(&mut self, raw: &[u8], st: &mut StreamState) -> Result<bool, BackendError>;

    /// The body ended without an end marker: whatever the protocol accepts as the end
    /// instead (the SSE parser: a finished choice). Default: nothing.
    fn end_without_marker(&mut self, _st: &mut StreamState) {}
}

/// Incremental parser of a streamed body, timing each token chunk as it is parsed.
#[derive(Debug)]
pub struct LineStream<P> {
    lines: LineBuf,
    st: StreamState,
    parser: P,
}

impl<P: LineParser> LineStream<P> {
    /// A parser for one body, timing its chunks with `timer` (started when the request was
    /// written).
    pub fn new(timer: ClientTimer) -> Self {
        Self {
            lines: LineBuf::with_capacity(8 * 1024),
            st: StreamState {
                timer: Some(timer),
                text: String::with_capacity(4 * 1024),
                server: ServerMetrics::default(),
                end: None,
            },
            parser: P::default(),
        }
    }

    pub(crate) fn has_first_token(&self) -> bool {
        self.st.timer.as_ref().is_some_and(|t| t.has_first_token())
    }

    /// Parses every complete line in `bytes`; true once the end marker has been seen.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<bool, BackendError> {
        if self.st.end.is_some() {
            return Ok(true);
        }
        self.lines.push(bytes);
        while let Some(r) = self.lines.next_line() {
            if self.parser.line(self.lines.get(r), &mut self.st)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The body ended: a last unterminated line may still hold the end marker; without one
    /// the body is `Truncated` unless the protocol accepts another end.
    pub fn end_of_body(&mut self) -> Result<(), BackendError> {
        if self.st.end.is_none() {
            if let Some(r) = self.lines.take_rest() {
                self.parser.line(self.lines.get(r), &mut self.st)?;
            }
        }
        if self.st.end.is_none() {
            self.parser.end_without_marker(&mut self.st);
        }
        if self.st.end.is_none() {
            return Err(BackendError::Truncated);
        }
        Ok(())
    }

    /// Reads a streamed response to its end marker (or the end of the body) under the call's
    /// deadlines, telling them when the first token arrived.
    pub(crate) async fn read(
        mut self,
        mut resp: reqwest::Response,
        deadlines: &mut Deadlines,
    ) -> Result<Generation, BackendError> {
        while let Some(bytes) = http::next_chunk(&mut resp, deadlines).await? {
            let done = self.feed(&bytes)?;
            if self.has_first_token() {
                deadlines.first_token_seen();
            }
            if done {
                // Drain the terminator so the connection goes back to the pool.
                while let Ok(Ok(Some(_))) = deadlines.run(resp.chunk()).await {}
                return self.finish();
            }
        }
        self.end_of_body()?;
        self.finish()
    }

    /// The generation, timed to the end marker. `Truncated` if it never came.
    pub fn finish(mut self) -> Result<Generation, BackendError> {
        let (Some(end), Some(timer)) = (self.st.end, self.st.timer.take()) else {
            return Err(BackendError::Truncated);
        };
        Ok(Generation {
            text: std::mem::take(&mut self.st.text),
            timing: timer.finish_at(end),
            server: std::mem::take(&mut self.st.server),
        })
    }
}

/// The last fallback for a server that reports no output count: one token per non-empty
/// content chunk (a server may pack several tokens in a chunk, so this can undercount). No
/// prompt count is made up.
pub(crate) fn count_chunks(g: &mut Generation) {
    g.server.output_tokens = Some(g.timing.chunks);
    g.server.tokens_source = Some(TOKENS_FROM_CHUNKS.to_string());
}
