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

/// A distribution over the tokens that can still be drawn; probabilities sum to 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    probs: Probs,
}

#[derive(Clone, Debug, PartialEq)]
enum Probs {
    /// The probability of every token, by id: the unfiltered softmax as it was computed (banned
    /// tokens, and any too unlikely for an f32, are 0 and cannot be drawn). Kept dense because
    /// listing the candidates of a vocabulary of tens of thousands cost as much as the softmax.
    ById(Vec<f32>),
    /// `(id, p)` of the candidates the filters left, in id order unless `ranked` (most likely
    /// first).
    Candidates {
        tokens: Vec<(u32, f32)>,
        ranked: bool,
    },
}

impl Distribution {
    /// The tokens that can be drawn, `(id, probability)`: in id order, or most likely first
    /// when a filter ranked them.
    pub fn candidates(&self) -> Vec<(u32, f32)> {
        match &self.probs {
            Probs::ById(p) => by_id(p).filter(|t| t.1 > 0.0).collect(),
            Probs::Candidates { tokens, .. } => tokens.clone(),
        }
    }

    /// The probability of token `id`; 0 when a filter removed it or it was banned.
    pub fn prob(&self, id: u32) -> f32 {
        match &self.probs {
            Probs::ById(p) => p.get(id as usize).copied().unwrap_or(0.0),
            Probs::Candidates { tokens, ranked } => {
                let found = if *ranked {
                    tokens.iter().position(|c| c.0 == id)
                } else {
                    tokens.binary_search_by_key(&id, |c| c.0).ok()
                };
                found.map_or(0.0, |i| tokens[i].1)
            }
        }
    }

    /// The `k` most likely candidates, most likely first (ties: lower id first).
    pub fn top(&self, k: usize) -> Vec<(u32, f32)> {
        if k == 0 {
            return Vec::new();
        }
        if let Probs::Candidates {
            tokens,
            ranked: true,
        } = &self.probs
        {
            return tokens[..k.min(tokens.len())].to_vec();
        }
        let mut c = self.candidates();
        keep_best(&mut c, k);
        c
    }

    /// The most likely candidate (ties: the lowest id).
    pub fn argmax(&self) -> u32 {
        match &self.probs {
            Probs::ById(p) => first_max(by_id(p)),
            Probs::Candidates {
                tokens,
                ranked: true,
            } => tokens[0].0,
            Probs::Candidates { tokens, .. } => first_max(tokens.iter().copied()),
        }
    }

    /// The token where the running sum of the probabilities, in the candidates' order and in
    /// f64, first exceeds `u` (in `[0, 1)`); the last candidate if rounding leaves the sum short.
    /// Tokens of probability 0 never change the sum, so they are never the answer: the dense
    /// and the listed forms of the same distribution give the same token.
    fn inverse_cdf(&self, u: f64) -> u32 {
        fn walk(mut tokens: impl Iterator<Item = (u32, f32)>, u: f64) -> Option<u32> {
            let mut mass = 0.0;
            tokens
                .find(|&(_, p)| {
                    mass += p as f64;
                    u < mass
                })
                .map(|(id, _)| id)
        }
        let last = "a distribution is never empty";
        match &self.probs {
            Probs::ById(p) => walk(by_id(p), u)
                .unwrap_or_else(|| p.iter().rposition(|&p| p > 0.0).expect(last) as u32),
            Probs::Candidates { tokens, .. } => {
                walk(tokens.iter().copied(), u).unwrap_or_else(|| tokens.last().expect(last).0)
            }
        }
    }
}

/// `(id, probability)` of every token of a dense distribution.
fn by_id(p: &[f32]) -> impl Iterator<Item = (u32, f32)> + '_ {
    (0..p.len() as u32).zip(p.iter().copied())
}

/// The first of the most likely tokens: in id order, the lowest id of equal maxima.
fn first_max(mut tokens: impl Iterator<Item = (u32, f32)>) -> u32 {
    let first = tokens.next().expect("a distribution is never empty");
    tokens
        .fold(first, |best, c| if c.1 > best.1 { c } else { best })
        .0
}

