//! Rolling the dice: logits -> a distribution over the vocabulary -> one token.
//!
//! The chain runs in the order most tools use: repetition penalty, temperature, top-k, top-p,
//! min-p, then a draw from what is left (renormalised). Greedy takes the argmax after the
//! penalty.

use anyhow::{Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

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
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            bail!(
                "--temperature must be a positive number (got {}); use --greedy for argmax",
                self.temperature
            );
        }
        if self.top_k == Some(0) {
            bail!("--top-k must be at least 1");
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                bail!("--top-p must be in (0, 1] (got {p})");
            }
        }
        if let Some(p) = self.min_p {
            if !(p >= 0.0 && p < 1.0) {
                bail!("--min-p must be in [0, 1) (got {p})");
            }
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            bail!(
                "--repetition-penalty must be a positive number (got {})",
                self.repetition_penalty
            );
        }
        Ok(())
    }
}

/// A distribution over candidate tokens; probabilities sum to 1. Candidates are in id order
/// unless a filter needed them ranked (`ranked`: most likely first).
#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    pub candidates: Vec<(u32, f32)>,
    pub ranked: bool,
}

impl Distribution {
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

/// A seeded sampler for one sequence: the same seed and logits give the same tokens.
#[derive(Clone, Debug)]
pub struct Sampler {
    config: SamplerConfig,
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(config: SamplerConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

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
        let mut scores = logits.to_vec();
        if self.config.repetition_penalty != 1.0 {
            let r = self.config.repetition_penalty;
            let mut seen = vec![false; scores.len()];
            for &id in history {
                if let Some(s) = seen.get_mut(id as usize) {
                    *s = true;
                }
            }
            for (score, _) in scores.iter_mut().zip(&seen).filter(|(_, s)| **s) {
                *score = if *score > 0.0 { *score / r } else { *score * r };
            }
        }
        for &id in banned {
            if let Some(s) = scores.get_mut(id as usize) {
                *s = f32::NEG_INFINITY;
            }
        }
        let temperature = if self.config.greedy {
            1.0
        } else {
            self.config.temperature
        };
        if scores.iter().any(|s| s.is_nan()) {
            bail!("the model produced NaN logits");
        }
        // Candidates in id order; ranked (by score, then id) only when a filter needs it, since
        // sorting a large vocabulary every step costs more than the rest of the sampler.
        let mut order: Vec<u32> = (0..scores.len() as u32)
            .filter(|&i| scores[i as usize] > f32::NEG_INFINITY)
            .collect();
        if order.is_empty() {
            bail!("no token can be drawn: every logit is -inf or banned");
        }
        let by_score = |a: &u32, b: &u32| {
            scores[*b as usize]
                .total_cmp(&scores[*a as usize])
                .then(a.cmp(b))
        };
        let filtering = !self.config.greedy;
        let mut ranked = false;
        if let (Some(k), true) = (self.config.top_k, filtering) {
            if k < order.len() {
                order.select_nth_unstable_by(k - 1, by_score);
                order.truncate(k);
            }
            order.sort_unstable_by(by_score);
            ranked = true;
        }
        if let (Some(_), true, false) = (self.config.top_p, filtering, ranked) {
            order.sort_unstable_by(by_score);
            ranked = true;
        }

        let max = order
            .iter()
            .map(|&i| scores[i as usize])
            .fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut probs: Vec<f64> = order
            .iter()
            .map(|&i| ((scores[i as usize] as f64 - max) / temperature as f64).exp())
            .collect();
        normalise(&mut probs);

        if filtering {
            if let Some(p) = self.config.top_p {
                let mut mass = 0.0;
                let keep = probs.iter().position(|q| {
                    mass += q;
                    mass >= p as f64 - 1e-12
                });
                let keep = keep.map_or(probs.len(), |i| i + 1);
                order.truncate(keep);
                probs.truncate(keep);
                normalise(&mut probs);
            }
            if let Some(m) = self.config.min_p {
                let floor = probs.iter().copied().fold(0.0, f64::max) * m as f64;
                let (kept_ids, kept_probs): (Vec<u32>, Vec<f64>) = order
                    .iter()
                    .copied()
                    .zip(probs.iter().copied())
                    .filter(|&(_, q)| q >= floor)
                    .unzip();
                order = kept_ids;
                probs = kept_probs;
                normalise(&mut probs);
            }
        }
        Ok(Distribution {
            candidates: order
                .into_iter()
                .zip(probs.into_iter().map(|q| q as f32))
                .collect(),
            ranked,
        })
    }

    /// Draws one token from a distribution (the first one when greedy).
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

fn normalise(probs: &mut [f64]) {
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(config: SamplerConfig) -> Sampler {
        Sampler::new(config, 7).unwrap()
    }

    const LOGITS: [f32; 6] = [1.0, 3.0, 2.0, 0.5, 2.5, -1.0];

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
