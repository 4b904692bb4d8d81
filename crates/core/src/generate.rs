//! The one generation loop, shared by every modality: feed, roll the dice, append, repeat.
//!
//! A [`Generator`] holds the sequences being generated, each with its own settings, seed, cache and
//! length. Every [`Generator::step`] feeds all of them together (ragged: a new prompt beside replies
//! halfway done) and draws one token for each; sequences join with [`Generator::add`] and leave when
//! they finish or are cancelled, at a step boundary. [`generate`] is the whole loop for a fixed
//! set of prompts; a server keeps one batch running and adds requests as they come.

use anyhow::Result;
use std::sync::{Mutex, PoisonError};

use crate::decoder::{Decoder, Feed, Logits, Positions};
use crate::error::{InvalidSetting, PromptError};
use crate::guided::Guidance;
use crate::sampler::{Distribution, Sampler, SamplerConfig};

/// What happens when a sequence outgrows the model's context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Stop generating (finish reason [`Finish::ContextFull`]).
    Stop,
    /// Slide the window: restart the cache on the conditioning prefix plus the most recent half
    /// of the context, and go on. The model then sees the kind of window it was trained on.
    Slide,
}

/// How one sequence is generated.
#[derive(Clone, Debug)]
pub struct GenerateConfig {
    /// How each next token is drawn from the logits (temperature, top-k, top-p, penalties).
    pub sampler: SamplerConfig,
    /// The seed of this sequence's dice. [`generate`] gives sequence `i` of its prompts
    /// `seed + i`, so a sequence does not depend on the batch it was drawn in.
    pub seed: u64,
    /// The most tokens to draw after the prompt, END not counted ([`Finish::MaxTokens`]).
    pub max_new_tokens: usize,
    /// Drawing one of these tokens ends a sequence (it is not part of the output).
    pub ends: Vec<u32>,
    /// Tokens never drawn (BOS, PAD, class tokens; END too for fixed-length content).
    pub banned: Vec<u32>,
    /// What to do when the sequence outgrows the model's context.
    pub overflow: Overflow,
    /// Tokens at the start of each sequence kept when the window slides (a class token, BOS).
    pub keep_prefix: usize,
    /// How many of the most likely tokens each [`Event::Token`] carries (0: none).
    pub show_top: usize,
    /// Classifier-free guidance towards the class token the sequence starts with.
    pub guidance: Option<Guidance>,
}

impl GenerateConfig {
    /// A config with no end or banned tokens, no guidance, no top list, that stops at a full
    /// context.
    pub fn new(sampler: SamplerConfig, seed: u64, max_new_tokens: usize) -> Self {
        Self {
            sampler,
            seed,
            max_new_tokens,
            ends: Vec::new(),
            banned: Vec::new(),
            overflow: Overflow::Stop,
            keep_prefix: 0,
            show_top: 0,
            guidance: None,
        }
    }
}

/// What the loop reports as it goes.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// Sequence `seq` drew `id` (with probability `prob`) as its `step`-th new token; `top` holds
    /// the most likely candidates of the distribution it was drawn from, and `ids` every new
    /// token so far (this one included, unless it ends the sequence).
    Token {
        /// The caller's number for the sequence, as given to [`Generator::add`].
        seq: usize,
        /// Index of the token among the new ones, from 0.
        step: usize,
        /// The token drawn.
        id: u32,
        /// Its probability under the distribution it was drawn from (after sampler settings).
        prob: f32,
        /// Up to [`GenerateConfig::show_top`] `(id, probability)` pairs, most likely first.
        top: &'a [(u32, f32)],
        /// Every new token of the sequence so far.
        ids: &'a [u32],
    },
    /// The window of sequence `seq` slid: its cache was rebuilt from its last `kept` tokens.
    Slide {
        /// The caller's number for the sequence.
        seq: usize,
        /// Tokens re-fed after the slide: the kept prefix plus the most recent ones.
        kept: usize,
    },
}

/// The answer to an event: go on, or end this sequence now (a stop string, a closed
/// connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep generating this sequence.
    Continue,
    /// End this sequence now, with [`Finish::Stopped`].
    Stop,
}

