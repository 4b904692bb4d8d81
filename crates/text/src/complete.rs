//! Completing a text: the recipe behind `jielong generate text` and `/v1/completions`.
//!
//! [`complete`] runs the whole job on any decoder. [`CompletionJob`] is the same job in pieces
//! (the prompts and settings to add to a running [`jielong_core::Generator`], the text of each
//! token as it arrives, the finished texts), so that a server can decode several requests in
//! one batch and still give each exactly what [`complete`] gives.

use anyhow::Result;
use jielong_core::{
    Codec, Decoder, Event, Finish, Flow, GenerateConfig, Generation, InvalidSetting, Overflow,
    SamplerConfig, generate,
};

use crate::{TextCodec, TextStream, find_stop};

/// A text model's codec and the tokens that end a text or must never be drawn.
pub struct TextModel {
    pub codec: TextCodec,
    /// Drawing one of these ends a text: the codec's END and a tokenizer's EOS ids.
    pub ends: Vec<u32>,
    /// BOS, PAD, conditioning tokens and a tokenizer's unknown and padding tokens.
    pub banned: Vec<u32>,
}

impl TextModel {
    /// `eos` are end ids beside the codec's own END (a Hugging Face folder's EOS list).
    pub fn new(codec: TextCodec, eos: &[u32]) -> Self {
        let mut ends: Vec<u32> = codec.vocab().end.into_iter().collect();
        ends.extend(eos);
        ends.sort_unstable();
        ends.dedup();
        let mut banned = codec.vocab().never_drawn();
        if let TextCodec::Tokenizer { tokenizer, .. } = &codec {
            banned.extend(
                ["<unk>", "<pad>", "[UNK]", "[PAD]", "<|pad|>"]
                    .iter()
                    .filter_map(|t| tokenizer.token_to_id(t)),
            );
        }
        banned.retain(|id| !ends.contains(id));
        banned.sort_unstable();
        banned.dedup();
        Self {
            codec,
            ends,
            banned,
        }
    }
}

/// What a completion continues.
#[derive(Clone, Debug, PartialEq)]
pub enum TextPrompt {
    /// Encoded as a generation prompt (a Llama tokenizer adds BOS).
    Text(String),
    /// Token ids as they are.
    Ids(Vec<u32>),
}

/// One completion job: continue `prompt` `count` times.
#[derive(Clone, Debug)]
pub struct CompletionRequest {
    pub prompt: TextPrompt,
    /// Continuations drawn together; continuation `i` uses the seed `seed + i`.
    pub count: usize,
    pub max_new_tokens: usize,
    pub sampler: SamplerConfig,
    pub seed: u64,
    /// A continuation ends where one of these appears (the string is not part of it).
    pub stop: Vec<String>,
    /// When the context is full, slide the window instead of stopping.
    pub slide: bool,
    /// How many of the most likely tokens each event carries.
    pub show_top: usize,
}

impl CompletionRequest {
    pub fn new(prompt: TextPrompt, max_new_tokens: usize) -> Self {
        Self {
            prompt,
            count: 1,
            max_new_tokens,
            sampler: SamplerConfig::default(),
            seed: 0,
            stop: Vec::new(),
            slide: false,
            show_top: 0,
        }
    }
}

/// What the callback of [`complete`] sees for each drawn token.
#[derive(Clone, Debug)]
pub struct TextToken<'a> {
    pub seq: usize,
    pub step: usize,
    pub id: u32,
    pub prob: f32,
    pub top: &'a [(u32, f32)],
    /// Text that became final with this token (UTF-8 safe, never part of a stop string; may
    /// be empty while a character or a possible stop string is incomplete).
    pub text: &'a str,
}

/// What the callback of [`complete`] sees as the text grows.
#[derive(Clone, Debug)]
pub enum TextEvent<'a> {
    Token(TextToken<'a>),
    /// The window of continuation `seq` slid: it goes on from its last `kept` tokens.
    Slide {
        seq: usize,
        kept: usize,
    },
}

