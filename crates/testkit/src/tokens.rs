//! The peer's tokenizer and chat template: deterministic, cheap, and shaped like Gemma's so
//! that every count the peer reports (Ollama `prompt_eval_count`, llama.cpp `usage` and
//! `timings`, the tokenize endpoints) comes from one function a test can call too.
//!
//! It is not Gemma's SentencePiece model, but it has its shape, checked against the real
//! llama-server's `POST /tokenize` with the Gemma 3 270M GGUF: words split into pieces of at
//! most [`MAX_PIECE_CHARS`] characters, a single space is glued to the word after it (as
//! SentencePiece's `▁` does), a run of newlines or of spaces is one token (Gemma: `"\n"` 107,
//! `"\n\n"` 108, `"\n\n\n"` 109, `"  "` 138), every other character is a piece of its own.
//! "tok tok tok " is 4 tokens here as in Gemma, "Summarise the benchmark data." 5 (Gemma: 6,
//! it splits "Summar|ise"), and the template adds 9 as Gemma's does. What matters for the tests is the shape real servers have: a count from
//! tokenizing text differs from the number of streamed chunks, and the chat template adds
//! tokens of its own.

/// Gemma's `<bos>` id (`tokenizer.ggml.bos_token_id = 2` in the Gemma 3 GGUFs).
pub const BOS: u32 = 2;
/// Gemma's `<start_of_turn>` (105), `<end_of_turn>` (106) and `"\n"` (107) ids, the ones the
/// Ollama docs' `context` arrays show (ollama/ollama `docs/api.md`).
pub const START_OF_TURN: u32 = 105;
pub const END_OF_TURN: u32 = 106;
pub const NEWLINE: u32 = 107;
/// Gemma 3's vocabulary size (262144 entries, llama.cpp `n_vocab` for gemma3 GGUFs).
pub const N_VOCAB: u32 = 262_144;
/// Longest run of word characters one token covers (Gemma's 262k vocabulary holds most
/// common words whole).
pub const MAX_PIECE_CHARS: usize = 10;

/// Token ids of `text`, without BOS (llama.cpp `POST /tokenize` with its default
/// `add_special: false`).
pub fn tokenize(text: &str) -> Vec<u32> {
    pieces(text).iter().map(|p| piece_id(p)).collect()
}

/// The text of each token of `text` (llama.cpp's `with_pieces`).
pub fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::with_capacity(chars.len() / 3 + 1);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let word_start = if c == ' ' && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric()) {
            Some(i + 1)
        } else if c.is_alphanumeric() {
            Some(i)
        } else {
            None
        };
        let Some(ws) = word_start else {
            // A run of newlines, or of two or more spaces, is one token (and the word after
            // such a run gets no space of its own).
            let mut end = i + 1;
            if c == '\n' || c == ' ' {
                while end < chars.len() && chars[end] == c {
                    end += 1;
                }
            }
            out.push(chars[i..end].iter().collect());
            i = end;
            continue;
        };
        let mut end = ws;
        while end < chars.len() && chars[end].is_alphanumeric() {
            end += 1;
        }
        // The leading space rides with the first piece of the word.
        let mut s = i;
        while s < end {
            let e = (s.max(ws) + MAX_PIECE_CHARS).min(end);
            out.push(chars[s..e].iter().collect());
            s = e;
        }
        i = end;
    }
    out
}

/// `tokenize(text).len()`.
pub fn count(text: &str) -> usize {
    tokenize(text).len()
}

fn piece_id(piece: &str) -> u32 {
    // Gemma numbers runs of newlines from 107 ("\n") up.
    if !piece.is_empty() && piece.len() <= 31 && piece.bytes().all(|b| b == b'\n') {
        return NEWLINE + piece.len() as u32 - 1;
    }
    // FNV-1a over the piece, folded into the vocabulary above the special ids.
    let mut h: u32 = 0x811c_9dc5;
    for b in piece.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    1000 + h % (N_VOCAB - 1000)
}

/// The prompt tokens a server evaluates for a chat: BOS, then Gemma's template as llama.cpp
/// renders it (`LLM_CHAT_TEMPLATE_GEMMA` in `src/llama-chat.cpp`: no system role, the system
/// text is put before the first user turn followed by a blank line):
/// `<bos><start_of_turn>user\n{system}\n\n{user}<end_of_turn>\n<start_of_turn>model\n`.
/// Ollama's gemma3 template renders the same turns.
pub fn chat_prompt_tokens(system: Option<&str>, user: &str) -> Vec<u32> {
    let mut v = vec![BOS, START_OF_TURN];
    v.extend(tokenize("user"));
    v.push(NEWLINE);
    let content = match system.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => format!("{s}\n\n{}", user.trim()),
        None => user.trim().to_string(),
    };
    v.extend(tokenize(&content));
    v.extend([END_OF_TURN, NEWLINE, START_OF_TURN]);
    v.extend(tokenize("model"));
    v.push(NEWLINE);
    v
}

/// Tokens the template adds around the content of one user turn (BOS included): a prompt
/// count from tokenizing the content alone is this much lower than the server's own count.
pub fn template_overhead() -> usize {
    chat_prompt_tokens(None, "").len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_spaces_and_punctuation() {
        // Each as llama-server's /tokenize splits it with the Gemma 3 270M GGUF, except where
        // a comment says otherwise.
        assert_eq!(count(""), 0);
        assert_eq!(count("tok"), 1);
        // "tok", " tok", " tok", then the trailing space on its own
        assert_eq!(count("tok tok tok "), 4);
        assert_eq!(tokenize("tok tok")[1], tokenize(" tok")[0]);
        assert_ne!(tokenize("tok")[0], tokenize(" tok")[0]);
        assert_eq!(
            pieces("Hello, world!\n"),
            ["Hello", ",", " world", "!", "\n"]
        );
        // Gemma: 6 ("Summar", "ise", " the", " benchmark", " data", ".")
        assert_eq!(count("Summarise the benchmark data."), 5);
        assert_eq!(
            pieces("Be brief.\n\nSummarise\n\n\nx  y"),
            [
                "Be",
                " brief",
                ".",
                "\n\n",
                "Summarise",
                "\n\n\n",
                "x",
                "  ",
                "y"
            ]
        );
        assert_eq!(tokenize("\n\n\n"), vec![NEWLINE + 2]);
        // a long word is several pieces (not Gemma's)
        assert_eq!(
            pieces(" internationalization"),
            [" internatio", "nalization"]
        );
        assert!(tokenize("Ünïcödé ✓ 数据").iter().all(|&t| t < N_VOCAB));
        assert_eq!(pieces("Hi there, friend"), ["Hi", " there", ",", " friend"]);
    }

    #[test]
    fn template_adds_its_own_tokens() {
        assert_eq!(template_overhead(), 9);
        let p = chat_prompt_tokens(None, "Summarise the data.");
        assert_eq!(p.len(), 9 + count("Summarise the data."));
        let s = chat_prompt_tokens(Some("You are terse."), "Go.");
        assert_eq!(s.len(), 9 + count("You are terse.\n\nGo."));
        // llama-server's prompt_n for this chat with Gemma 3 270M: 19 = 9 + 4 + 6; here one
        // less, for "Summarise".
        assert_eq!(
            chat_prompt_tokens(Some("Be brief."), "Summarise the benchmark data.").len(),
            18
        );
        assert_eq!(p[0], BOS);
    }
}