/// Why a sequence stopped generating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An END token was drawn.
    End,
    /// `max_new_tokens` were drawn.
    MaxTokens,
    /// The caller stopped it (a stop rule fired, or the request was cancelled).
    Stopped,
    /// The context is full and the overflow policy is [`Overflow::Stop`].
    ContextFull,
}

/// What one sequence generated, and why it stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// The new tokens only (not the prompt, not END).
    pub ids: Vec<u32>,
    /// Why generation stopped.
    pub finish: Finish,
}

/// A finished sequence, with its cache (which holds what it was fed: a chat keeps it).
pub struct Done<C> {
    /// The caller's number for the sequence, as given to [`Generator::add`].
    pub seq: usize,
    /// The new tokens and the finish reason.
    pub generation: Generation,
    /// The decoder cache, holding the prompt and the tokens fed after it.
    pub cache: C,
}

/// One sequence in a [`Generator`].
struct Sequence<C> {
    seq: usize,
    config: GenerateConfig,
    sampler: Sampler,
    /// The prompt and every token drawn since (the repetition penalty looks at all of it).
    history: Vec<u32>,
    prompt_len: usize,
    /// Tokens to feed at the next step.
    pending: Vec<u32>,
    cache: C,
    /// The unconditional twin's cache under guidance.
    twin: Option<C>,
    /// Set when the window slid before the next step (reported then).
    slid: Option<usize>,
}

impl<C> Sequence<C> {
    fn new_ids(&self) -> &[u32] {
        &self.history[self.prompt_len..]
    }
}

/// The sequences being generated together.
pub struct Generator<'d, D: Decoder> {
    decoder: &'d D,
    seqs: Vec<Sequence<D::Cache>>,
    /// Sequences that finished without needing a step (asked for no new tokens).
    done: Vec<Done<D::Cache>>,
}

impl<'d, D: Decoder> Generator<'d, D> {
    /// An empty batch that decodes with `decoder`.
    pub fn new(decoder: &'d D) -> Self {
        Self {
            decoder,
            seqs: Vec::new(),
            done: Vec::new(),
        }
    }

