//! A conversation through a model's chat template: the recipe behind `jielong chat` and
//! `/v1/chat/completions`.
//!
//! [`ChatStyle`] is what a template needs beside the model (the tokens and strings that end a
//! reply); [`Conversation`] keeps the messages and the KV cache between turns, so each turn
//! feeds only its own new tokens, and drops the oldest exchanges when the context fills.

use anyhow::{Result, bail};
use jielong_core::{
    Decoder, Finish, Flow, GenerateConfig, InvalidSetting, Overflow, SamplerConfig, generate_cached,
};

use crate::complete::{CompletionJob, CompletionRequest, TextEvent, TextModel, TextPrompt};
use crate::{ChatTemplate, Message};

/// End-of-turn markers of common chat formats, used as stop tokens when the vocabulary has them.
const TURN_ENDS: [&str; 4] = ["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"];

/// A template and how a reply ends under it.
pub struct ChatStyle {
    pub template: ChatTemplate,
    /// The model's ends, the turn-end markers its vocabulary has as single tokens, and the
    /// template's EOS.
    pub stop_ids: Vec<u32>,
    /// Text that ends a reply under templates without stop tokens (the built-in one).
    pub stop_strings: Vec<String>,
}

impl ChatStyle {
    pub fn new(model: &TextModel, template: ChatTemplate) -> Self {
        let mut stop_ids = model.ends.clone();
        let single = |text: &str| match model.codec.encode_text(text).ok()?.as_slice() {
            [id] => Some(*id),
            _ => None,
        };
        stop_ids.extend(TURN_ENDS.iter().filter_map(|m| single(m)));
        if !template.eos_token.is_empty() {
            stop_ids.extend(single(&template.eos_token));
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();
        let stop_strings = if template.builtin {
            vec!["\nuser:".to_string(), "\nsystem:".to_string()]
        } else {
            Vec::new()
        };
        Self {
            template,
            stop_ids,
            stop_strings,
        }
    }

    /// The conversation so far plus the assistant's cue, as token ids.
    pub fn prompt(&self, model: &TextModel, messages: &[Message]) -> Result<Vec<u32>> {
        model
            .codec
            .encode_text(&self.template.render(messages, true)?)
    }
}

/// How each reply is drawn.
#[derive(Clone, Debug)]
pub struct ReplySettings {
    pub sampler: SamplerConfig,
    pub seed: u64,
    pub max_new_tokens: usize,
    pub show_top: usize,
}

/// One turn's reply and what it cost.
#[derive(Clone, Debug)]
pub struct Reply {
    pub text: String,
    /// The end of `text` no event handed out (held back as a possible partial character or
    /// stop string): a streaming caller shows it last.
    pub unshown: String,
    pub ids: Vec<u32>,
    pub finish: Finish,
    /// Tokens fed this turn, and tokens reused from the cache.
    pub fed: usize,
    pub reused: usize,
    /// Old exchanges dropped to make room (the rest was re-encoded once).
    pub dropped: usize,
}

/// A multi-turn chat that keeps its KV cache between turns.
pub struct Conversation<C> {
    messages: Vec<Message>,
    /// Exactly the tokens the cache holds.
    fed: Vec<u32>,
    cache: Option<C>,
    turns: usize,
}

impl<C> Conversation<C> {
    pub fn new(system: Option<&str>) -> Self {
        Self {
            messages: system
                .map(|s| vec![Message::new("system", s)])
                .unwrap_or_default(),
            fed: Vec::new(),
            cache: None,
            turns: 0,
        }
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn turns(&self) -> usize {
        self.turns
    }

    /// Forgets everything but the system prompt.
    pub fn reset(&mut self) {
        self.messages.retain(|m| m.role == "system");
        self.fed.clear();
        self.cache = None;
        self.turns = 0;
    }

    /// One user turn: render, reuse the cached prefix, feed the rest, draw the reply with
    /// `on_event` seeing each token. Each turn draws with its own seed (`seed` plus a step per
    /// turn) so replies differ, yet a replayed chat is identical. On an error the user message
    /// is taken back, so the conversation stays well formed.
    pub fn turn<D: Decoder<Cache = C>>(
        &mut self,
        decoder: &D,
        model: &TextModel,
        style: &ChatStyle,
        user: &str,
        settings: &ReplySettings,
        on_event: &mut dyn FnMut(&TextEvent) -> Flow,
    ) -> Result<Reply> {
        self.messages.push(Message::new("user", user));
        let result = self.answer(decoder, model, style, settings, on_event);
        if result.is_err() && self.messages.last().is_some_and(|m| m.role == "user") {
            self.messages.pop();
        }
        result
    }

    fn answer<D: Decoder<Cache = C>>(
        &mut self,
        decoder: &D,
        model: &TextModel,
        style: &ChatStyle,
        settings: &ReplySettings,
        on_event: &mut dyn FnMut(&TextEvent) -> Flow,
    ) -> Result<Reply> {
        let context = decoder.context_len();
        let (ids, dropped) = self.fit(model, style, context, settings.max_new_tokens)?;
        if dropped > 0 {
            self.fed.clear();
            self.cache = None;
        }
        // Keep the cached prefix that the re-rendered conversation still starts with.
        let mut common = self
            .fed
            .iter()
            .zip(&ids)
            .take_while(|(a, b)| a == b)
            .count();
        if common == ids.len() {
            common -= 1; // something must be fed to get the next logits
        }
        let mut cache = self.cache.take().unwrap_or_else(|| decoder.new_cache());
        decoder.truncate_cache(&mut cache, common);
        self.fed.truncate(common);
        self.turns += 1;

        let mut request =
            CompletionRequest::new(TextPrompt::Ids(ids.clone()), settings.max_new_tokens);
        request.sampler = settings.sampler.clone();
        request.seed = settings
            .seed
            .wrapping_add(1_000_003 * (self.turns - 1) as u64);
        request.stop = style.stop_strings.clone();
        request.show_top = settings.show_top;
        let mut job = CompletionJob::new(model, request)?.ending_with(&style.stop_ids);
        let mut config: GenerateConfig = job.config();
        config.overflow = Overflow::Stop;
        let (generation, cache) =
            generate_cached(decoder, &[ids.clone()], vec![cache], &config, &mut |e| {
                job.on_event(e, on_event)
            })?
            .remove(0);
        let completion = job.finish(vec![generation])?.remove(0);
        // The cache now holds the prompt and the reply tokens that were fed back in.
        let mut all = ids.clone();
        all.extend(&completion.ids);
        all.truncate(decoder.cache_len(&cache));
        self.fed = all;
        self.cache = Some(cache);
        self.messages
            .push(Message::new("assistant", completion.text.trim_end()));
        Ok(Reply {
            unshown: completion.unshown,
            text: completion.text,
            ids: completion.ids,
            finish: completion.finish,
            fed: ids.len() - common,
            reused: common,
            dropped,
        })
    }

    /// The prompt of the conversation, after dropping whole exchanges (oldest first, never the
    /// system prompt) when it and the reply do not fit: down to half the context, so that the
    /// next turns reuse the cache again. Returns the ids and how many exchanges were dropped.
    fn fit(
        &mut self,
        model: &TextModel,
        style: &ChatStyle,
        context: usize,
        reply: usize,
    ) -> Result<(Vec<u32>, usize)> {
        let mut ids = style.prompt(model, &self.messages)?;
        let mut dropped = 0;
        if ids.len() + reply <= context {
            return Ok((ids, 0));
        }
        while ids.len() + reply > context || ids.len() > context / 2 {
            let first = self
                .messages
                .iter()
                .position(|m| m.role != "system")
                .expect("the new user message");
            // The exchange: a user message and the replies up to the next user message.
            let Some(next_user) = self.messages[first + 1..]
                .iter()
                .position(|m| m.role == "user")
                .map(|i| first + 1 + i)
            else {
                break;
            };
            self.messages.drain(first..next_user);
            dropped += 1;
            ids = style.prompt(model, &self.messages)?;
        }
        if ids.len() + reply > context {
            bail!(InvalidSetting::new(
                "max_new_tokens",
                format!(
                    "is too large: this message and its reply ({} + {reply} tokens) do not fit in the model's context of {context}",
                    ids.len()
                )
            ));
        }
        Ok((ids, dropped))
    }
}
