//! Training tokens/s of a model folder's shape, as `jielong bench` measures it (random tokens,
//! forward + backward + clipping + AdamW, the first step not timed), without the CLI: for
//! profiling the trainer alone.
//!
//! ```sh
//! cargo run --release -p jielong-train --example train_speed -- models/shakespeare-char [BATCH] [STEPS]
//! ```
//!
//! Prints one line per timed step (milliseconds) and the tokens/s over all of them.

use std::time::Instant;

use anyhow::{Context, Result};
use jielong_core::Sequences;
use jielong_nn::{ModelFolder, burn::tensor::Device};
use jielong_train::{Stepper, TrainConfig};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .context("usage: train_speed MODEL_DIR [BATCH] [STEPS]")?;
    let batch: usize = args.get(1).map_or(Ok(16), |s| s.parse())?;
    let steps: usize = args.get(2).map_or(Ok(5), |s| s.parse())?;
    let arch = ModelFolder::open(dir.as_ref())?.architecture;
    let len = arch.context_len.min(256);
    let vocab = arch.vocab_size as u32;
    // The same pseudo-random tokens as `jielong bench`.
    let data = Sequences {
        seqs: vec![
            (0..200_000u32)
                .map(|i| i.wrapping_mul(2_654_435_761) % vocab)
                .collect(),
        ],
        ..Default::default()
    };
    let config = TrainConfig {
        batch_size: batch,
        seq_len: len,
        ..Default::default()
    };
    let mut stepper = Stepper::new(&arch, &config, &Device::flex())?;
    stepper.step(&data.batch(0, 0, batch, len), 1e-4, 0)?;
    let start = Instant::now();
    for step in 1..=steps {
        let t = Instant::now();
        let (loss, _) = stepper.step(&data.batch(0, step as u64, batch, len), 1e-4, step as u64)?;
        println!(
            "step {step}: {:.1} ms, loss {loss:.4}",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{dir}: {batch} x {len}, {:.0} train tokens/s",
        (steps * batch * len) as f64 / seconds
    );
    Ok(())
}
