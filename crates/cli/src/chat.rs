//! `jielong chat`: a multi-turn conversation that keeps the KV cache between turns, so each
//! turn costs only its own new tokens. Reads one user turn per line from stdin (a terminal or a
//! pipe); `/reset`, `/probs K` and `/quit` are commands.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, bail};
use jielong_core::{Codec, Decoder, Event, Finish, GenerateConfig, Overflow, generate};
use jielong_nn::{KvCache, ModelFolder, Transformer};
use jielong_text::{ChatTemplate, Message, TextCodec, TextStream, find_stop};

use crate::args::{ChatArgs, Modality};
use crate::loaded;
use crate::probs::{self, Step};

/// End-of-turn markers of common chat formats, used as stop tokens when the vocabulary has them.
const TURN_ENDS: [&str; 4] = ["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"];

pub fn run(a: ChatArgs) -> Result<()> {
    let sampler = loaded::sampler_config(&a.sampling)?;
    let (folder, model) = loaded::open_model(&a.model, Modality::Text, &a.device)?;
    let codec = loaded::text_codec(&folder)?;
    let template = ChatTemplate::from_folder(&folder.dir)?;
    let mut chat = Chat::new(&folder, &model, &codec, template, a.system.as_deref())?;
    let mut config = GenerateConfig::new(sampler, a.sampling.seed, a.max_new_tokens);
    config.ends = chat.stop_ids.clone();
    config.banned = loaded::text_banned(&codec, &config.ends);
    config.overflow = Overflow::Stop;
    config.show_top = a.sampling.show_probs.unwrap_or(0);

    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "chatting with {} ({} template). /reset, /probs K, /quit",
            a.model.display(),
            if chat.template.builtin {
                "built-in"
            } else {
                "the model's"
            }
        );
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let input = line.trim();
        match input.split_whitespace().collect::<Vec<_>>().as_slice() {
            [] => continue,
            ["/quit"] | ["/exit"] => break,
            ["/reset"] => {
                chat.reset();
                eprintln!("[conversation reset]");
            }
            ["/probs", k] => match k.parse::<usize>() {
                Ok(k) => {
                    config.show_top = k;
                    eprintln!(
                        "[showing the {k} most likely tokens at each step{}]",
                        if k == 0 { " — off" } else { "" }
                    );
                }
                Err(_) => {
                    eprintln!("[/probs needs a number, e.g. /probs 5; /probs 0 turns it off]")
                }
            },
            [cmd, ..] if cmd.starts_with('/') => {
                eprintln!("[unknown command {cmd}: /reset, /probs K, /quit]")
            }
            _ => {
                if let Err(e) = chat.turn(input, &config, seed_for(a.sampling.seed, chat.turns)) {
                    eprintln!("error: {e:#}");
                }
            }
        }
    }
    Ok(())
}

/// Each turn draws with its own seed so replies differ, yet a replayed chat is identical.
fn seed_for(seed: u64, turn: usize) -> u64 {
    seed.wrapping_add(1_000_003 * turn as u64)
}

struct Chat<'a> {
    model: &'a Transformer,
    codec: &'a TextCodec,
    template: ChatTemplate,
    messages: Vec<Message>,
    /// Exactly the tokens the cache holds.
    fed: Vec<u32>,
    cache: KvCache,
    stop_ids: Vec<u32>,
    /// Text that ends a reply for templates without stop tokens (the built-in one).
    stop_strings: Vec<String>,
    turns: usize,
}

