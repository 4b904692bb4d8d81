//! Rolling the dice: logits -> a distribution over the vocabulary -> one token.
//!
//! The chain is a few named steps, in the order most tools use: repetition penalty and bans on
//! the logits, then top-k, temperature (the softmax), top-p and min-p on the candidates, then a
//! seeded draw from what is left (renormalised). Greedy takes the argmax after the penalty and
//! bans. A new filter is one more function over [`Candidates`].

use anyhow::{Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::InvalidSetting;

/// How logits become a token: the settings of every step of the chain, as a config file or
/// request spells them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// Always take the most likely token.
    pub greedy: bool,
    /// Divides the logits: below 1 sharpens the distribution, above 1 flattens it.
    pub temperature: f32,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose mass reaches p.
    pub top_p: Option<f32>,
    /// Drop tokens less likely than min_p times the most likely one.
    pub min_p: Option<f32>,
    /// Above 1, makes tokens already in the sequence less likely (CTRL-style).
    pub repetition_penalty: f32,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            greedy: false,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            min_p: None,
            repetition_penalty: 1.0,
        }
    }
}

impl SamplerConfig {
    /// Rejects settings that make no distribution.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |field, message: String| InvalidSetting::new(field, message);
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(bad(
                "temperature",
                format!(
                    "must be a positive number (got {}); greedy decoding is the argmax",
                    self.temperature
                ),
            ));
        }
        if self.top_k == Some(0) {
            return Err(bad("top_k", "must be at least 1".into()));
        }
        if let Some(p) = self.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return Err(bad("top_p", format!("must be in (0, 1] (got {p})")));
        }
        if let Some(p) = self.min_p.filter(|p| !(*p >= 0.0 && *p < 1.0)) {
            return Err(bad("min_p", format!("must be in [0, 1) (got {p})")));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(bad(
                "repetition_penalty",
                format!(
                    "must be a positive number (got {})",
                    self.repetition_penalty
                ),
            ));
        }
        Ok(())
    }
}

/// A distribution over candidate tokens; probabilities sum to 1. Candidates are in id order
/// unless a filter needed them ranked (`ranked`: most likely first).
#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    /// `(token id, probability)` of every token that can still be drawn.
    pub candidates: Vec<(u32, f32)>,
    /// Whether `candidates` is sorted most likely first rather than by id.
    pub ranked: bool,
}

impl Distribution {
    /// The probability of token `id`; 0 when a filter removed it or it was banned.
    pub fn prob(&self, id: u32) -> f32 {
        self.candidates
            .iter()
            .find(|c| c.0 == id)
            .map_or(0.0, |c| c.1)
    }

    /// The `k` most likely candidates, most likely first (ties: lower id first).
    pub fn top(&self, k: usize) -> Vec<(u32, f32)> {
        if self.ranked {
            return self.candidates.iter().take(k).copied().collect();
        }
        let mut c = self.candidates.clone();
        let k = k.min(c.len());
        if k == 0 {
            return Vec::new();
        }
        c.select_nth_unstable_by(k - 1, by_prob);
        c.truncate(k);
        c.sort_unstable_by(by_prob);
        c
    }

    /// The most likely candidate (ties: the lowest id).
    pub fn argmax(&self) -> u32 {
        self.candidates
            .iter()
            .copied()
            .min_by(by_prob)
            .expect("a distribution is never empty")
            .0
    }
}

