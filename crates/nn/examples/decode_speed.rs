//! Decode speed of a model folder on the kernels path (or on burn, `--engine burn`, side by
//! side): greedy decoding of `--batch` sequences for `--tokens` steps, repeated, in tokens per
//! second; then the resident memory after 128 and 1,024 generated tokens (a sequence that fills
//! the context is rewound to its start, so the KV cache stops growing and anything else that
//! grew per token would show).
//!
//! ```sh
//! cargo run --release -p jielong-nn --example decode_speed -- DIR [--weights q8_0] [--threads N] [--batch B]
//!     [--tokens N] [--repeat R] [--engine kernels|burn]
//! ```
//!
//! `DIR` may also be `random:VOCAB,HIDDEN,INTERMEDIATE,LAYERS,HEADS,KV_HEADS,CONTEXT[,tied]`: a
//! freshly initialised model of that shape, written once to a folder in the temporary directory
//! and loaded from it (llama2.c's stories15M is `random:32000,288,768,6,6,6,256,tied`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use jielong_core::{Decoder, Feed, Positions};
use jielong_nn::burn::tensor::Device;
use jielong_nn::fast::Weights;
use jielong_nn::{
    LoadOptions, Model, ModelCache, ModelFolder, Transformer, TransformerConfig, save_native,
};

struct Args {
    dir: String,
    weights: Weights,
    threads: usize,
    batch: usize,
    tokens: usize,
    repeat: usize,
    burn: bool,
}

fn parse() -> Result<Args> {
    let mut args = Args {
        dir: String::new(),
        weights: Weights::Stored,
        threads: 0,
        batch: 1,
        tokens: 200,
        repeat: 5,
        burn: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--weights" => args.weights = value()?.parse()?,
            "--threads" => args.threads = value()?.parse()?,
            "--batch" => args.batch = value()?.parse()?,
            "--tokens" => args.tokens = value()?.parse()?,
            "--repeat" => args.repeat = value()?.parse()?,
            "--engine" => {
                args.burn = match value()?.as_str() {
                    "burn" => true,
                    "kernels" => false,
                    other => bail!("unknown engine {other:?}: kernels or burn"),
                }
            }
            _ if a.starts_with("--") => bail!("unknown option {a}"),
            _ => args.dir = a,
        }
    }
    if args.dir.is_empty() {
        bail!(
            "usage: decode_speed DIR [--weights W] [--threads N] [--batch B] [--tokens N] [--repeat R] [--engine kernels|burn]"
        );
    }
    Ok(args)
}

/// A random model of the shape `spec` (seeded: the same spec gives the same weights), written
/// once to a folder under the temporary directory and reused by later runs.
fn random_folder(spec: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("jielong-random-{}", spec.replace(',', "-")));
    if !dir.join("config.json").exists() {
        let tmp = tempfile::tempdir_in(std::env::temp_dir())?;
        write_random(spec, tmp.path())?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(tmp.keep(), &dir)?;
    }
    Ok(dir)
}

fn write_random(spec: &str, dir: &Path) -> Result<()> {
    let tied = spec.ends_with(",tied");
    let n: Vec<usize> = spec
        .trim_end_matches(",tied")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("random:VOCAB,HIDDEN,INTERMEDIATE,LAYERS,HEADS,KV_HEADS,CONTEXT[,tied]")?;
    let [vocab, hidden, inter, layers, heads, kv_heads, context] = n[..] else {
        bail!("random: needs 7 numbers");
    };
    let config = TransformerConfig::new(
        vocab,
        hidden,
        inter,
        layers,
        heads,
        kv_heads,
        hidden / heads,
        context,
    )
    .with_tie_embeddings(tied);
    let model = Transformer::init(&config, &Device::flex(), 0)?;
    let none = serde_json::json!({});
    save_native(dir, "text", &model, &none, &none)
}

fn rss_mib() -> f64 {
    jielong_core::proc_bytes("/proc/self/status", "VmRSS")
        .map_or(f64::NAN, |b| b as f64 / (1 << 20) as f64)
}

