//! The one generation loop, shared by every modality: feed, roll the dice, append, repeat.

use anyhow::{Result, bail};

use crate::decoder::{Decoder, Positions};
use crate::sampler::{Sampler, SamplerConfig};

/// What happens when a sequence outgrows the model's context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Stop generating (finish reason [`Finish::ContextFull`]).
    Stop,
    /// Slide the window: restart the cache on the conditioning prefix plus the most recent half
    /// of the context, and go on. The model then sees the kind of window it was trained on.
    Slide,
}

#[derive(Clone, Debug)]
pub struct GenerateConfig {
    pub sampler: SamplerConfig,
    /// Sequence `i` of a batch draws with the seed `seed + i`, so a sequence does not depend on
    /// the size of the batch it was drawn in.
    pub seed: u64,
    pub max_new_tokens: usize,
    /// Drawing one of these tokens ends a sequence (it is not part of the output).
    pub ends: Vec<u32>,
    /// Tokens never drawn (BOS, PAD, class tokens; END too for fixed-length content).
    pub banned: Vec<u32>,
    pub overflow: Overflow,
    /// Tokens at the start of each sequence kept when the window slides (a class token, BOS).
    pub keep_prefix: usize,
    /// How many of the most likely tokens each [`Event::Token`] carries (0: none).
    pub show_top: usize,
    /// Fed to sequences that have finished while others go on.
    pub pad: u32,
}

impl GenerateConfig {
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
            pad: 0,
        }
    }
}

/// What the loop reports as it goes.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// Sequence `seq` drew `id` (with probability `prob`) as its `step`-th new token; `top` holds
    /// the most likely candidates of the distribution it was drawn from.
    Token {
        seq: usize,
        step: usize,
        id: u32,
        prob: f32,
        top: &'a [(u32, f32)],
    },
    /// The window slid: the cache was rebuilt from the last `kept` tokens of each sequence.
    Slide { kept: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The END token was drawn.
    End,
    /// `max_new_tokens` were drawn.
    MaxTokens,
    /// The caller's stop rule (e.g. a stop string) fired.
    Stopped,
    /// The context is full and the overflow policy is [`Overflow::Stop`].
    ContextFull,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// The new tokens only (not the prompt, not END).
    pub ids: Vec<u32>,
    pub finish: Finish,
}

/// Generates a continuation for every prompt of a batch.
///
/// `prompts` are the whole token history of each sequence (all of the same length); `cache` may
/// already hold a prefix of them (a chat keeps its cache between turns) and only the rest is
/// fed. `on_event` sees each token as it is drawn; `stop(seq, new_ids)` may end a sequence early.
pub fn generate<D: Decoder>(
    decoder: &D,
    cache: &mut D::Cache,
    prompts: &[Vec<u32>],
    config: &GenerateConfig,
    on_event: &mut dyn FnMut(Event),
    stop: &mut dyn FnMut(usize, &[u32]) -> bool,
) -> Result<Vec<Generation>> {
    let context = decoder.context_len();
    let Some(prompt_len) = prompts.first().map(Vec::len) else {
        bail!("no prompts to continue")
    };
    if prompt_len == 0 {
        bail!("the prompt is empty: give at least one token");
    }
    if prompts.iter().any(|p| p.len() != prompt_len) {
        bail!("all prompts of a batch must have the same number of tokens");
    }
    let cached = decoder.cache_len(cache);
    if cached >= prompt_len {
        bail!("the cache already holds the whole prompt: nothing new to feed");
    }
    if config.keep_prefix >= context / 2 {
        bail!(
            "the kept prefix ({}) must be shorter than half the context ({context})",
            config.keep_prefix
        );
    }

    let mut samplers = (0..prompts.len())
        .map(|i| Sampler::new(config.sampler.clone(), config.seed.wrapping_add(i as u64)))
        .collect::<Result<Vec<_>>>()?;
    // `rows` is what each sequence has been fed (finished ones continue with PAD), so every row
    // has the same length and a slid window can be rebuilt from it.
    let mut rows: Vec<Vec<u32>> = prompts.to_vec();
    let mut out: Vec<Generation> = prompts
        .iter()
        .map(|_| Generation {
            ids: Vec::new(),
            finish: Finish::MaxTokens,
        })
        .collect();
    let mut active = vec![true; prompts.len()];

    let mut feed: Vec<Vec<u32>> = rows.iter().map(|r| r[cached..].to_vec()).collect();
    if cached + feed[0].len() > context {
        match config.overflow {
            Overflow::Stop => bail!(
                "the prompt needs {} tokens but the model's context holds {context}: shorten it{}",
                cached + feed[0].len(),
                " or let the window slide (--slide)"
            ),
            Overflow::Slide => feed = slide(decoder, cache, &rows, config.keep_prefix, on_event),
        }
    }

    for step in 0..config.max_new_tokens {
        let logits = decoder.forward(&feed, cache, Positions::Last)?;
        for seq in 0..rows.len() {
            if !active[seq] {
                continue;
            }
            let sampler = &mut samplers[seq];
            let dist = sampler.distribution(logits.last(seq), &rows[seq], &config.banned)?;
            let id = sampler.draw(&dist);
            let top = dist.top(config.show_top);
            on_event(Event::Token {
                seq,
                step,
                id,
                prob: dist.prob(id),
                top: &top,
            });
            if config.ends.contains(&id) {
                active[seq] = false;
                out[seq].finish = Finish::End;
            } else {
                out[seq].ids.push(id);
                if stop(seq, &out[seq].ids) {
                    active[seq] = false;
                    out[seq].finish = Finish::Stopped;
                }
            }
        }
        for seq in 0..rows.len() {
            let next = if active[seq] {
                *out[seq]
                    .ids
                    .last()
                    .expect("an active sequence drew a token")
            } else {
                config.pad
            };
            rows[seq].push(next);
        }
        if !active.iter().any(|&a| a) || step + 1 == config.max_new_tokens {
            break;
        }
        feed = rows
            .iter()
            .map(|r| vec![*r.last().expect("rows are never empty")])
            .collect();
        if decoder.cache_len(cache) + 1 > context {
            match config.overflow {
                Overflow::Stop => {
                    for (o, _) in out.iter_mut().zip(&active).filter(|(_, a)| **a) {
                        o.finish = Finish::ContextFull;
                    }
                    break;
                }
                Overflow::Slide => {
                    feed = slide(decoder, cache, &rows, config.keep_prefix, on_event)
                }
            }
        }
    }
    Ok(out)
}

