//! Requests become the library's jobs here, and only here: an OpenAI-shaped body is checked
//! against the server's limits, turned into the same request a CLI command builds
//! (`CompletionRequest`, `DrawRequest`, `ClipRequest`), and handed to the library's job
//! constructor, which checks the rest. The handler then only queues the job and shapes the
//! answer.
//!
//! Library errors come back with their own field names; each endpoint's `param_of` renames
//! them to the request's fields.

use std::hash::{BuildHasher, Hasher};

use jielong_audio::{ClipJob, ClipRequest};
use jielong_core::{Codec, SamplerConfig};
use jielong_image::{DrawJob, DrawRequest};
use jielong_text::{CompletionJob, CompletionRequest, Message, TextPrompt};

use crate::api::{
    ChatBody, ChatMessage, CompletionBody, Content, ImageBody, Prompt, Sampling, SpeechBody,
};
use crate::error::{ApiError, common_param};
use crate::models::{Served, TextServed};

/// What a server lets one request ask for.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most new tokens per text sequence.
    pub max_tokens: usize,
    /// Most sequences per request (`n`).
    pub max_n: usize,
    /// Longest clip, in seconds.
    pub max_seconds: f64,
    /// Most alternatives reported per token.
    pub max_top: usize,
    /// Most stop strings.
    pub max_stops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_tokens: 4096,
            max_n: 16,
            max_seconds: 10.0,
            max_top: 20,
            max_stops: 16,
        }
    }
}

/// A text request ready for the worker.
pub struct TextPlan {
    pub job: CompletionJob<'static>,
    pub model: &'static TextServed,
    /// Alternatives per token when log-probabilities were asked for.
    pub logprobs: Option<usize>,
    pub max_tokens: usize,
}

impl TextPlan {
    pub fn prompt_ids(&self) -> &[u32] {
        self.job.prompt_ids()
    }
}

/// `/v1/completions`.
pub fn completion(
    served: &'static Served,
    body: &CompletionBody,
    limits: &Limits,
) -> Result<TextPlan, ApiError> {
    let text = served.text()?;
    let (sampler, seed) = sampler(&body.sampling(), None)?;
    let prompt = match &body.prompt {
        Prompt::Text(s) => TextPrompt::Text(s.clone()),
        Prompt::Ids(ids) => {
            check_ids(text, ids, "prompt")?;
            TextPrompt::Ids(ids.clone())
        }
    };
    // OpenAI's default for a completion is 16 tokens.
    let max_tokens = body.max_tokens.unwrap_or(16);
    check_max(max_tokens, "max_tokens", limits)?;
    let logprobs = top_count(body.logprobs, "logprobs", limits)?;
    let mut request = CompletionRequest::new(prompt, max_tokens);
    request.count = count(body.n, limits)?;
    request.sampler = sampler;
    request.seed = seed;
    request.stop = stops(body.stop.clone(), limits)?;
    request.slide = body.slide;
    request.show_top = logprobs.unwrap_or(0);
    let param_of = |f: &'static str| match f {
        "keep_prefix" => "slide",
        f => common_param(f),
    };
    let job =
        CompletionJob::new(&text.model, request).map_err(|e| rejected(&e, "prompt", &param_of))?;
    if !body.slide {
        check_context(served, job.prompt_ids().len(), "prompt")?;
    }
    Ok(TextPlan {
        job,
        model: text,
        logprobs,
        max_tokens,
    })
}

/// `/v1/chat/completions`: the messages through the model's chat template, ending where the
/// template ends a reply (as `jielong chat` does).
pub fn chat(
    served: &'static Served,
    body: &ChatBody,
    limits: &Limits,
) -> Result<TextPlan, ApiError> {
    let text = served.text()?;
    let (sampler, seed) = sampler(&body.sampling(), None)?;
    let messages = messages(&body.messages)?;
    let ids = text
        .style
        .prompt(&text.model, &messages)
        .map_err(|e| ApiError::bad("messages", format!("{e:#}")))?;
    check_context(served, ids.len(), "messages")?;
    let (max_tokens, max_param) = match (body.max_completion_tokens, body.max_tokens) {
        (Some(m), _) => (m, "max_completion_tokens"),
        (None, Some(m)) => (m, "max_tokens"),
        // Until the context is full (the loop stops there), within the server's limit.
        (None, None) => (limits.max_tokens.min(served.context), "max_tokens"),
    };
    check_max(max_tokens, max_param, limits)?;
    if body.top_logprobs.is_some() && !body.logprobs {
        return Err(ApiError::bad(
            "top_logprobs",
            "`top_logprobs` needs `logprobs: true`",
        ));
    }
    let logprobs = if body.logprobs {
        top_count(Some(body.top_logprobs.unwrap_or(0)), "top_logprobs", limits)?
    } else {
        None
    };
    let mut request = CompletionRequest::new(TextPrompt::Ids(ids), max_tokens);
    request.count = count(body.n, limits)?;
    request.sampler = sampler;
    request.seed = seed;
    request.stop = text.style.stop_strings.clone();
    request.stop.extend(stops(body.stop.clone(), limits)?);
    request.show_top = logprobs.unwrap_or(0);
    let param_of = |f: &'static str| match f {
        "max_new_tokens" => max_param,
        "prompt" => "messages",
        f => common_param(f),
    };
    let job = CompletionJob::new(&text.model, request)
        .map_err(|e| rejected(&e, "messages", &param_of))?
        .ending_with(&text.style.stop_ids);
    Ok(TextPlan {
        job,
        model: text,
        logprobs,
        max_tokens,
    })
}