/// A finished continuation.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The new tokens (up to and including the one that completed a stop string).
    pub ids: Vec<u32>,
    /// Their text, cut before a stop string.
    pub text: String,
    /// The end of `text` that no event handed out (it was held back as a possible partial
    /// character or stop string): a streaming caller shows it last.
    pub unshown: String,
    pub finish: Finish,
}

/// Completes a text with any decoder. `on_event` sees each token as it is drawn, with the text
/// it adds; it may stop its continuation (returning [`Flow::Stop`]).
pub fn complete<D: Decoder>(
    decoder: &D,
    model: &TextModel,
    request: &CompletionRequest,
    on_event: &mut dyn FnMut(&TextEvent) -> Flow,
) -> Result<Vec<Completion>> {
    let mut job = CompletionJob::new(model, request.clone())?;
    let prompts = vec![job.prompt_ids().to_vec(); request.count];
    let generations = generate(decoder, &prompts, &job.config(), &mut |e| {
        job.on_event(e, on_event)
    })?;
    job.finish(generations)
}

/// The text of one continuation as it grows.
struct Shown<'m> {
    stream: TextStream<'m>,
    /// Text already handed to the caller.
    shown: String,
    stopped: bool,
}

/// A completion in pieces; see the module doc.
pub struct CompletionJob<'m> {
    model: &'m TextModel,
    /// The model's end tokens, or a chat template's.
    ends: Vec<u32>,
    banned: Vec<u32>,
    request: CompletionRequest,
    prompt_ids: Vec<u32>,
    outputs: Vec<Shown<'m>>,
    /// A decoding error met inside a callback (which cannot return one).
    error: Option<anyhow::Error>,
}

impl<'m> CompletionJob<'m> {
    /// Checks the request and encodes its prompt.
    pub fn new(model: &'m TextModel, request: CompletionRequest) -> Result<Self> {
        request.sampler.validate()?;
        if request.count == 0 {
            return Err(InvalidSetting::new("count", "must be at least 1").into());
        }
        let prompt_ids = match &request.prompt {
            TextPrompt::Text(text) if text.is_empty() => {
                return Err(
                    InvalidSetting::new("prompt", "is empty: give some text to continue").into(),
                );
            }
            TextPrompt::Text(text) => model.codec.encode_prompt(text)?,
            TextPrompt::Ids(ids) => ids.clone(),
        };
        if prompt_ids.is_empty() {
            return Err(InvalidSetting::new("prompt", "is empty: give at least one token").into());
        }
        model.codec.vocab().check_ids(&prompt_ids)?;
        let outputs = (0..request.count)
            .map(|_| Shown {
                stream: TextStream::new(&model.codec),
                shown: String::new(),
                stopped: false,
            })
            .collect();
        Ok(Self {
            model,
            ends: model.ends.clone(),
            banned: model.banned.clone(),
            request,
            prompt_ids,
            outputs,
            error: None,
        })
    }

    /// Ends continuations at `ends` instead of the model's own end tokens (a chat template's
    /// end-of-turn markers).
    pub fn ending_with(mut self, ends: &[u32]) -> Self {
        self.ends = ends.to_vec();
        self.banned.retain(|id| !ends.contains(id));
        self
    }

    pub fn prompt_ids(&self) -> &[u32] {
        &self.prompt_ids
    }

    pub fn request(&self) -> &CompletionRequest {
        &self.request
    }

    /// The settings of continuation 0; continuation `i` adds `i` to the seed.
    pub fn config(&self) -> GenerateConfig {
        let r = &self.request;
        let mut config = GenerateConfig::new(r.sampler.clone(), r.seed, r.max_new_tokens);
        config.ends = self.ends.clone();
        config.banned = self.banned.clone();
        config.overflow = if r.slide {
            Overflow::Slide
        } else {
            Overflow::Stop
        };
        config.show_top = r.show_top;
        config
    }