fn by_prob(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Keeps the `k` (at least 1) most likely of `tokens`, most likely first: a selection, then a
/// sort of the `k` alone.
fn keep_best(tokens: &mut Vec<(u32, f32)>, k: usize) {
    if k < tokens.len() {
        tokens.select_nth_unstable_by(k - 1, by_prob);
        tokens.truncate(k);
    }
    tokens.sort_unstable_by(by_prob);
}

/// The tokens still in the running: `(id, weight)`, a logit until [`softmax`] turns the weights
/// into probabilities. In id order unless `ranked` (most likely first, ties by lower id).
///
/// Weights are f32, like the distribution they become: a token too unlikely for an f32 (below
/// about 1e-38 of the most likely one) drops out at the softmax, as in the unfiltered path.
#[derive(Clone, Debug)]
pub struct Candidates {
    /// `(token id, weight)` of every token still in the running.
    pub tokens: Vec<(u32, f32)>,
    /// Whether `tokens` is sorted most likely first rather than by id.
    pub ranked: bool,
}

impl Candidates {
    /// Every token whose score is not -inf (banned tokens are -inf), in id order.
    fn of(scores: &[f32]) -> Result<Self> {
        check_scores(scores)?;
        // Collecting everything and then dropping the few banned tokens is several times
        // faster than a filtered collect over a vocabulary of tens of thousands.
        let mut tokens: Vec<(u32, f32)> = (0..scores.len() as u32)
            .zip(scores.iter().copied())
            .collect();
        tokens.retain(|t| t.1 > f32::NEG_INFINITY);
        Ok(Self {
            tokens,
            ranked: false,
        })
    }

    fn normalise(&mut self) {
        let total: f64 = self.tokens.iter().map(|t| t.1 as f64).sum();
        self.tokens
            .iter_mut()
            .for_each(|t| t.1 = (t.1 as f64 / total) as f32);
    }
}

/// Refuses logits that make no distribution: any NaN, or every token -inf (banned).
fn check_scores(scores: &[f32]) -> Result<()> {
    let (mut nan, mut any) = (false, false);
    for &s in scores {
        nan |= s.is_nan();
        any |= s > f32::NEG_INFINITY;
    }
    if nan {
        bail!("the model produced NaN logits");
    }
    if !any {
        bail!("no token can be drawn: every logit is -inf or banned");
    }
    Ok(())
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
    keep_best(&mut c.tokens, k);
    c.ranked = true;
}

/// Logits to probabilities at `temperature`: the vectorised f32 softmax of the decode kernels,
/// relative to the maximum; tokens whose probability is 0 in f32 drop out.
pub fn softmax(c: &mut Candidates, temperature: f32) {
    let mut weights: Vec<f32> = c.tokens.iter().map(|t| t.1).collect();
    divide_by_temperature(&mut weights, temperature);
    let cols = weights.len();
    jielong_kernels::ops::softmax(&mut weights, cols);
    c.tokens.iter_mut().zip(weights).for_each(|(t, p)| t.1 = p);
    c.tokens.retain(|t| t.1 > 0.0);
}

/// `scores / temperature`, what the softmax sees, never with `+inf` in it (the softmax would
/// turn `inf - inf` into NaN). When a score is `+inf` (a repetition penalty below 1 can
/// overflow one) or a quotient could overflow (a vanishing temperature), the distances to the
/// maximum are divided instead, so that the most likely tokens share all the probability, as
/// in the limit; `+inf` scores are the most likely. Ordinary scores and temperatures divide
/// the scores themselves (their distributions keep their bits), after one compare per score.
fn divide_by_temperature(scores: &mut [f32], temperature: f32) {
    // Below this no quotient overflows (with a margin for rounding), and `+inf` is above it.
    let limit = f32::MAX * 0.5 * temperature.min(1.0);
    if !scores.iter().any(|&s| s > limit) {
        if temperature != 1.0 {
            scores.iter_mut().for_each(|s| *s /= temperature);
        }
        return;
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for s in scores.iter_mut() {
        *s = if max == f32::INFINITY {
            if *s == max { 0.0 } else { f32::NEG_INFINITY }
        } else {
            (*s - max) / temperature
        };
    }
}

/// Keeps the smallest set of most likely candidates whose probability reaches `p`.
///
/// Only the tokens that can be in that set are sorted: those above a floor whose tokens
/// together reach `p` (every token of the set is above it, since the ones above it already
/// reach `p`). The floor starts at a tenth of the most likely token and drops until they do;
/// a peaked distribution sorts a few dozen tokens instead of the vocabulary.
pub fn top_p(c: &mut Candidates, p: f32) {
    let target = p as f64 - 1e-12;
    // How many of the ranked `tokens` reach the target, if they do.
    let reach = |tokens: &[(u32, f32)]| {
        let mut mass = 0.0;
        let last = tokens.iter().position(|t| {
            mass += t.1 as f64;
            mass >= target
        });
        last.map(|i| i + 1)
    };
    if !c.ranked {
        let max = c.tokens.iter().map(|t| t.1).fold(0.0, f32::max);
        for floor in [max * 0.1, max * 1e-2, max * 1e-4, max * 1e-8] {
            let mut above: Vec<(u32, f32)> =
                c.tokens.iter().filter(|t| t.1 > floor).copied().collect();
            above.sort_unstable_by(by_prob);
            if let Some(n) = reach(&above) {
                above.truncate(n);
                (c.tokens, c.ranked) = (above, true);
                return c.normalise();
            }
        }
        c.tokens.sort_unstable_by(by_prob);
        c.ranked = true;
    }
    // With every token in, a mass that rounding left short of `p` keeps them all.
    let n = reach(&c.tokens).unwrap_or(c.tokens.len());
    c.tokens.truncate(n);
    c.normalise();
}

/// Drops candidates less likely than `m` times the most likely one.
pub fn min_p(c: &mut Candidates, m: f32) {
    let floor = c.tokens.iter().map(|t| t.1).fold(0.0, f32::max) * m;
    c.tokens.retain(|t| t.1 >= floor);
    c.normalise();
}

/// The distribution when every token that is not banned stays a candidate (no filter, or
/// greedy): one vectorised f32 softmax over the whole vocabulary, in place, without building a
/// candidate list first. (Filters take [`Candidates`].)
fn plain_softmax(mut scores: Vec<f32>, temperature: f32) -> Result<Distribution> {
    check_scores(&scores)?;
    divide_by_temperature(&mut scores, temperature);
    let cols = scores.len();
    jielong_kernels::ops::softmax(&mut scores, cols);
    // Banned tokens (and any too unlikely for an f32) have probability exactly 0.
    Ok(Distribution {
        probs: Probs::ById(scores),
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
            top_k(&mut c, k); // by logit, before the softmax can tie tiny probabilities
        }
        softmax(&mut c, config.temperature);
        if let Some(p) = config.top_p {
            top_p(&mut c, p);
        }
        if let Some(m) = config.min_p {
            min_p(&mut c, m);
        }
        Ok(Distribution {
            probs: Probs::Candidates {
                tokens: c.tokens,
                ranked: c.ranked,
            },
        })
    }

    /// Draws one token from a distribution (the most likely one when greedy).
    pub fn draw(&mut self, dist: &Distribution) -> u32 {
        if self.config.greedy {
            return dist.argmax();
        }
        let u: f64 = self.rng.r#gen();
        dist.inverse_cdf(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

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
            assert_eq!(a.candidates().len(), 5, "the banned token is left out");
            for id in 0..LOGITS.len() as u32 {
                assert!((a.prob(id) - b.prob(id)).abs() < 1e-6, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn extreme_settings_give_the_limit_not_nan() {
        // A temperature so small that logit / t overflows: all the probability on the maximum
        // (both forms of the softmax); tied maxima share it.
        let tied = [1.0, 3.0, 2.0, 3.0];
        for min_p in [None, Some(0.0)] {
            let s = sampler(SamplerConfig {
                temperature: 1e-45,
                min_p,
                ..Default::default()
            });
            let d = s.distribution(&LOGITS, &[], &[]).unwrap();
            assert_eq!(d.prob(1), 1.0, "{min_p:?}: {d:?}");
            let d = s.distribution(&tied, &[], &[]).unwrap();
            assert_eq!((d.prob(1), d.prob(3), d.prob(2)), (0.5, 0.5, 0.0), "{d:?}");
        }
        // A repetition penalty below 1 that overflows a repeated token's logit to +inf: the
        // overflowed tokens share the probability.
        let mut s = sampler(SamplerConfig {
            repetition_penalty: 1e-39,
            ..Default::default()
        });
        let d = s.distribution(&LOGITS, &[2, 4], &[]).unwrap();
        assert_eq!((d.prob(2), d.prob(4), d.prob(1)), (0.5, 0.5, 0.0), "{d:?}");
        for _ in 0..100 {
            assert!(matches!(s.draw(&d), 2 | 4));
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
        assert_eq!(d.candidates().len(), 2);
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
        let kept = d.candidates().len();
        let ranked = full.top(6);
        let mass_kept: f32 = ranked[..kept].iter().map(|c| c.1).sum();
        let mass_before: f32 = ranked[..kept - 1].iter().map(|c| c.1).sum();
        assert!(
            mass_kept >= 0.7 && mass_before < 0.7,
            "{mass_before} {mass_kept}"
        );
        let total: f32 = d.candidates().iter().map(|c| c.1).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }

    /// Logits over a vocabulary of 20,000: a few likely tokens over a long tail, rounded to
    /// quarters so that many tie.
    fn large_logits(seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..20_000)
            .map(|i| {
                let g: f32 = rng.gen_range(-4.0..4.0);
                let head = if i % 997 == 0 { 9.0 } else { 0.0 };
                ((g + head) * 4.0).round() / 4.0
            })
            .collect()
    }

    #[test]
    fn top_p_and_top_k_match_a_full_sort_on_a_large_vocabulary() {
        for (seed, temperature) in [(1, 0.5), (2, 1.0), (3, 3.0)] {
            let logits = large_logits(seed);
            let dist = |config: SamplerConfig| {
                sampler(SamplerConfig {
                    temperature,
                    ..config
                })
                .distribution(&logits, &[], &[])
                .unwrap()
            };
            let ids = |c: &[(u32, f32)]| c.iter().map(|t| t.0).collect::<Vec<_>>();
            let mut ranked = dist(SamplerConfig::default()).candidates();
            ranked.sort_by(by_prob);
            for p in [0.05, 0.5, 0.9, 0.999, 1.0] {
                let mut mass = 0.0;
                let n = ranked
                    .iter()
                    .position(|t| {
                        mass += t.1 as f64;
                        mass >= p as f64 - 1e-12
                    })
                    .map_or(ranked.len(), |i| i + 1);
                let got = dist(SamplerConfig {
                    top_p: Some(p),
                    ..Default::default()
                });
                assert_eq!(
                    ids(&got.candidates()),
                    ids(&ranked[..n]),
                    "t {temperature} p {p}"
                );
                for (g, r) in got.candidates().iter().zip(&ranked) {
                    assert!((g.1 - r.1 / mass.min(1.0) as f32).abs() < 1e-6);
                }
            }
            let mut by_logit: Vec<(u32, f32)> =
                (0..logits.len() as u32).zip(logits.clone()).collect();
            by_logit.sort_by(by_prob);
            for k in [1, 7, 100, 20_000] {
                let got = dist(SamplerConfig {
                    top_k: Some(k),
                    ..Default::default()
                });
                let (want, got_ids) = (ids(&by_logit[..k]), ids(&got.candidates()));
                // Tokens too unlikely for an f32 drop out at the softmax, at the end.
                assert_eq!(got_ids, want[..got_ids.len()], "t {temperature} k {k}");
                assert!(got_ids.len() == k || temperature < 1.0);
            }
        }
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
        for (id, p) in d.candidates() {
            let freq = a.iter().filter(|&&x| x == id).count() as f32 / a.len() as f32;
            assert!((freq - p).abs() < 0.015, "token {id}: p={p} freq={freq}");
        }
    }

    #[test]
    fn the_dense_and_the_listed_distribution_draw_the_same_tokens() {
        // The unfiltered path keeps every token's probability by id (zeros included); a filter
        // lists the candidates. The same probabilities in either form, with the same seed, must
        // give the same draws, so the dense form changed no seed's output. Banned and underflowing
        // tokens (probability 0) sit between, before and after the others.
        let mut logits: Vec<f32> = (0..3000)
            .map(|i| ((i * 7919) % 1000) as f32 / 90.0)
            .collect();
        logits[0] = -200.0; // exp underflows to 0 in f32
        logits[2999] = -200.0;
        let banned = [1, 17, 2998];
        let dense = sampler(SamplerConfig::default())
            .distribution(&logits, &[], &banned)
            .unwrap();
        assert!(matches!(dense.probs, Probs::ById(_)));
        assert_eq!(dense.prob(0), 0.0);
        let listed = Distribution {
            probs: Probs::Candidates {
                tokens: dense.candidates(),
                ranked: false,
            },
        };
        assert_eq!(listed.candidates().len(), 3000 - 5);
        let draws = |d: &Distribution| {
            let mut s = sampler(SamplerConfig::default());
            (0..5000).map(|_| s.draw(d)).collect::<Vec<_>>()
        };
        assert_eq!(draws(&dense), draws(&listed));
        assert_eq!(dense.argmax(), listed.argmax());
        assert_eq!(dense.top(7), listed.top(7));
        for u in [0.0, 0.5, 1.0 - 1e-12, 1.0] {
            assert_eq!(dense.inverse_cdf(u), listed.inverse_cdf(u));
        }
        // A sum left short by rounding ends on the last token that can be drawn, not on an
        // impossible one after it.
        assert_eq!(dense.inverse_cdf(1.0), 2997);
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