    /// Sequences still running.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// Whether nothing is left to do: no running sequence and no finished one waiting to be
    /// returned by the next [`Generator::step`].
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty() && self.done.is_empty()
    }

    /// Adds sequence number `seq` (the caller's name for it in events and results): it
    /// continues `prompt`, the whole token history, of which `cache` may already hold a prefix
    /// (a chat keeps its cache between turns); only the rest is fed.
    pub fn add(
        &mut self,
        seq: usize,
        prompt: Vec<u32>,
        config: GenerateConfig,
        cache: D::Cache,
    ) -> Result<()> {
        let context = self.decoder.context_len();
        let vocab = self.decoder.vocab_size();
        let sampler = Sampler::new(config.sampler.clone(), config.seed)?;
        if prompt.is_empty() {
            return Err(PromptError::Empty.into());
        }
        if let Some(&id) = prompt.iter().find(|&&id| id as usize >= vocab) {
            return Err(PromptError::UnknownToken { id, vocab }.into());
        }
        if config.keep_prefix >= context / 2 {
            return Err(InvalidSetting::new(
                "keep_prefix",
                format!(
                    "({}) must be shorter than half the context ({context})",
                    config.keep_prefix
                ),
            )
            .into());
        }
        let guided = config.guidance.is_some();
        let cached = self.decoder.cache_len(&cache);
        if cached >= prompt.len() {
            return Err(PromptError::NothingNew.into());
        }
        let mut s = Sequence {
            seq,
            pending: prompt[cached..].to_vec(),
            prompt_len: prompt.len(),
            history: prompt,
            config,
            sampler,
            twin: guided.then(|| self.decoder.new_cache()),
            cache,
            slid: None,
        };
        if s.twin.is_some() && cached > 0 {
            return Err(InvalidSetting::new(
                "guidance",
                "cannot continue a cached sequence (its twin has no cache)",
            )
            .into());
        }
        if cached + s.pending.len() > context {
            match s.config.overflow {
                Overflow::Stop => {
                    return Err(PromptError::TooLong {
                        tokens: cached + s.pending.len(),
                        context,
                    }
                    .into());
                }
                Overflow::Slide => slide(self.decoder, &mut s),
            }
        }
        if s.config.max_new_tokens == 0 {
            self.done.push(Done {
                seq,
                generation: Generation {
                    ids: Vec::new(),
                    finish: Finish::MaxTokens,
                },
                cache: s.cache,
            });
        } else {
            self.seqs.push(s);
        }
        Ok(())
    }

    /// Takes sequence `seq` out of the batch (its client went away); `None` if it is not in it.
    pub fn cancel(&mut self, seq: usize) -> Option<Done<D::Cache>> {
        let i = self.seqs.iter().position(|s| s.seq == seq)?;
        let s = self.seqs.remove(i);
        Some(Done {
            seq,
            generation: Generation {
                ids: s.new_ids().to_vec(),
                finish: Finish::Stopped,
            },
            cache: s.cache,
        })
    }

    /// Feeds every running sequence and draws one token for each. Returns the sequences that
    /// finished (they have left the batch).
    pub fn step(
        &mut self,
        on_event: &mut dyn FnMut(&Event) -> Flow,
    ) -> Result<Vec<Done<D::Cache>>> {
        let mut finished = std::mem::take(&mut self.done);
        if self.seqs.is_empty() {
            return Ok(finished);
        }
        for s in &mut self.seqs {
            if let Some(kept) = s.slid.take() {
                on_event(&Event::Slide { seq: s.seq, kept });
            }
        }
        // Each guided sequence's twin is fed beside it: the same ids, unconditional at the start.
        let twin_ids: Vec<Option<Vec<u32>>> = self
            .seqs
            .iter()
            .map(|s| {
                let g = s.config.guidance?;
                let twin = s.twin.as_ref()?;
                Some(g.twin_ids(&s.pending, self.decoder.cache_len(twin) == 0))
            })
            .collect();
        let mut logits = {
            let mut feeds: Vec<Feed<D::Cache>> = Vec::with_capacity(self.seqs.len());
            let mut twins: Vec<Feed<D::Cache>> = Vec::new();
            for (s, ids) in self.seqs.iter_mut().zip(&twin_ids) {
                feeds.push(Feed::new(&s.pending, &mut s.cache));
                if let (Some(ids), Some(twin)) = (ids, s.twin.as_mut()) {
                    twins.push(Feed::new(ids, twin));
                }
            }
            feeds.extend(twins);
            self.decoder.forward(&mut feeds, Positions::Last)?
        };
        let mut twin_row = self.seqs.len();
        for (s, seq) in self.seqs.iter().enumerate() {
            if let (Some(g), Some(_)) = (seq.config.guidance, &twin_ids[s]) {
                let (cond, uncond) = logits.two_rows_mut(s, twin_row);
                g.combine(cond, uncond);
                twin_row += 1;
            }
        }
        let mut picks = pick_tokens(self.decoder, &mut self.seqs, &logits).into_iter();
        let mut i = 0;
        while i < self.seqs.len() {
            let (dist, id) = picks.next().expect("one pick per sequence")?;
            let finish = advance(self.decoder, &mut self.seqs[i], &dist, id, on_event)?;
            match finish {
                None => i += 1,
                Some(finish) => {
                    let s = self.seqs.remove(i);
                    finished.push(Done {
                        seq: s.seq,
                        generation: Generation {
                            ids: s.new_ids().to_vec(),
                            finish,
                        },
                        cache: s.cache,
                    });
                }
            }
        }
        Ok(finished)
    }
}

/// What a sequence's sampler picks: the distribution of its next token and the token drawn.
type Pick = Result<(Distribution, u32)>;