impl<'a> Chat<'a> {
    fn new(
        folder: &ModelFolder,
        model: &'a Transformer,
        codec: &'a TextCodec,
        template: ChatTemplate,
        system: Option<&str>,
    ) -> Result<Self> {
        let mut stop_ids = loaded::text_end_ids(folder, codec);
        let mut single = |text: &str| {
            if let Ok(ids) = codec.encode_text(text) {
                if let [id] = ids.as_slice() {
                    stop_ids.push(*id);
                }
            }
        };
        for marker in TURN_ENDS {
            single(marker);
        }
        if !template.eos_token.is_empty() {
            single(&template.eos_token);
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();
        let stop_strings = if template.builtin {
            vec!["\nuser:".to_string(), "\nsystem:".to_string()]
        } else {
            Vec::new()
        };
        let messages = system
            .map(|s| vec![Message::new("system", s)])
            .unwrap_or_default();
        Ok(Self {
            model,
            codec,
            template,
            messages,
            fed: Vec::new(),
            cache: model.new_cache(),
            stop_ids,
            stop_strings,
            turns: 0,
        })
    }

    fn reset(&mut self) {
        self.messages.retain(|m| m.role == "system");
        self.fed.clear();
        self.cache = self.model.new_cache();
        self.turns = 0;
    }

    /// The conversation so far plus the assistant's cue, as token ids.
    fn prompt(&self) -> Result<Vec<u32>> {
        self.codec
            .encode_text(&self.template.render(&self.messages, true)?)
    }

    /// One user turn: render, reuse the cached prefix, feed the rest, stream the reply. On an
    /// error the user message is taken back, so the conversation stays well formed.
    fn turn(&mut self, user: &str, config: &GenerateConfig, seed: u64) -> Result<()> {
        self.messages.push(Message::new("user", user));
        let result = self.answer(config, seed);
        if result.is_err() && self.messages.last().is_some_and(|m| m.role == "user") {
            self.messages.pop();
        }
        result
    }

    fn answer(&mut self, config: &GenerateConfig, seed: u64) -> Result<()> {
        let context = self.model.config.context_len;
        let mut ids = self.prompt()?;
        // When the conversation no longer fits, drop whole exchanges, oldest first (never the
        // system prompt), until it fills at most half the context, so that the next turns
        // reuse the cache again; what is left is re-encoded once.
        let mut dropped = 0;
        if ids.len() + config.max_new_tokens > context {
            while ids.len() + config.max_new_tokens > context || ids.len() > context / 2 {
                let first = self
                    .messages
                    .iter()
                    .position(|m| m.role != "system")
                    .expect("the new user message");
                // The exchange: a user message and the replies up to the next user message.
                let next_user = self.messages[first + 1..]
                    .iter()
                    .position(|m| m.role == "user")
                    .map(|i| first + 1 + i);
                let Some(next_user) = next_user else { break };
                self.messages.drain(first..next_user);
                dropped += 1;
                ids = self.prompt()?;
            }
            if ids.len() + config.max_new_tokens > context {
                bail!(
                    "this message and its reply ({} + {} tokens) do not fit in the model's context of {context}",
                    ids.len(),
                    config.max_new_tokens
                );
            }
            eprintln!(
                "[context full: dropped the {dropped} oldest exchange(s), re-encoding the rest once]"
            );
            self.fed.clear();
            self.cache = self.model.new_cache();
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
        self.cache.truncate(common);
        self.fed.truncate(common);
        let reused = common;
        self.turns += 1;
        eprintln!(
            "[turn {}: {} new tokens fed, {} reused from the cache]",
            self.turns,
            ids.len() - reused,
            reused
        );

        let mut turn_config = config.clone();
        turn_config.seed = seed;
        let mut stream = TextStream::new(self.codec);
        let mut steps = Vec::new();
        let mut stdout = std::io::stdout().lock();
        let stop_strings = self.stop_strings.clone();
        let codec = self.codec;
        let label = |id: u32| codec.token_label(id);
        // Replies cut by a stop string are printed whole at the end, so the string never shows.
        let streaming = turn_config.show_top == 0 && stop_strings.is_empty();
        let mut on_event = |e: Event| {
            if let Event::Token {
                seq: 0,
                id,
                prob,
                top,
                step,
            } = e
            {
                if turn_config.ends.contains(&id) {
                    return;
                }
                if turn_config.show_top > 0 {
                    steps.push(Step {
                        id,
                        prob,
                        top: top.to_vec(),
                    });
                    let _ = writeln!(
                        stdout,
                        "{}",
                        probs::render(step, steps.last().expect("just pushed"), &label)
                    );
                } else if let (true, Ok(piece)) = (streaming, stream.push(id)) {
                    let _ = write!(stdout, "{piece}");
                    let _ = stdout.flush();
                }
            }
        };
        let mut stop = |_: usize, new: &[u32]| {
            !stop_strings.is_empty()
                && codec
                    .decode_text(new)
                    .is_ok_and(|t| find_stop(&t, &stop_strings).is_some())
        };
        let g = generate(
            self.model,
            &mut self.cache,
            &[ids.clone()],
            &turn_config,
            &mut on_event,
            &mut stop,
        )?
        .remove(0);
        let mut reply = self.codec.decode_text(&g.ids)?;
        if let Some(cut) = find_stop(&reply, &self.stop_strings) {
            reply.truncate(cut);
        }
        if streaming {
            writeln!(stdout, "{}", stream.finish()?)?;
        } else {
            writeln!(stdout, "{reply}")?;
        }
        if g.finish == Finish::ContextFull {
            eprintln!("[the reply filled the context and was cut]");
        }
        // The cache now holds the prompt and the reply tokens that were fed back in.
        let mut all = ids;
        all.extend(&g.ids);
        all.truncate(self.model.cache_len(&self.cache));
        self.fed = all;
        self.messages
            .push(Message::new("assistant", reply.trim_end()));
        Ok(())
    }
}