/// The messages of a request as the chat template takes them.
pub fn messages(list: &[ChatMessage]) -> Result<Vec<Message>, ApiError> {
    if list.is_empty() {
        return Err(ApiError::bad("messages", "`messages` must not be empty"));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                // OpenAI's newer name for the system prompt; templates know `system`.
                "developer" => "system",
                r @ ("system" | "user" | "assistant") => r,
                other => {
                    return Err(ApiError::bad(
                        &format!("messages[{i}].role"),
                        format!(
                            "role {other:?} is not supported (system, developer, user, assistant)"
                        ),
                    ));
                }
            };
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for p in parts {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => text.push_str(t),
                            (kind, _) => {
                                return Err(ApiError::bad(
                                    &format!("messages[{i}].content"),
                                    format!("only text parts are understood, not {kind:?}"),
                                ));
                            }
                        }
                    }
                    text
                }
            };
            Ok(Message::new(role, &content))
        })
        .collect()
}

/// An image request ready for the worker.
pub struct ImagePlan {
    pub job: DrawJob<'static>,
    pub codec: &'static jielong_image::ImageCodec,
}

/// `/v1/images/generations`: `prompt` is the class label (empty: unconditional).
pub fn image(
    served: &'static Served,
    body: &ImageBody,
    limits: &Limits,
) -> Result<ImagePlan, ApiError> {
    let image = served.image()?;
    let codec = &image.codec;
    let (sampler, seed) = sampler(&body.sampling(), image.defaults.temperature)?;
    match body.response_format.as_deref() {
        None | Some("b64_json") => {}
        Some(other) => {
            return Err(ApiError::bad(
                "response_format",
                format!("{other:?} is not supported: this server keeps no files, use b64_json"),
            ));
        }
    }
    match body.output_format.as_deref() {
        None | Some("png") => {}
        Some(other) => {
            return Err(ApiError::bad(
                "output_format",
                format!("{other:?} is not supported: images are PNG"),
            ));
        }
    }
    let size = format!("{}x{}", codec.width(), codec.height());
    match body.size.as_deref() {
        None | Some("auto") => {}
        Some(s) if s == size => {}
        Some(other) => {
            return Err(ApiError::bad(
                "size",
                format!("{other:?} is not this model's size: it draws {size} images"),
            ));
        }
    }
    let class = body.prompt.as_deref().filter(|p| !p.is_empty());
    let request = DrawRequest {
        guidance: body
            .guidance
            .or(image.defaults.guidance.filter(|_| class.is_some())),
        sampler,
        seed,
        show_top: top_count(body.top_logprobs, "top_logprobs", limits)?.unwrap_or(0),
        ..DrawRequest::new(class, count(body.n, limits)?)
    };
    let param_of = |f: &'static str| match f {
        "class" | "kept" => "prompt",
        f => common_param(f),
    };
    let job = DrawJob::new(codec, served.context, request)
        .map_err(|e| rejected(&e, "prompt", &param_of))?;
    Ok(ImagePlan { job, codec })
}

/// A speech request ready for the worker.
pub struct SpeechPlan {
    pub job: ClipJob<'static>,
    pub codec: &'static jielong_audio::AudioCodec,
    /// Raw 16-bit samples instead of a WAV file.
    pub pcm: bool,
    pub sse: bool,
}

/// `/v1/audio/speech`: `input` is the class label (empty: unconditional).
pub fn speech(
    served: &'static Served,
    body: &SpeechBody,
    limits: &Limits,
) -> Result<SpeechPlan, ApiError> {
    let audio = served.audio()?;
    let codec = &audio.codec;
    let (sampler, seed) = sampler(&body.sampling(), audio.defaults.temperature)?;
    let pcm = match body.response_format.as_deref() {
        None | Some("wav") => false,
        Some("pcm") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "response_format",
                format!("{other:?} is not supported: use wav or pcm (16-bit, mono)"),
            ));
        }
    };
    let sse = match body.stream_format.as_deref() {
        None | Some("audio") => false,
        Some("sse") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "stream_format",
                format!("{other:?} is not a stream format: audio or sse"),
            ));
        }
    };
    let seconds = body.seconds.unwrap_or(1.0);
    if seconds > limits.max_seconds {
        return Err(ApiError::bad(
            "seconds",
            format!(
                "`seconds` must be at most {} on this server (got {seconds})",
                limits.max_seconds
            ),
        ));
    }
    let class = Some(body.input.trim()).filter(|c| !c.is_empty());
    let mut request = ClipRequest::new(class, seconds, 1);
    request.draw.guidance = body
        .guidance
        .or(audio.defaults.guidance.filter(|_| class.is_some()));
    request.draw.sampler = sampler;
    request.draw.seed = seed;
    request.draw.show_top = top_count(body.top_logprobs, "top_logprobs", limits)?.unwrap_or(0);
    let param_of = |f: &'static str| match f {
        "class" => "input",
        f => common_param(f),
    };
    let job = ClipJob::new(codec, request).map_err(|e| rejected(&e, "input", &param_of))?;
    Ok(SpeechPlan {
        job,
        codec,
        pcm,
        sse,
    })
}