fn by_prob(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The tokens still in the running and their weights: logits until [`softmax`] turns them
/// into probabilities. In id order unless `ranked` (most likely first, ties by lower id).
#[derive(Clone, Debug)]
pub struct Candidates {
    /// Token ids still in the running.
    pub ids: Vec<u32>,
    /// One weight per id: a logit before [`softmax`], a probability after.
    pub weights: Vec<f64>,
    /// Whether the candidates are sorted most likely first rather than by id.
    pub ranked: bool,
}

impl Candidates {
    /// Every token whose score is not -inf (banned tokens are -inf).
    fn of(scores: &[f32]) -> Result<Self> {
        if scores.iter().any(|s| s.is_nan()) {
            bail!("the model produced NaN logits");
        }
        let (ids, weights): (Vec<u32>, Vec<f64>) = (0..scores.len() as u32)
            .map(|i| (i, scores[i as usize] as f64))
            .filter(|&(_, s)| s > f64::NEG_INFINITY)
            .unzip();
        if ids.is_empty() {
            bail!("no token can be drawn: every logit is -inf or banned");
        }
        Ok(Self {
            ids,
            weights,
            ranked: false,
        })
    }

    /// Keeps the candidates whose weight passes `keep`, in their order.
    fn retain(&mut self, keep: impl Fn(f64) -> bool) {
        let (ids, weights) = self
            .ids
            .iter()
            .zip(&self.weights)
            .filter(|(_, w)| keep(**w))
            .unzip();
        (self.ids, self.weights) = (ids, weights);
    }

    /// Sorts most likely first; with `only`, keeps just that many (a partial sort).
    fn rank(&mut self, only: Option<usize>) {
        if self.ranked && only.is_none() {
            return;
        }
        let mut order: Vec<usize> = (0..self.ids.len()).collect();
        let by_weight = |a: &usize, b: &usize| {
            self.weights[*b]
                .total_cmp(&self.weights[*a])
                .then(self.ids[*a].cmp(&self.ids[*b]))
        };
        if let Some(k) = only.filter(|&k| k < order.len()) {
            order.select_nth_unstable_by(k - 1, by_weight);
            order.truncate(k);
        }
        order.sort_unstable_by(by_weight);
        self.ids = order.iter().map(|&i| self.ids[i]).collect();
        self.weights = order.iter().map(|&i| self.weights[i]).collect();
        self.ranked = true;
    }

    fn normalise(&mut self) {
        let total: f64 = self.weights.iter().sum();
        self.weights.iter_mut().for_each(|p| *p /= total);
    }
}

/// Divides the logits of tokens already in `history` by `penalty` (multiplies negative ones),
/// as CTRL does.
pub fn penalise_repeats(scores: &mut [f32], history: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = vec![false; scores.len()];
    for &id in history {
        if let Some(s) = seen.get_mut(id as usize) {
            *s = true;
        }
    }
    for (score, _) in scores.iter_mut().zip(&seen).filter(|(_, s)| **s) {
        *score = if *score > 0.0 {
            *score / penalty
        } else {
            *score * penalty
        };
    }
}

/// Makes `banned` tokens impossible.
pub fn ban(scores: &mut [f32], banned: &[u32]) {
    for &id in banned {
        if let Some(s) = scores.get_mut(id as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// Keeps the `k` highest-scoring candidates, ranked.
pub fn top_k(c: &mut Candidates, k: usize) {
    c.rank(Some(k));
}

/// Logits to probabilities at `temperature` (computed in f64, relative to the maximum).
pub fn softmax(c: &mut Candidates, temperature: f32) {
    let max = c.weights.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let t = temperature as f64;
    c.weights
        .iter_mut()
        .for_each(|w| *w = ((*w - max) / t).exp());
    c.normalise();
}

/// Keeps the smallest set of most likely candidates whose probability reaches `p`.
pub fn top_p(c: &mut Candidates, p: f32) {
    c.rank(None); // a no-op when already ranked
    let mut mass = 0.0;
    let keep = c
        .weights
        .iter()
        .position(|q| {
            mass += q;
            mass >= p as f64 - 1e-12
        })
        .map_or(c.ids.len(), |i| i + 1);
    c.ids.truncate(keep);
    c.weights.truncate(keep);
    c.normalise();
}

/// Drops candidates less likely than `m` times the most likely one.
pub fn min_p(c: &mut Candidates, m: f32) {
    let floor = c.weights.iter().copied().fold(0.0, f64::max) * m as f64;
    c.retain(|w| w >= floor);
    c.normalise();
}

/// The distribution when every token that is not banned stays a candidate (no filter, or
/// greedy): one vectorised f32 softmax over the whole vocabulary, without building, ranking or
/// renormalising a candidate list. (Filters rank candidates, so they take [`Candidates`].)
fn plain_softmax(mut scores: Vec<f32>, temperature: f32) -> Result<Distribution> {
    if scores.iter().any(|s| s.is_nan()) {
        bail!("the model produced NaN logits");
    }
    if scores.iter().all(|&s| s == f32::NEG_INFINITY) {
        bail!("no token can be drawn: every logit is -inf or banned");
    }
    if temperature != 1.0 {
        scores.iter_mut().for_each(|s| *s /= temperature);
    }
    let cols = scores.len();
    jielong_kernels::ops::softmax(&mut scores, cols);
    // Banned tokens (and any too unlikely for an f32) have probability exactly 0: left out.
    let candidates = (0..cols as u32)
        .zip(scores)
        .filter(|&(_, p)| p > 0.0)
        .collect();
    Ok(Distribution {
        candidates,
        ranked: false,
    })
}

/// A seeded sampler for one sequence: the same seed and logits give the same tokens.
#[derive(Clone, Debug)]
pub struct Sampler {
    config: SamplerConfig,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler with `config` (checked by [`SamplerConfig::validate`]) whose dice are seeded
    /// with `seed`.
    pub fn new(config: SamplerConfig, seed: u64) -> Result<Self, InvalidSetting> {
        config.validate()?;
        Ok(Self {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// The settings this sampler draws with.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The distribution the next token is drawn from, given the logits, the tokens so far (for
    /// the repetition penalty) and tokens that must never be drawn.
    ///
    /// Greedy returns the full softmax (at temperature 1), so that what a greedy choice passed
    /// over can still be shown.
    pub fn distribution(
        &self,
        logits: &[f32],
        history: &[u32],
        banned: &[u32],
    ) -> Result<Distribution> {
        let config = &self.config;
        let mut scores = logits.to_vec();
        penalise_repeats(&mut scores, history, config.repetition_penalty);
        ban(&mut scores, banned);
        let filtered = config.top_k.is_some() || config.top_p.is_some() || config.min_p.is_some();
        if config.greedy || !filtered {
            let t = if config.greedy {
                1.0
            } else {
                config.temperature
            };
            return plain_softmax(scores, t);
        }
        let mut c = Candidates::of(&scores)?;
        if let Some(k) = config.top_k {
            top_k(&mut c, k);
        } else if config.top_p.is_some() {
            c.rank(None); // by logit, before the softmax can tie tiny probabilities
        }
        softmax(&mut c, config.temperature);
        if let Some(p) = config.top_p {
            top_p(&mut c, p);
        }
        if let Some(m) = config.min_p {
            min_p(&mut c, m);
        }
        Ok(Distribution {
            candidates: c
                .ids
                .into_iter()
                .zip(c.weights.into_iter().map(|q| q as f32))
                .collect(),
            ranked: c.ranked,
        })
    }

    /// Draws one token from a distribution (the most likely one when greedy).
    pub fn draw(&mut self, dist: &Distribution) -> u32 {
        if self.config.greedy {
            return dist.argmax();
        }
        let u: f64 = self.rng.r#gen();
        let mut mass = 0.0;
        for &(id, p) in &dist.candidates {
            mass += p as f64;
            if u < mass {
                return id;
            }
        }
        dist.candidates
            .last()
            .expect("a distribution is never empty")
            .0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(config: SamplerConfig) -> Sampler {
        Sampler::new(config, 7).unwrap()
    }

    const LOGITS: [f32; 6] = [1.0, 3.0, 2.0, 0.5, 2.5, -1.0];

    #[test]
    fn the_unfiltered_softmax_agrees_with_the_candidate_chain() {
        // No filter takes the vectorised f32 softmax; min_p 0 keeps every token but goes
        // through the f64 candidate list: the same distribution, to f32 precision.
        for temperature in [0.3, 1.0, 2.5] {
            let plain = sampler(SamplerConfig {
                temperature,
                ..Default::default()
            });
            let chain = sampler(SamplerConfig {
                temperature,
                min_p: Some(0.0),
                ..Default::default()
            });
            let a = plain.distribution(&LOGITS, &[4], &[3]).unwrap();
            let b = chain.distribution(&LOGITS, &[4], &[3]).unwrap();
            assert_eq!(a.candidates.len(), 5, "the banned token is left out");
            for id in 0..LOGITS.len() as u32 {
                assert!((a.prob(id) - b.prob(id)).abs() < 1e-6, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn greedy_is_argmax() {
        let mut s = sampler(SamplerConfig {
            greedy: true,
            ..Default::default()
        });
        for _ in 0..5 {
            let d = s.distribution(&LOGITS, &[], &[]).unwrap();
            assert_eq!(s.draw(&d), 1);
        }
        // Banning the argmax moves greedy to the runner-up.
        let d = s.distribution(&LOGITS, &[], &[1]).unwrap();
        assert_eq!(s.draw(&d), 4);
    }

    #[test]
    fn top_k_never_draws_outside_the_k() {
        let mut s = sampler(SamplerConfig {
            top_k: Some(2),
            ..Default::default()
        });
        let d = s.distribution(&LOGITS, &[], &[]).unwrap();
        assert_eq!(d.candidates.len(), 2);
        for _ in 0..2000 {
            let id = s.draw(&d);
            assert!(id == 1 || id == 4, "drew {id}");
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_the_mass() {
        let full = sampler(SamplerConfig::default())
            .distribution(&LOGITS, &[], &[])
            .unwrap();
        let s = sampler(SamplerConfig {
            top_p: Some(0.7),
            ..Default::default()
        });
        let d = s.distribution(&LOGITS, &[], &[]).unwrap();
        let kept = d.candidates.len();
        let ranked = full.top(6);
        let mass_kept: f32 = ranked[..kept].iter().map(|c| c.1).sum();
        let mass_before: f32 = ranked[..kept - 1].iter().map(|c| c.1).sum();
        assert!(
            mass_kept >= 0.7 && mass_before < 0.7,
            "{mass_before} {mass_kept}"
        );
        let total: f32 = d.candidates.iter().map(|c| c.1).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let s = sampler(SamplerConfig {
            min_p: Some(0.5),
            ..Default::default()
        });
        let d = s.distribution(&LOGITS, &[], &[]).unwrap();
        // p(4)/p(1) = e^-0.5 = 0.61 stays, p(2)/p(1) = e^-1 = 0.37 goes.
        assert_eq!(
            d.top(10).iter().map(|c| c.0).collect::<Vec<_>>(),
            vec![1, 4]
        );
    }

    #[test]
    fn temperature_sharpens_and_flattens() {
        let p = |t: f32| {
            sampler(SamplerConfig {
                temperature: t,
                ..Default::default()
            })
            .distribution(&LOGITS, &[], &[])
            .unwrap()
            .prob(1)
        };
        assert!(p(0.5) > p(1.0) && p(1.0) > p(2.0));
    }

    #[test]
    fn repetition_penalty_lowers_seen_tokens() {
        let plain = sampler(SamplerConfig::default())
            .distribution(&LOGITS, &[1], &[])
            .unwrap();
        let penalised = sampler(SamplerConfig {
            repetition_penalty: 1.5,
            ..Default::default()
        })
        .distribution(&LOGITS, &[1], &[])
        .unwrap();
        assert!(penalised.prob(1) < plain.prob(1));
        assert!(penalised.prob(4) > plain.prob(4));
    }

    #[test]
    fn same_seed_same_draws_and_frequencies_follow_probabilities() {
        let config = SamplerConfig::default();
        let d = sampler(config.clone())
            .distribution(&LOGITS, &[], &[])
            .unwrap();
        let draws = |seed| {
            let mut s = Sampler::new(config.clone(), seed).unwrap();
            (0..20000).map(|_| s.draw(&d)).collect::<Vec<_>>()
        };
        let a = draws(3);
        assert_eq!(a, draws(3));
        assert_ne!(a, draws(4));
        for &(id, p) in &d.candidates {
            let freq = a.iter().filter(|&&x| x == id).count() as f32 / a.len() as f32;
            assert!((freq - p).abs() < 0.015, "token {id}: p={p} freq={freq}");
        }
    }

    #[test]
    fn nonsense_settings_are_rejected() {
        for bad in [
            SamplerConfig {
                temperature: 0.0,
                ..Default::default()
            },
            SamplerConfig {
                temperature: f32::NAN,
                ..Default::default()
            },
            SamplerConfig {
                top_k: Some(0),
                ..Default::default()
            },
            SamplerConfig {
                top_p: Some(1.5),
                ..Default::default()
            },
            SamplerConfig {
                top_p: Some(0.0),
                ..Default::default()
            },
            SamplerConfig {
                min_p: Some(1.0),
                ..Default::default()
            },
            SamplerConfig {
                repetition_penalty: -1.0,
                ..Default::default()
            },
        ] {
            assert!(Sampler::new(bad.clone(), 0).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn everything_banned_is_an_error() {
        let s = sampler(SamplerConfig::default());
        assert!(s.distribution(&[1.0, 2.0], &[], &[0, 1]).is_err());
        assert!(s.distribution(&[f32::NAN, 2.0], &[], &[]).is_err());
    }
}
