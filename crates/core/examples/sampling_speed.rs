//! Microseconds per token of the sampling chain (distribution, draw, the drawn token's
//! probability) over a vocabulary of llama2.c's size (32,000) and SmolLM2's (49,152), for each
//! kind of filter.
//!
//! ```sh
//! cargo run --release -p jielong-core --example sampling_speed
//! ```

use std::time::Instant;

use jielong_core::{Sampler, SamplerConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() {
    println!("| vocabulary | sampler | µs per token |");
    println!("|---|---|---|");
    for vocab in [32_000, 49_152] {
        // A language model's shape of logits: a few likely tokens over a long tail.
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let logits: Vec<f32> = (0..vocab)
            .map(|_| rng.gen_range(-4.0f32..4.0) * 1.5)
            .collect();
        let plain = SamplerConfig::default();
        for (name, config) in [
            ("temperature 1", plain.clone()),
            (
                "greedy",
                SamplerConfig {
                    greedy: true,
                    ..plain.clone()
                },
            ),
            (
                "top-k 40",
                SamplerConfig {
                    top_k: Some(40),
                    ..plain.clone()
                },
            ),
            (
                "temperature 0.7, top-p 0.9",
                SamplerConfig {
                    temperature: 0.7,
                    top_p: Some(0.9),
                    ..plain.clone()
                },
            ),
            (
                "min-p 0.05",
                SamplerConfig {
                    min_p: Some(0.05),
                    ..plain.clone()
                },
            ),
        ] {
            let mut sampler = Sampler::new(config, 1).expect("valid settings");
            for _ in 0..100 {
                std::hint::black_box(sampler.distribution(&logits, &[], &[]).expect("finite"));
            }
            let (calls, start) = (2000, Instant::now());
            for _ in 0..calls {
                let dist = sampler
                    .distribution(&logits, &[], &[])
                    .expect("finite logits");
                let id = sampler.draw(&dist);
                std::hint::black_box(dist.prob(id));
            }
            let micros = start.elapsed().as_secs_f64() * 1e6 / calls as f64;
            println!("| {vocab} | {name} | {micros:.0} |");
        }
    }
}
