//! The request bodies of every endpoint, as OpenAI (and vLLM, for `/tokenize`) spell them, and
//! the JSON extractor that turns a bad body into a 400 naming the field.
//!
//! Fields OpenAI defines that make no sense here (`user`, `voice`, `quality`...) are accepted
//! and ignored, as serde ignores unknown fields; fields jielong adds (`top_k`, `min_p`,
//! `repetition_penalty`, `guidance`, `seconds`, `slide`) are optional.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body, read within the server's size limit and parsed with the path of any field of
/// the wrong type, so that the error's `param` can name it.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(usize::MAX, |l| l.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(limit)
            } else {
                ApiError::malformed(format!("cannot read the request body: {e}"))
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// The body size limit, put in the request's extensions so the error can quote it.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// Parses a body: malformed JSON has no field to blame; a field of the wrong type or a missing
/// one does.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::malformed(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::malformed("the body must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // A missing field has no path yet: serde names it in the message.
        let param = match inner.split('`').nth(1) {
            Some(field) if inner.starts_with("missing field") => field.to_string(),
            _ if path == "." => String::new(),
            _ => path,
        };
        // Untagged enums (a prompt as text or ids) report no detail; say what is accepted.
        let inner = if inner.contains("did not match any variant") {
            match param.split('.').next() {
                Some("prompt") => "must be a string or an array of token ids".to_string(),
                Some("stop") => "must be a string or an array of strings".to_string(),
                Some(p) if p.starts_with("messages") => {
                    "content must be a string or an array of text parts".to_string()
                }
                _ => inner,
            }
        } else {
            inner
        };
        let message = if param.is_empty() || inner.starts_with("missing field") {
            inner
        } else {
            format!("`{param}`: {inner}")
        };
        ApiError::bad(&param, message)
    })
}

/// A text prompt, or token ids fed as they are.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

/// `stop`: one string or several.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Debug, Clone, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// The dice, as every generating endpoint spells them. `temperature: 0` means greedy, as in
/// OpenAI's API; `top_k: -1` means no top-k, as in vLLM's.
#[derive(Deserialize, Debug, Clone, Default)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<u64>,
}

/// `POST /v1/completions`.
#[derive(Deserialize, Debug, Clone)]
pub struct CompletionBody {
    pub model: String,
    pub prompt: Prompt,
    pub max_tokens: Option<usize>,
    pub n: Option<usize>,
    pub stop: Option<Stop>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// How many alternatives to report per token (0 reports the drawn token's only).
    pub logprobs: Option<usize>,
    #[serde(default)]
    pub echo: bool,
    /// jielong: slide the window instead of stopping when the context is full.
    #[serde(default)]
    pub slide: bool,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<u64>,
}

/// A message's content: text, or a list of parts of which only text parts are understood.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize, Debug, Clone)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct ChatMessage {
    pub role: String,
    pub content: Option<Content>,
}

/// `POST /v1/chat/completions`.
#[derive(Deserialize, Debug, Clone)]
pub struct ChatBody {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
    pub n: Option<usize>,
    pub stop: Option<Stop>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<u64>,
}

/// `POST /v1/images/generations`.
#[derive(Deserialize, Debug, Clone)]
pub struct ImageBody {
    pub model: String,
    /// The class label; empty or absent for an unconditional image.
    pub prompt: Option<String>,
    pub n: Option<usize>,
    pub response_format: Option<String>,
    pub output_format: Option<String>,
    pub size: Option<String>,
    #[serde(default)]
    pub stream: bool,
    /// jielong: classifier-free guidance towards the class (default: the model's own).
    pub guidance: Option<f32>,
    /// jielong: alternatives reported per pixel token while streaming.
    pub top_logprobs: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<u64>,
}

/// `POST /v1/audio/speech`.
#[derive(Deserialize, Debug, Clone)]
pub struct SpeechBody {
    pub model: String,
    /// The class label (a digit); empty for an unconditional clip.
    pub input: String,
    pub response_format: Option<String>,
    /// `audio` (the default: one WAV) or `sse` (events as samples are drawn).
    pub stream_format: Option<String>,
    /// jielong: length of the clip (default 1).
    pub seconds: Option<f64>,
    /// jielong: classifier-free guidance towards the class (default: the model's own).
    pub guidance: Option<f32>,
    /// jielong: alternatives reported per sample while streaming.
    pub top_logprobs: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<u64>,
}

/// `POST /tokenize` (vLLM's shape): a prompt, or messages through the chat template.
#[derive(Deserialize, Debug, Clone)]
pub struct TokenizeBody {
    pub model: String,
    pub prompt: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
    /// Add what the tokenizer adds to a prompt (a Llama BOS); default true.
    pub add_special_tokens: Option<bool>,
}

/// `POST /detokenize`.
#[derive(Deserialize, Debug, Clone)]
pub struct DetokenizeBody {
    pub model: String,
    pub tokens: Vec<u32>,
}

/// The sampler fields of a body, gathered (every body spells them the same way).
macro_rules! sampling_of {
    ($($body:ty),*) => {$(
        impl $body {
            pub fn sampling(&self) -> Sampling {
                Sampling {
                    temperature: self.temperature,
                    top_p: self.top_p,
                    top_k: self.top_k,
                    min_p: self.min_p,
                    repetition_penalty: self.repetition_penalty,
                    seed: self.seed,
                }
            }
        }
    )*};
}
sampling_of!(CompletionBody, ChatBody, ImageBody, SpeechBody);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_and_missing_fields_name_the_field() {
        let e = parse::<CompletionBody>(br#"{"model": "m", "prompt": "a", "temperature": "hot"}"#)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = parse::<CompletionBody>(br#"{"prompt": "a"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = parse::<CompletionBody>(br#"{"model": "m", "prompt": {"x": 1}}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
        assert!(e.message.contains("token ids"), "{}", e.message);
        let e = parse::<CompletionBody>(b"{not json").unwrap_err();
        assert_eq!(e.param, None);
        assert_eq!(e.code, Some("invalid_json"));
        let ok = parse::<CompletionBody>(br#"{"model": "m", "prompt": [1, 2], "user": "x"}"#);
        assert!(matches!(ok.unwrap().prompt, Prompt::Ids(ids) if ids == [1, 2]));
    }
}
