//! The wgpu path (built with `--features wgpu`): a tiny model gives the same logits on wgpu as
//! on the CPU, decodes with a cache, takes a training step, and scores a held-out set too large
//! for one GPU buffer. Tiny shapes, because in CI the GPU is Mesa's software Vulkan driver.
#![cfg(feature = "wgpu")]

use jielong::core::{Decoder, Feed, Logits, Positions, Sequences, score, windows};
use jielong::nn::{KvCache, Transformer, TransformerConfig, select_device};
use jielong::train::{Stepper, TrainConfig};

#[test]
fn wgpu_matches_flex_and_trains() {
    let config = TransformerConfig::new(29, 16, 24, 2, 4, 2, 4, 16);
    let cpu = Transformer::init(&config, &select_device("flex").unwrap(), 3).unwrap();
    let gpu_device = select_device("wgpu").unwrap();
    let gpu = Transformer::init(&config, &gpu_device, 3).unwrap();
    let ids = [1u32, 5, 9, 2, 7, 3];
    let run = |model: &Transformer, feed: &[u32], cache: &mut KvCache| -> Logits {
        Decoder::forward(model, &mut [Feed::new(feed, cache)], Positions::All).unwrap()
    };
    let a = run(&cpu, &ids, &mut cpu.new_cache());
    let b = run(&gpu, &ids, &mut gpu.new_cache());
    let diff = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-3, "wgpu and flex logits differ by {diff}");

    // Cached decoding on the GPU agrees with the full pass.
    let mut cache = gpu.new_cache();
    run(&gpu, &ids[..4], &mut cache);
    let last = run(&gpu, &ids[4..], &mut cache);
    let d = last
        .last(0)
        .iter()
        .zip(b.last(0))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(d < 1e-3, "cached wgpu decoding differs by {d}");

    // One training step runs and lowers the loss on a repeated batch.
    let data = Sequences {
        seqs: vec![(0..200u32).map(|i| i % 29).collect()],
        ..Default::default()
    };
    let train = TrainConfig {
        batch_size: 2,
        seq_len: 8,
        ..Default::default()
    };
    let mut stepper = Stepper::new(&config, &train, &gpu_device).unwrap();
    let batch = data.batch(0, 0, 2, 8);
    let (first, _) = stepper.step(&batch, 1e-2, 0).unwrap();
    let mut last = first;
    for step in 1..=5 {
        last = stepper.step(&batch, 1e-2, step).unwrap().0;
    }
    assert!(last < first, "loss did not fall on wgpu: {first} -> {last}");
}

/// Scoring windows puts many of them in one burn batch, whose attention scores
/// (`[batch, heads, len, len]`) sit in one buffer: 400 windows of 256 tokens with 4 heads would
/// need 400 MiB, past what a GPU binds at once (lavapipe refuses it). Batches are bounded, and
/// the score is the CPU's.
#[test]
fn wgpu_scores_more_windows_than_one_buffer_holds() {
    let config = TransformerConfig::new(29, 16, 24, 1, 4, 4, 4, 256);
    let cpu = Transformer::init(&config, &select_device("flex").unwrap(), 5).unwrap();
    let gpu = Transformer::init(&config, &select_device("wgpu").unwrap(), 5).unwrap();
    let tokens: Vec<u32> = (0..400 * 256 + 1).map(|i| (i * 7 + i / 13) % 29).collect();
    let held = windows(&tokens, 0, 256).unwrap();
    assert!(held.len() >= 400);
    let a = score(&cpu, &held, &|_| true).unwrap();
    let b = score(&gpu, &held, &|_| true).unwrap();
    assert_eq!(a.tokens, b.tokens);
    let (a, b) = (a.nats / a.tokens as f64, b.nats / b.tokens as f64);
    assert!(
        (a - b).abs() < 1e-4,
        "flex {a} and wgpu {b} nats/token differ"
    );
}