/// CPU time of the calling thread (`/proc/thread-self/schedstat`): unlike wall time it does not
/// count the time other processes hold the core, so `--threads 1` timings stay meaningful on a
/// busy machine.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns * 1e-9)
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy decoding of `caches.len()` sequences for `steps` steps from `next`; a sequence whose
/// context is full restarts from an empty cache. Calls `at(step)` after each step.
fn decode(
    model: &Model,
    caches: &mut [<Model as Decoder>::Cache],
    next: &mut [u32],
    steps: usize,
    mut at: impl FnMut(usize),
) -> Result<()> {
    let context = model.context_len();
    for step in 1..=steps {
        for c in caches.iter_mut() {
            if model.cache_len(c) + 1 > context {
                model.truncate_cache(c, 0);
            }
        }
        let ids: Vec<[u32; 1]> = next.iter().map(|&t| [t]).collect();
        let mut feeds: Vec<Feed<'_, _>> = ids
            .iter()
            .zip(caches.iter_mut())
            .map(|(t, c)| Feed::new(&t[..], c))
            .collect();
        let logits = model.forward(&mut feeds, Positions::Last)?;
        for (s, n) in next.iter_mut().enumerate() {
            *n = argmax(logits.last(s));
        }
        at(step);
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = parse()?;
    let dir = match args.dir.strip_prefix("random:") {
        Some(spec) => random_folder(spec)?,
        None => args.dir.clone().into(),
    };
    let folder = ModelFolder::open(&dir)?;
    let start = Instant::now();
    let model = if args.burn {
        Model::Burn(folder.load(&Device::flex())?)
    } else {
        let options = LoadOptions {
            device: Device::flex(),
            weights: args.weights,
            threads: args.threads,
        };
        folder.load_model(options)?
    };
    let c = model.config();
    println!(
        "{} ({} parameters, context {}): {}; loaded in {:.2} s, RSS {:.1} MiB",
        args.dir,
        c.num_params(),
        c.context_len,
        model.describe(),
        start.elapsed().as_secs_f64(),
        rss_mib()
    );
    let steps = args.tokens.min(c.context_len - 1);
    let mut speeds = Vec::new();
    for _ in 0..args.repeat {
        let mut caches: Vec<_> = (0..args.batch).map(|_| model.new_cache()).collect();
        let mut next: Vec<u32> = (0..args.batch as u32).map(|s| 1 + s % 7).collect();
        let (t, cpu) = (Instant::now(), thread_cpu_seconds());
        decode(&model, &mut caches, &mut next, steps, |_| {})?;
        let tokens = (args.batch * steps) as f64;
        let (speed, per_cpu) = (
            tokens / t.elapsed().as_secs_f64(),
            tokens / (thread_cpu_seconds() - cpu),
        );
        speeds.push((speed, per_cpu));
        println!(
            "  batch {}: {steps} steps, {speed:.0} tokens/s ({per_cpu:.0} per CPU-second of the calling thread)",
            args.batch
        );
    }
    let range = |f: fn(&(f64, f64)) -> f64| {
        let (lo, hi) = speeds
            .iter()
            .map(f)
            .fold((f64::MAX, 0f64), |(lo, hi), s| (lo.min(s), hi.max(s)));
        format!("{lo:.0}-{hi:.0}")
    };
    println!(
        "  range {} tokens/s wall, {} per calling-thread CPU-second, over {} runs",
        range(|s| s.0),
        range(|s| s.1),
        speeds.len()
    );

    let mut caches: Vec<_> = (0..args.batch).map(|_| model.new_cache()).collect();
    let mut next: Vec<u32> = vec![1; args.batch];
    let mut report = Vec::new();
    let kv_mib = |caches: &[ModelCache]| {
        let bytes: usize = caches
            .iter()
            .map(|c| match c {
                ModelCache::Kernels(c) => c.memory_bytes(),
                ModelCache::Burn(_) => 0,
            })
            .sum();
        bytes as f64 / (1 << 20) as f64
    };
    let mut at = Vec::new();
    decode(&model, &mut caches, &mut next, 1024, |step| {
        if step == 128 || step == 1024 {
            at.push((step, rss_mib()));
        }
    })?;
    // The caches only grow until the context is full (then they are rewound and reused).
    for (step, rss) in at {
        report.push(format!("{rss:.1} MiB after {step} tokens"));
    }
    report.push(format!("KV caches {:.1} MiB at the end", kv_mib(&caches)));
    println!("  RSS: {}", report.join(", "));
    Ok(())
}