/// The sampler and seed of a request; no temperature: the model's default, else 1. No seed: a
/// fresh one, so repeated requests differ (a client that wants the same output again sends a
/// seed).
fn sampler(
    s: &Sampling,
    default_temperature: Option<f32>,
) -> Result<(SamplerConfig, u64), ApiError> {
    let greedy = s.temperature == Some(0.0);
    let top_k = match s.top_k {
        None | Some(-1) => None,
        Some(k) if k < 0 => {
            return Err(ApiError::bad(
                "top_k",
                format!("`top_k` must be at least 1, or -1 for none (got {k})"),
            ));
        }
        Some(k) => Some(k as usize),
    };
    let config = SamplerConfig {
        greedy,
        temperature: if greedy {
            1.0
        } else {
            s.temperature.or(default_temperature).unwrap_or(1.0)
        },
        top_k,
        top_p: s.top_p,
        min_p: s.min_p,
        repetition_penalty: s.repetition_penalty.unwrap_or(1.0),
    };
    config.validate().map_err(|e| {
        let param = e.field;
        ApiError::bad(param, format!("`{param}` {}", e.message))
    })?;
    Ok((config, s.seed.unwrap_or_else(fresh_seed)))
}

fn fresh_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    // Keep seeds within what JavaScript numbers hold exactly, so the playground can show one.
    h.finish() >> 11
}

fn count(n: Option<usize>, limits: &Limits) -> Result<usize, ApiError> {
    let n = n.unwrap_or(1);
    if n > limits.max_n {
        return Err(ApiError::bad(
            "n",
            format!(
                "`n` must be at most {} on this server (got {n})",
                limits.max_n
            ),
        ));
    }
    Ok(n)
}

fn check_max(max: usize, param: &str, limits: &Limits) -> Result<(), ApiError> {
    if max > limits.max_tokens {
        return Err(ApiError::bad(
            param,
            format!(
                "`{param}` must be at most {} on this server (got {max})",
                limits.max_tokens
            ),
        ));
    }
    Ok(())
}

fn top_count(k: Option<usize>, param: &str, limits: &Limits) -> Result<Option<usize>, ApiError> {
    match k {
        Some(k) if k > limits.max_top => Err(ApiError::bad(
            param,
            format!("`{param}` must be at most {} (got {k})", limits.max_top),
        )),
        k => Ok(k),
    }
}

fn stops(stop: Option<crate::api::Stop>, limits: &Limits) -> Result<Vec<String>, ApiError> {
    let stops = stop.map(|s| s.into_vec()).unwrap_or_default();
    if stops.len() > limits.max_stops {
        return Err(ApiError::bad(
            "stop",
            format!(
                "at most {} stop strings (got {})",
                limits.max_stops,
                stops.len()
            ),
        ));
    }
    Ok(stops)
}

/// Token ids must be in the model's vocabulary (checked here: the codec would refuse them
/// later, without saying which field).
pub fn check_ids(text: &TextServed, ids: &[u32], param: &str) -> Result<(), ApiError> {
    let size = text.model.codec.vocab().size();
    match ids.iter().position(|&id| id as usize >= size) {
        Some(i) => Err(ApiError::bad(
            param,
            format!(
                "token id {} (at {i}) is outside the vocabulary: ids 0..{size} are valid",
                ids[i]
            ),
        )
        .with_code("invalid_token")),
        None => Ok(()),
    }
}

fn check_context(served: &Served, tokens: usize, param: &str) -> Result<(), ApiError> {
    if tokens > served.context {
        return Err(ApiError::bad(
            param,
            format!(
                "the prompt is {tokens} tokens long but model `{}` has a context of {} tokens",
                served.name, served.context
            ),
        )
        .with_code("context_length_exceeded"));
    }
    Ok(())
}

/// An error building a job is the request's fault: a setting (named), or the prompt itself (a
/// character the vocabulary lacks, an unknown class...).
fn rejected(
    e: &anyhow::Error,
    prompt: &str,
    param_of: &dyn Fn(&'static str) -> &'static str,
) -> ApiError {
    let a = ApiError::from_library(e, prompt, param_of);
    if a.status.is_server_error() {
        ApiError::bad(prompt, a.message)
    } else {
        a
    }
}