/// Restarts the cache and returns the window to feed: the first `keep_prefix` tokens of each
/// row, then its most recent tokens, half a context in all.
fn slide<D: Decoder>(
    decoder: &D,
    cache: &mut D::Cache,
    rows: &[Vec<u32>],
    keep_prefix: usize,
    on_event: &mut dyn FnMut(Event),
) -> Vec<Vec<u32>> {
    let recent = (decoder.context_len() / 2)
        .saturating_sub(keep_prefix)
        .max(1);
    *cache = decoder.new_cache(rows.len());
    let window: Vec<Vec<u32>> = rows
        .iter()
        .map(|r| {
            let mut w = r[..keep_prefix].to_vec();
            w.extend_from_slice(&r[r.len() - recent..]);
            w
        })
        .collect();
    on_event(Event::Slide {
        kept: window[0].len(),
    });
    window
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::{Logits, check_feed};

    /// A toy decoder whose next-token logits depend only on the last token: it strongly
    /// prefers `(last + 1) % vocab`. Its cache just records what was fed.
    struct Counter {
        vocab: usize,
        context: usize,
    }

    impl Decoder for Counter {
        type Cache = Vec<Vec<u32>>;
        fn vocab_size(&self) -> usize {
            self.vocab
        }
        fn context_len(&self) -> usize {
            self.context
        }
        fn new_cache(&self, batch: usize) -> Self::Cache {
            vec![Vec::new(); batch]
        }
        fn cache_len(&self, cache: &Self::Cache) -> usize {
            cache[0].len()
        }
        fn forward(
            &self,
            ids: &[Vec<u32>],
            cache: &mut Self::Cache,
            positions: Positions,
        ) -> Result<Logits> {
            let len = check_feed(ids, self.vocab, self.cache_len(cache), self.context)?;
            let mut data = Vec::new();
            for (row, c) in ids.iter().zip(cache.iter_mut()) {
                c.extend_from_slice(row);
                let fed: &[u32] = if positions == Positions::Last {
                    &row[len - 1..]
                } else {
                    row
                };
                for &t in fed {
                    let mut l = vec![0.0; self.vocab];
                    l[(t as usize + 1) % self.vocab] = 10.0;
                    data.extend(l);
                }
            }
            Logits::new(
                ids.len(),
                if positions == Positions::Last { 1 } else { len },
                self.vocab,
                data,
            )
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
        let mut cache = d.new_cache(prompts.len());
        generate(d, &mut cache, prompts, config, &mut |_| {}, &mut |_, _| {
            false
        })
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
        let mut cache = d.new_cache(1);
        let g = generate(
            &d,
            &mut cache,
            &[vec![3]],
            &config,
            &mut |_| {},
            &mut |_, ids| ids.len() == 3,
        )
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
        let mut cache = d.new_cache(1);
        let g = generate(
            &d,
            &mut cache,
            &[vec![0, 1, 2]],
            &config,
            &mut |e| slides += matches!(e, Event::Slide { .. }) as usize,
            &mut |_, _| false,
        )
        .unwrap();
        assert_eq!(g[0].ids.len(), 30);
        assert_eq!(g[0].ids[29], (2 + 30) % 10);
        assert!(slides > 0);
        // After a slide the cache restarted from the prefix token 0 plus the recent tokens.
        assert_eq!(cache[0][0], 0);
        assert!(cache[0].len() <= 8);

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
        assert!(run(&d, &[vec![1], vec![1, 2]], &greedy(1)).is_err());
        assert!(run(&d, &[vec![11]], &greedy(1)).is_err());
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
        let mut cache = d.new_cache(2);
        generate(
            &d,
            &mut cache,
            &[vec![1], vec![2]],
            &config,
            &mut |e| {
                if let Event::Token {
                    seq, id, prob, top, ..
                } = e
                {
                    assert_eq!(top.len(), 3);
                    assert_eq!(top[0].0, id);
                    assert!(prob > 0.99);
                    seen.push((seq, id));
                }
            },
            &mut |_, _| false,
        )
        .unwrap();
        assert_eq!(seen.len(), 8);
    }
}