/// Every sequence's next-token distribution (sequence `i` from logits row `i`) and the token
/// its sampler draws from it. Over a vocabulary of tens of thousands this is a real share of a
/// batched step, so the sequences are shared out over the decoder's threads
/// ([`Decoder::run_tasks`]); each pick depends only on its own sequence's logits, history and
/// dice, so the result does not depend on the split.
fn pick_tokens<D: Decoder>(
    decoder: &D,
    seqs: &mut [Sequence<D::Cache>],
    logits: &Logits,
) -> Vec<Pick> {
    /// One sequence's inputs and, once picked, its pick (a task locks only its own slot).
    struct Slot<'a> {
        sampler: &'a mut Sampler,
        history: &'a [u32],
        banned: &'a [u32],
        pick: Option<Pick>,
    }
    let slots: Vec<Mutex<Slot>> = seqs
        .iter_mut()
        .map(|s| {
            Mutex::new(Slot {
                sampler: &mut s.sampler,
                history: &s.history,
                banned: &s.config.banned,
                pick: None,
            })
        })
        .collect();
    let pick = |row: usize| {
        let mut guard = slots[row].lock().unwrap_or_else(PoisonError::into_inner);
        let slot = &mut *guard;
        let dist = slot
            .sampler
            .distribution(logits.last(row), slot.history, slot.banned);
        slot.pick = Some(dist.map(|d| {
            let id = slot.sampler.draw(&d);
            (d, id)
        }));
    };
    let n = slots.len();
    if n * logits.vocab < 1 << 16 {
        (0..n).for_each(pick); // too little to share out
    } else {
        decoder.run_tasks(n, &pick);
    }
    slots
        .into_iter()
        .map(|slot| {
            let slot = slot.into_inner().unwrap_or_else(PoisonError::into_inner);
            slot.pick.expect("every sequence was picked for")
        })
        .collect()
}

/// Reports sequence `s`'s next token `id`, drawn from `dist`, and readies the next feed.
/// Returns how the sequence finished, if it did.
fn advance<D: Decoder>(
    decoder: &D,
    s: &mut Sequence<D::Cache>,
    dist: &Distribution,
    id: u32,
    on_event: &mut dyn FnMut(&Event) -> Flow,
) -> Result<Option<Finish>> {
    let top = dist.top(s.config.show_top);
    let ends = s.config.ends.contains(&id);
    if !ends {
        s.history.push(id);
    }
    let flow = on_event(&Event::Token {
        seq: s.seq,
        step: s.history.len() - s.prompt_len - usize::from(!ends),
        id,
        prob: dist.prob(id),
        top: &top,
        ids: s.new_ids(),
    });
    if ends {
        return Ok(Some(Finish::End));
    }
    if flow == Flow::Stop {
        return Ok(Some(Finish::Stopped));
    }
    if s.new_ids().len() == s.config.max_new_tokens {
        return Ok(Some(Finish::MaxTokens));
    }
    s.pending.clear();
    s.pending.push(id);
    if decoder.cache_len(&s.cache) + 1 > decoder.context_len() {
        match s.config.overflow {
            Overflow::Stop => return Ok(Some(Finish::ContextFull)),
            Overflow::Slide => slide(decoder, s),
        }
    }
    Ok(None)
}

/// Restarts a sequence's cache on its first `keep_prefix` tokens and its most recent ones, half
/// a context in all, to be fed at the next step.
fn slide<D: Decoder>(decoder: &D, s: &mut Sequence<D::Cache>) {
    let keep = s.config.keep_prefix;
    let recent = (decoder.context_len() / 2).saturating_sub(keep).max(1);
    s.cache = decoder.new_cache();
    if s.twin.is_some() {
        s.twin = Some(decoder.new_cache());
    }
    s.pending.clear();
    s.pending.extend_from_slice(&s.history[..keep]);
    s.pending
        .extend_from_slice(&s.history[s.history.len() - recent..]);
    s.slid = Some(s.pending.len());
}

/// Generates a continuation of every prompt, all in one batch: prompt `i` draws with the seed
/// `config.seed + i` and is sequence `i` in events. `on_event` sees each token as it is drawn
/// and may stop its sequence.
pub fn generate<D: Decoder>(
    decoder: &D,
    prompts: &[Vec<u32>],
    config: &GenerateConfig,
    on_event: &mut dyn FnMut(&Event) -> Flow,
) -> Result<Vec<Generation>> {
    let caches = prompts.iter().map(|_| decoder.new_cache()).collect();
    Ok(generate_cached(decoder, prompts, caches, config, on_event)?
        .into_iter()
        .map(|(g, _)| g)
        .collect())
}