    /// Handles one event of continuation `e.seq`: works out the text it adds and hands it to
    /// `on_event`; stops the continuation at a stop string.
    pub fn on_event(&mut self, e: &Event, on_event: &mut dyn FnMut(&TextEvent) -> Flow) -> Flow {
        let (seq, step, id, prob, top, ids) = match *e {
            Event::Token {
                seq,
                step,
                id,
                prob,
                top,
                ids,
            } => (seq, step, id, prob, top, ids),
            Event::Slide { seq, kept } => return on_event(&TextEvent::Slide { seq, kept }),
        };
        let ends = self.ends.contains(&id);
        let (text, stop) = match self.advance(seq, id, ids, ends) {
            Ok(done) => done,
            Err(err) => {
                self.error.get_or_insert(err);
                return Flow::Stop;
            }
        };
        let flow = on_event(&TextEvent::Token(TextToken {
            seq,
            step,
            id,
            prob,
            top,
            text: &text,
        }));
        if stop { Flow::Stop } else { flow }
    }

    /// The new final text of continuation `seq` after token `id` (`ids`: every new token), and
    /// whether a stop string has appeared.
    fn advance(&mut self, seq: usize, id: u32, ids: &[u32], ends: bool) -> Result<(String, bool)> {
        let stops = &self.request.stop;
        let out = &mut self.outputs[seq];
        if ends || out.stopped {
            return Ok((String::new(), false));
        }
        if stops.is_empty() {
            return Ok((out.stream.push(id)?, false));
        }
        // With stop strings, decode everything so a stop is seen as soon as it is complete, and
        // hold back a tail that may be the start of one (or of an unfinished character).
        let text = self.model.codec.decode_text(ids)?;
        let (end, stop) = match find_stop(&text, stops) {
            Some(cut) => (cut, true),
            None => {
                // A run of byte-fallback tokens can decode differently once the next byte comes
                // (a valid byte turns into U+FFFD beside an invalid one): show it only once a
                // token of another kind follows.
                let codec = &self.model.codec;
                let settled = ids.len()
                    - ids
                        .iter()
                        .rev()
                        .take_while(|&&i| codec.is_byte_token(i))
                        .count();
                let mut end = safe_end(&text, stops);
                if settled < ids.len() {
                    end = end.min(codec.decode_text(&ids[..settled])?.len());
                }
                (floor_char_boundary(&text, end), false)
            }
        };
        out.stopped = stop;
        let new = text
            .get(out.shown.len()..end)
            .filter(|_| text.starts_with(&out.shown))
            .unwrap_or("")
            .to_string();
        out.shown.push_str(&new);
        Ok((new, stop))
    }

    /// The finished continuations (`generations[i]` of continuation `i`).
    pub fn finish(mut self, generations: Vec<Generation>) -> Result<Vec<Completion>> {
        if let Some(err) = self.error.take() {
            return Err(err);
        }
        let stops = &self.request.stop;
        generations
            .into_iter()
            .zip(&mut self.outputs)
            .map(|(g, out)| {
                let mut text = self.model.codec.decode_text(&g.ids)?;
                if let Some(cut) = find_stop(&text, stops) {
                    text.truncate(cut);
                }
                let unshown = if stops.is_empty() {
                    out.stream.finish()?
                } else {
                    text.strip_prefix(out.shown.as_str())
                        .unwrap_or_default()
                        .to_string()
                };
                Ok(Completion {
                    ids: g.ids,
                    text,
                    unshown,
                    finish: g.finish,
                })
            })
            .collect()
    }
}

/// The largest char boundary of `text` at or before `i`.
fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Where the text can safely end for now: before an unfinished character and before any tail
/// that is the beginning of a stop string.
fn safe_end(text: &str, stops: &[String]) -> usize {
    let mut end = text.trim_end_matches('\u{FFFD}').len();
    for stop in stops.iter().filter(|s| !s.is_empty()) {
        for (i, _) in text[..end].char_indices().rev().take(stop.chars().count()) {
            if stop.starts_with(&text[i..end]) {
                end = i;
                break;
            }
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_that_may_start_a_stop_string_is_held_back() {
        let stops = vec!["END".to_string(), "\n\n".to_string()];
        assert_eq!(safe_end("hello EN", &stops), "hello ".len());
        assert_eq!(safe_end("hello E", &stops), "hello ".len());
        assert_eq!(safe_end("hello\n", &stops), "hello".len());
        assert_eq!(safe_end("hello", &stops), "hello".len());
        assert_eq!(safe_end("caf\u{FFFD}", &stops), "caf".len());
    }
}
