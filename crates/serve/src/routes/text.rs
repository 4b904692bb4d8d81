//! What the two text endpoints share: how a token reads, log-probabilities in both of OpenAI's
//! shapes (the legacy completions one and the chat one), finish reasons and usage.
//!
//! The probabilities are those of the distribution each token was drawn from — after the
//! temperature, top-k, top-p and min-p of the request — which is what the playground shows;
//! with the default sampler that is the model's own distribution.

use jielong_core::{Codec, Finish};
use jielong_text::TextCodec;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, common_param};
use crate::worker::{Scored, Token};

/// How one token reads: a special token by its label, any other by its text.
pub fn token_text(codec: &TextCodec, id: u32) -> String {
    text_of(codec, &[id])
}

/// Ids as text; special tokens (which a character codec cannot decode) as their labels.
pub fn text_of(codec: &TextCodec, ids: &[u32]) -> String {
    let vocab = codec.vocab();
    let mut out = String::new();
    let mut run: Vec<u32> = Vec::new();
    let flush = |run: &mut Vec<u32>, out: &mut String| {
        if !run.is_empty() {
            out.push_str(&codec.decode_text(run).unwrap_or_default());
            run.clear();
        }
    };
    for &id in ids {
        if vocab.is_content(id) {
            run.push(id);
        } else {
            flush(&mut run, &mut out);
            out.push_str(&codec.token_label(id));
        }
    }
    flush(&mut run, &mut out);
    out
}

pub fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::End | Finish::Stopped => "stop",
        Finish::MaxTokens | Finish::ContextFull => "length",
    }
}

/// A probability as a log-probability JSON can carry (-9999 stands for 0, as OpenAI's does).
pub fn logprob(p: f64) -> f64 {
    if p > 0.0 {
        p.ln().max(-9999.0)
    } else {
        -9999.0
    }
}

/// One token as log-probabilities report it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: u32,
    /// `None` for a prompt's first token (nothing predicts it).
    pub logprob: Option<f64>,
    pub top: Vec<(u32, f64)>,
}

impl From<&Token> for Entry {
    fn from(t: &Token) -> Self {
        Self {
            id: t.id,
            logprob: Some(logprob(t.prob as f64)),
            top: t
                .top
                .iter()
                .map(|&(id, p)| (id, logprob(p as f64)))
                .collect(),
        }
    }
}

impl From<&Scored> for Entry {
    fn from(s: &Scored) -> Self {
        Self {
            id: s.id,
            logprob: s.logprob,
            top: s
                .top
                .iter()
                .map(|&(id, p)| (id, logprob(p as f64)))
                .collect(),
        }
    }
}

/// The legacy completions shape: parallel lists of tokens, their log-probabilities, the
/// alternatives (token -> log-probability) and where each token starts in the text.
/// `offset` is the text's length (in characters) before these tokens; it moves past them.
pub fn legacy_logprobs(codec: &TextCodec, entries: &[Entry], offset: &mut usize) -> Value {
    let mut tokens = Vec::new();
    let mut logprobs = Vec::new();
    let mut tops = Vec::new();
    let mut offsets = Vec::new();
    for e in entries {
        let text = token_text(codec, e.id);
        offsets.push(*offset);
        *offset += text.chars().count();
        tokens.push(text);
        logprobs.push(json!(e.logprob));
        tops.push(match e.logprob {
            None => Value::Null,
            Some(_) => {
                let mut m = Map::new();
                for &(id, lp) in &e.top {
                    // Two ids may read the same (partial characters): keep the likelier.
                    m.entry(token_text(codec, id)).or_insert(json!(lp));
                }
                Value::Object(m)
            }
        });
    }
    json!({
        "tokens": tokens,
        "token_logprobs": logprobs,
        "top_logprobs": tops,
        "text_offset": offsets,
    })
}

/// The chat shape: `{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}`.
pub fn chat_logprobs(codec: &TextCodec, entries: &[Entry]) -> Value {
    let item = |id: u32, lp: f64| {
        let text = token_text(codec, id);
        json!({ "token": text, "logprob": lp, "bytes": text.as_bytes() })
    };
    let content: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut v = item(e.id, e.logprob.unwrap_or(0.0));
            v["top_logprobs"] = e.top.iter().map(|&(id, lp)| item(id, lp)).collect();
            v
        })
        .collect();
    json!({ "content": content, "refusal": null })
}

pub fn usage(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// An error from the worker about a text job (rare: the job was checked before it queued).
pub fn failure(e: &anyhow::Error, prompt: &str) -> ApiError {
    ApiError::from_library(e, prompt, &common_param)
}