/// [`generate`] with caches that may already hold a prefix of each prompt; returns them with
/// the generations.
pub fn generate_cached<D: Decoder>(
    decoder: &D,
    prompts: &[Vec<u32>],
    caches: Vec<D::Cache>,
    config: &GenerateConfig,
    on_event: &mut dyn FnMut(&Event) -> Flow,
) -> Result<Vec<(Generation, D::Cache)>> {
    if prompts.is_empty() {
        return Err(PromptError::Empty.into());
    }
    let mut batch = Generator::new(decoder);
    for (i, (prompt, cache)) in prompts.iter().zip(caches).enumerate() {
        let mut c = config.clone();
        c.seed = config.seed.wrapping_add(i as u64);
        batch.add(i, prompt.clone(), c, cache)?;
    }
    let mut out: Vec<Option<(Generation, D::Cache)>> = prompts.iter().map(|_| None).collect();
    while !batch.is_empty() {
        for done in batch.step(on_event)? {
            out[done.seq] = Some((done.generation, done.cache));
        }
    }
    Ok(out
        .into_iter()
        .map(|g| g.expect("every sequence finishes"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::{Logits, check_feeds, rows_returned};

    /// A toy decoder whose next-token logits depend only on the last token: it strongly
    /// prefers `(last + 1) % vocab`. Its cache just records what was fed.
    struct Counter {
        vocab: usize,
        context: usize,
    }

    impl Decoder for Counter {
        type Cache = Vec<u32>;
        fn vocab_size(&self) -> usize {
            self.vocab
        }
        fn context_len(&self) -> usize {
            self.context
        }
        fn new_cache(&self) -> Self::Cache {
            Vec::new()
        }
        fn cache_len(&self, cache: &Self::Cache) -> usize {
            cache.len()
        }
        fn truncate_cache(&self, cache: &mut Self::Cache, len: usize) {
            cache.truncate(len);
        }
        fn forward(&self, feeds: &mut [Feed<Self::Cache>], positions: Positions) -> Result<Logits> {
            let ids: Vec<&[u32]> = feeds.iter().map(|f| f.ids).collect();
            let cached: Vec<usize> = feeds.iter().map(|f| f.cache.len()).collect();
            check_feeds(&ids, &cached, self.vocab, self.context)?;
            let mut data = Vec::new();
            for f in feeds.iter_mut() {
                f.cache.extend_from_slice(f.ids);
                let fed = match positions {
                    Positions::Last => &f.ids[f.ids.len() - 1..],
                    Positions::All => f.ids,
                };
                for &t in fed {
                    let mut l = vec![0.0; self.vocab];
                    l[(t as usize + 1) % self.vocab] = 10.0;
                    data.extend(l);
                }
            }
            Ok(Logits::new(
                self.vocab,
                &rows_returned(&ids, positions),
                data,
            ))
        }
    }

    fn greedy(max: usize) -> GenerateConfig {
        GenerateConfig::new(
            SamplerConfig {
                greedy: true,
                ..Default::default()
            },
            0,
            max,
        )
    }

    fn run(d: &Counter, prompts: &[Vec<u32>], config: &GenerateConfig) -> Result<Vec<Generation>> {
        generate(d, prompts, config, &mut |_| Flow::Continue)
    }

    #[test]
    fn greedy_follows_the_model() {
        let d = Counter {
            vocab: 10,
            context: 64,
        };
        let g = run(&d, &[vec![3]], &greedy(5)).unwrap();
        assert_eq!(g[0].ids, vec![4, 5, 6, 7, 8]);
        assert_eq!(g[0].finish, Finish::MaxTokens);
    }

    #[test]
    fn end_stops_each_sequence_on_its_own() {
        let d = Counter {
            vocab: 10,
            context: 64,
        };
        let mut config = greedy(20);
        config.ends = vec![7];
        let g = run(&d, &[vec![2], vec![5]], &config).unwrap();
        assert_eq!(g[0].ids, vec![3, 4, 5, 6]);
        assert_eq!(g[1].ids, vec![6]);
        assert!(g.iter().all(|g| g.finish == Finish::End));
    }

    #[test]
    fn banned_tokens_are_never_drawn_and_stop_rules_fire() {
        let d = Counter {
            vocab: 10,
            context: 64,
        };
        let mut config = greedy(20);
        config.banned = vec![5];
        let g = generate(&d, &[vec![3]], &config, &mut |e| match e {
            Event::Token { ids, .. } if ids.len() == 3 => Flow::Stop,
            _ => Flow::Continue,
        })
        .unwrap();
        assert!(!g[0].ids.contains(&5));
        assert_eq!(g[0].ids.len(), 3);
        assert_eq!(g[0].finish, Finish::Stopped);
    }

    #[test]
    fn context_overflow_stops_or_slides() {
        let d = Counter {
            vocab: 10,
            context: 8,
        };
        let g = run(&d, &[vec![0, 1, 2]], &greedy(100)).unwrap();
        assert_eq!(g[0].finish, Finish::ContextFull);
        assert_eq!(
            g[0].ids.len(),
            6,
            "3 prompt tokens + 5 fed = 8 positions, then one more drawn"
        );

        let mut config = greedy(30);
        config.overflow = Overflow::Slide;
        config.keep_prefix = 1;
        let mut slides = 0;
        let out = generate_cached(&d, &[vec![0, 1, 2]], vec![Vec::new()], &config, &mut |e| {
            slides += matches!(e, Event::Slide { .. }) as usize;
            Flow::Continue
        })
        .unwrap();
        let (g, cache) = &out[0];
        assert_eq!(g.ids.len(), 30);
        assert_eq!(g.ids[29], (2 + 30) % 10);
        assert!(slides > 0);
        // After a slide the cache restarted from the prefix token 0 plus the recent tokens.
        assert_eq!(cache[0], 0);
        assert!(cache.len() <= 8);

        // A prompt longer than the context is an error unless the window slides.
        assert!(
            run(&d, &[vec![1; 9]], &greedy(1))
                .unwrap_err()
                .to_string()
                .contains("context")
        );
    }

    #[test]
    fn bad_prompts_are_errors() {
        let d = Counter {
            vocab: 10,
            context: 8,
        };
        assert!(run(&d, &[vec![]], &greedy(1)).is_err());
        assert!(run(&d, &[], &greedy(1)).is_err());
        assert!(run(&d, &[vec![11]], &greedy(1)).is_err());
    }

    #[test]
    fn ragged_prompts_share_a_batch() {
        let d = Counter {
            vocab: 10,
            context: 64,
        };
        let g = run(&d, &[vec![1], vec![1, 2, 3, 4], vec![7, 8]], &greedy(3)).unwrap();
        assert_eq!(g[0].ids, vec![2, 3, 4]);
        assert_eq!(g[1].ids, vec![5, 6, 7]);
        assert_eq!(g[2].ids, vec![9, 0, 1]);
    }

    #[test]
    fn sequences_join_and_leave_a_running_batch() {
        let d = Counter {
            vocab: 10,
            context: 64,
        };
        let mut batch = Generator::new(&d);
        batch.add(0, vec![1], greedy(4), Vec::new()).unwrap();
        let mut seen = Vec::new();
        let mut on_event = |e: &Event| {
            if let Event::Token { seq, id, .. } = e {
                seen.push((*seq, *id));
            }
            Flow::Continue
        };
        assert!(batch.step(&mut on_event).unwrap().is_empty());
        batch.add(1, vec![5, 6], greedy(2), Vec::new()).unwrap();
        batch.add(2, vec![0], greedy(0), Vec::new()).unwrap();
        let done = batch.step(&mut on_event).unwrap();
        assert_eq!(done.len(), 1, "asking for no tokens finishes at once");
        assert_eq!(done[0].seq, 2);
        assert_eq!(batch.len(), 2);
        let cancelled = batch.cancel(0).unwrap();
        assert_eq!(cancelled.generation.ids, vec![2, 3]);
        assert_eq!(cancelled.generation.finish, Finish::Stopped);
        let done = batch.step(&mut on_event).unwrap();
        assert_eq!(done[0].generation.ids, vec![7, 8]);
        assert_eq!(done[0].cache, vec![5, 6, 7], "the cache holds what was fed");
        assert!(batch.is_empty());
        assert_eq!(seen, vec![(0, 2), (0, 3), (1, 7), (1, 8)]);
    }

    #[test]
    fn events_report_every_drawn_token() {
        let d = Counter {
            vocab: 10,
            context: 64,
        };
        let mut config = greedy(4);
        config.show_top = 3;
        let mut seen = Vec::new();
        generate(&d, &[vec![1], vec![2]], &config, &mut |e| {
            if let Event::Token {
                seq,
                id,
                prob,
                top,
                step,
                ids,
            } = e
            {
                assert_eq!(top.len(), 3);
                assert_eq!(top[0].0, *id);
                assert!(*prob > 0.99);
                assert_eq!(ids.len(), step + 1);
                seen.push((*seq, *id));
            }
            Flow::Continue
        })
        .unwrap();
        assert_eq!(seen.len(), 8);
    }

    /// Logits that say which token a sequence started with (a one-hot of height 10).
    struct FirstToken;

    impl Decoder for FirstToken {
        type Cache = Vec<u32>;
        fn vocab_size(&self) -> usize {
            4
        }
        fn context_len(&self) -> usize {
            16
        }
        fn new_cache(&self) -> Self::Cache {
            Vec::new()
        }
        fn cache_len(&self, cache: &Self::Cache) -> usize {
            cache.len()
        }
        fn truncate_cache(&self, cache: &mut Self::Cache, len: usize) {
            cache.truncate(len);
        }
        fn forward(&self, feeds: &mut [Feed<Self::Cache>], _: Positions) -> Result<Logits> {
            let mut data = Vec::new();
            for f in feeds.iter_mut() {
                f.cache.extend(f.ids);
                let mut one_hot = vec![0.0; 4];
                one_hot[f.cache[0] as usize] = 10.0;
                data.extend(one_hot);
            }
            Ok(Logits::new(4, &vec![1; feeds.len()], data))
        }
    }

    #[test]
    fn guided_and_plain_sequences_share_a_batch() {
        let d = FirstToken;
        let mut guided = greedy(3);
        guided.show_top = 4;
        guided.guidance = Some(Guidance::new(3, 2.0).unwrap());
        let plain = {
            let mut c = greedy(3);
            c.show_top = 4;
            c
        };
        let mut generator = Generator::new(&d);
        generator.add(0, vec![1], guided, Vec::new()).unwrap();
        generator.add(1, vec![2], plain, Vec::new()).unwrap();
        let mut tops: Vec<(usize, Vec<(u32, f32)>)> = Vec::new();
        let mut done = Vec::new();
        while !generator.is_empty() {
            done.extend(
                generator
                    .step(&mut |e| {
                        if let Event::Token {
                            seq, top, step: 0, ..
                        } = e
                        {
                            tops.push((*seq, top.to_vec()));
                        }
                        Flow::Continue
                    })
                    .unwrap(),
            );
        }
        // Guided: u + 2 (c - u) = [0, 20, 0, -10]; plain: [0, 0, 10, 0].
        let p = |logits: [f32; 4], id: usize| {
            let z: f32 = logits.iter().map(|l| l.exp()).sum();
            logits[id].exp() / z
        };
        let (_, top0) = tops.iter().find(|(s, _)| *s == 0).unwrap();
        assert_eq!(top0[0].0, 1);
        assert!((top0[0].1 - p([0.0, 20.0, 0.0, -10.0], 1)).abs() < 1e-6);
        assert!((top0[3].1 - p([0.0, 20.0, 0.0, -10.0], 3)).abs() < 1e-12);
        let (_, top1) = tops.iter().find(|(s, _)| *s == 1).unwrap();
        assert!((top1[0].1 - p([0.0, 0.0, 10.0, 0.0], 2)).abs() < 1e-6);
        done.sort_by_key(|d| d.seq);
        assert_eq!(done[0].generation.ids, vec![1, 1, 1]);
        assert_eq!(done[1].generation.ids, vec![2, 2, 2]);
    }
}
