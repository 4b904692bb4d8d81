//! `jielong bench`: generation tokens/s at batch 1 and 16 (on the decode model the flags ask
//! for: the CPU kernels at a weight format and thread count, or burn on a GPU), training
//! tokens/s (burn's training path), load time and peak memory, for any model folder or GGUF.

use std::time::Instant;

use anyhow::{Result, bail};
use jielong_core::{Decoder, Flow, GenerateConfig, Overflow, SamplerConfig, Sequences, generate};
use jielong_nn::{ModelFolder, TransformerConfig};
use jielong_train::{Stepper, TrainConfig};
use serde_json::json;

use crate::args::{BenchArgs, Format};
use crate::open;

pub fn run(a: BenchArgs) -> Result<()> {
    if a.tokens == 0 || a.train_steps == 0 || a.train_batch == 0 {
        bail!("--tokens, --train-steps and --train-batch must be at least 1");
    }
    let options = open::load_options(&a.device)?;
    let started = Instant::now();
    let folder = ModelFolder::open(&a.model)?;
    let model = folder.load_model(options.clone())?;
    let load_seconds = started.elapsed().as_secs_f64();
    eprintln!("[{}: {}]", a.model.display(), model.describe());

    let batch1 = generation_speed(&model, 1, a.tokens)?;
    let batch16 = generation_speed(&model, 16, a.tokens)?;
    let peak_generate = peak_memory_mib();
    let config = model.config().clone();
    let (train_batch, train_len) = (a.train_batch, config.context_len.min(256));
    let train = if a.no_train {
        None
    } else {
        drop(model);
        Some(training_speed(
            &config,
            &options.device,
            train_batch,
            train_len,
            a.train_steps,
        )?)
    };
    let report = json!({
        "model": a.model.display().to_string(),
        "modality": folder.modality,
        "parameters": config.num_params(),
        "device": a.device.device,
        "weights": a.device.weights,
        "threads": match options.threads {
            0 => jielong_core::cores(),
            n => n,
        },
        "load_seconds": load_seconds,
        "generate_tokens_per_second_batch1": batch1,
        "generate_tokens_per_second_batch16": batch16,
        "peak_memory_mib_generate": peak_generate,
        "train_tokens_per_second": train,
        "train_batch": format!("{train_batch} x {train_len}"),
        "peak_memory_mib": peak_memory_mib(),
    });
    match a.format {
        Format::Json => println!("{report}"),
        Format::Text => {
            for (k, v) in report.as_object().expect("an object") {
                println!("{k:>36}: {v}");
            }
        }
    }
    Ok(())
}

/// How long generation runs before it is timed. These machines' cores run about a third slower
/// for the first few hundred milliseconds of work after being idle (stories15M f32 batch 1:
/// 600-680 tok/s right after loading, 890-940 after a 0.4 s busy loop or a 128-token run), so
/// an untimed warm-up measures the steady speed rather than the clock's ramp.
const WARM_UP: std::time::Duration = std::time::Duration::from_millis(500);

/// Tokens per second drawing `tokens` new tokens for each of `batch` sequences (the time to
/// feed the one-token prompt included, as a user would see it), after [`WARM_UP`] of the same
/// generation untimed.
fn generation_speed(model: &impl Decoder, batch: usize, tokens: usize) -> Result<f64> {
    let mut config = GenerateConfig::new(SamplerConfig::default(), 0, tokens);
    config.overflow = Overflow::Slide;
    let prompts = vec![vec![0u32]; batch];
    let warm = GenerateConfig {
        max_new_tokens: tokens.min(32),
        ..config.clone()
    };
    let started = Instant::now();
    while started.elapsed() < WARM_UP {
        generate(model, &prompts, &warm, &mut |_| Flow::Continue)?;
    }
    let t = Instant::now();
    let out = generate(model, &prompts, &config, &mut |_| Flow::Continue)?;
    let drawn: usize = out.iter().map(|g| g.ids.len()).sum();
    Ok(drawn as f64 / t.elapsed().as_secs_f64())
}

/// Training tokens per second on random tokens (forward, backward and AdamW), the first step
/// not counted.
fn training_speed(
    arch: &TransformerConfig,
    device: &jielong_nn::burn::tensor::Device,
    batch: usize,
    len: usize,
    steps: usize,
) -> Result<f64> {
    let vocab = arch.vocab_size as u32;
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
    let mut stepper = Stepper::new(arch, &config, device)?;
    stepper.step(&data.batch(0, 0, batch, len), 1e-4, 0)?;
    let t = Instant::now();
    for step in 1..=steps {
        stepper.step(&data.batch(0, step as u64, batch, len), 1e-4, step as u64)?;
    }
    Ok((steps * batch * len) as f64 / t.elapsed().as_secs_f64())
}

/// The process's peak resident memory (VmHWM), in MiB.
fn peak_memory_mib() -> Option<f64> {
    jielong_core::proc_bytes("/proc/self/status", "VmHWM").map(|b| b as f64 / (1 << 20) as f64)
}
