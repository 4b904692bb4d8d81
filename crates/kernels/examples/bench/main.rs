//! Speeds of the kernels on this machine: matrix products per weight type, batch size and thread
//! count, the pool's per-call overhead, and whole decode steps of Llama shapes built from the
//! kernels alone.
//!
//! ```sh
//! cargo run --release -p jielong-kernels --example bench            # everything
//! cargo run --release -p jielong-kernels --example bench -- step    # sections: pool, attention,
//!                                                                    # step, train-attention, matmul
//! ```
//! Options: `--isa scalar|avx2|avx512`, `--quick` (shorter timings), `--threads 1,2`,
//! `--only NAME` (shapes or models whose name contains NAME), `--batch 1,16` (decode steps' batches).

use std::hint::black_box;
use std::time::{Duration, Instant};

use jielong_kernels::attention::attend_with;
use jielong_kernels::quant::{MatRef, WeightType, quantize};
use jielong_kernels::train::{AttnShape, attention_backward_with, attention_forward_with};
use jielong_kernels::{Aligned, Isa, KvCache, Pool, matmul_with};

mod model;
use model::{Model, Shape, argmax};

struct Opts {
    isa: Isa,
    min_time: Duration,
    /// Thread counts to time.
    threads: Vec<usize>,
    /// Only shapes / models whose name contains this.
    only: Option<String>,
    /// Batches of the whole decode steps.
    batches: Vec<usize>,
}

/// The calling thread's CPU time: unlike wall time it does not count the time other processes
/// hold the core, so single-threaded timings stay meaningful on a busy machine.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Seconds per call of `f`: the best of 20 short rounds (at least `min_time / 20` each) after
/// a warm-up. With `cpu_time` the rounds are timed in this thread's CPU time (for
/// single-threaded runs), else in wall time.
fn time_per_call(min_time: Duration, cpu_time: bool, mut f: impl FnMut()) -> f64 {
    let now = || {
        if cpu_time {
            thread_cpu_time()
        } else {
            Instant::now().duration_since(*EPOCH)
        }
    };
    f();
    let round = min_time / 20;
    let mut calls = 1usize;
    let mut best = f64::INFINITY;
    let mut rounds = 0;
    while rounds < 20 {
        let start = now();
        for _ in 0..calls {
            f();
        }
        let t = now() - start;
        best = best.min(t.as_secs_f64() / calls as f64);
        if t >= round {
            rounds += 1;
        } else {
            calls = (calls * 2).max(
                (calls as f64 * round.as_secs_f64() / t.as_secs_f64().max(1e-9) * 1.1) as usize,
            );
        }
    }
    best
}

static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn bench_matmul(o: &Opts) {
    println!("## matmul ({} path)\n", o.isa.name());
    println!(
        "GB/s counts the weight bytes read per call; GFLOP/s = 2 x batch x rows x cols per call.\n"
    );
    println!(
        "| shape (rows x cols) | type | threads | batch 1 µs | batch 1 GB/s | batch 4 GFLOP/s | batch 16 GFLOP/s | batch 16 GB/s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // stories15M's and SmolLM2's square, up/gate, down and classifier shapes.
    let shapes = [
        (288, 288),
        (768, 288),
        (288, 768),
        (32000, 288),
        (576, 576),
        (1536, 576),
        (576, 1536),
        (49152, 576),
    ];
    let pools: Vec<Pool> = o.threads.iter().map(|&t| Pool::new(t)).collect();
    for &(rows, cols) in &shapes {
        if o.only
            .as_ref()
            .is_some_and(|f| !format!("{rows}x{cols}").contains(f.as_str()))
        {
            continue;
        }
        let values = random(rows * cols, (rows * cols) as u64);
        for ty in WeightType::ALL {
            let bytes = Aligned::from_slice(&quantize(ty, &values, cols).unwrap());
            let w = MatRef::new(ty, rows, cols, &bytes).unwrap();
            for pool in &pools {
                let mut cells = Vec::new();
                let mut us1 = 0.0;
                for batch in [1usize, 4, 16] {
                    let x = Aligned::from_slice(&random(batch * cols, 7));
                    let mut out = vec![0f32; batch * rows];
                    let t = time_per_call(o.min_time, pool.threads() == 1, || {
                        matmul_with(o.isa, pool, black_box(&x), batch, w, None, &mut out);
                        black_box(&out);
                    });
                    let gbs = bytes.len() as f64 / t / 1e9;
                    let gflops = 2.0 * (batch * rows * cols) as f64 / t / 1e9;
                    match batch {
                        1 => {
                            us1 = t * 1e6;
                            cells.push(format!("{gbs:.1}"));
                        }
                        4 => cells.push(format!("{gflops:.1}")),
                        _ => {
                            cells.push(format!("{gflops:.1}"));
                            cells.push(format!("{gbs:.1}"));
                        }
                    }
                }
                println!(
                    "| {rows}x{cols} | {ty} | {} | {us1:.2} | {} |",
                    pool.threads(),
                    cells.join(" | ")
                );
            }
        }
    }
    println!();
}

fn bench_pool(o: &Opts) {
    println!("## pool\n");
    for threads in [1, 2, 3] {
        let pool = Pool::new(threads);
        let counter = std::sync::atomic::AtomicUsize::new(0);
        let task = |i: usize| {
            counter.fetch_add(i, std::sync::atomic::Ordering::Relaxed);
        };
        let t = time_per_call(o.min_time, false, || pool.run(threads, &task));
        println!(
            "- {threads} thread(s): `run` of {threads} empty tasks: {:.2} µs per call",
            t * 1e6
        );
    }
    // After an idle pause the workers are parked: the first call pays a wake-up.
    let pool = Pool::new(2);
    let task = |_: usize| {};
    let mut worst = Duration::ZERO;
    let mut total = Duration::ZERO;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(2));
        let start = Instant::now();
        pool.run(2, &task);
        let t = start.elapsed();
        worst = worst.max(t);
        total += t;
    }
    println!(
        "- 2 threads, first call after 2 ms idle (workers parked): mean {:.2} µs, worst {:.2} µs",
        total.as_secs_f64() / 20.0 * 1e6,
        worst.as_secs_f64() * 1e6
    );
    println!();
}

const STORIES_260K: Shape = Shape {
    name: "stories260K",
    dim: 64,
    layers: 5,
    heads: 8,
    kv_heads: 4,
    hidden: 172,
    vocab: 512,
    context: 512,
};
const STORIES_15M: Shape = Shape {
    name: "stories15M",
    dim: 288,
    layers: 6,
    heads: 6,
    kv_heads: 6,
    hidden: 768,
    vocab: 32000,
    context: 256,
};
const SMOLLM2_135M: Shape = Shape {
    name: "SmolLM2-135M",
    dim: 576,
    layers: 30,
    heads: 9,
    kv_heads: 3,
    hidden: 1536,
    vocab: 49152,
    context: 8192,
};

/// Greedy decoding of `steps` tokens for `batch` sequences from an empty cache; tokens/s.
/// Single-threaded runs are timed in thread CPU time (see [`thread_cpu_time`]).
fn decode_speed(m: &Model, pool: &Pool, batch: usize, steps: usize) -> f64 {
    let mut caches = m.caches(batch);
    let mut sc = m.scratch(batch);
    let mut tokens: Vec<usize> = (0..batch).map(|b| 1 + b).collect();
    let vocab = sc.logits.len() / batch;
    let cpu = pool.threads() == 1;
    let now = || {
        if cpu {
            thread_cpu_time()
        } else {
            Instant::now().duration_since(*EPOCH)
        }
    };
    let start = now();
    for _ in 0..steps {
        m.step(pool, &mut caches, &tokens, &mut sc);
        for (b, t) in tokens.iter_mut().enumerate() {
            *t = argmax(&sc.logits[b * vocab..][..vocab]);
        }
    }
    (batch * steps) as f64 / (now() - start).as_secs_f64()
}

fn bench_steps(o: &Opts) {
    println!(
        "## whole decode steps (random weights, greedy, from an empty cache; best of 3 runs; 1 thread in thread CPU time)\n"
    );
    println!("| model | weights | MB | threads | batch | steps | tokens/s | µs per step |");
    println!("|---|---|---|---|---|---|---|---|");
    let configs: [(Shape, WeightType, WeightType, usize); 6] = [
        (STORIES_260K, WeightType::F32, WeightType::F32, 256),
        (STORIES_15M, WeightType::F32, WeightType::F32, 256),
        (STORIES_15M, WeightType::Q8_0, WeightType::Q8_0, 256),
        (SMOLLM2_135M, WeightType::F32, WeightType::F32, 64),
        (SMOLLM2_135M, WeightType::Bf16, WeightType::Bf16, 64),
        (SMOLLM2_135M, WeightType::Q4_1, WeightType::Q8_0, 64),
    ];
    let quick = o.min_time < Duration::from_millis(100);
    for (shape, ty, embed_ty, steps) in configs {
        let steps = if quick { steps / 4 } else { steps };
        if o.only
            .as_ref()
            .is_some_and(|f| !shape.name.contains(f.as_str()))
        {
            continue;
        }
        let m = Model::new(shape, ty, embed_ty);
        for &threads in &o.threads {
            let pool = Pool::new(threads);
            for &batch in &o.batches {
                let tps = (0..3)
                    .map(|_| decode_speed(&m, &pool, batch, steps))
                    .fold(0f64, f64::max);
                println!(
                    "| {} ({:.1}M) | {ty} | {:.0} | {threads} | {batch} | {steps} | {tps:.0} | {:.1} |",
                    shape.name,
                    shape.params() as f64 / 1e6,
                    m.weight_bytes() as f64 / 1e6,
                    batch as f64 / tps * 1e6
                );
            }
        }
    }
    println!();
}

fn bench_attention(o: &Opts) {
    println!("## attention (one query row, {} path)\n", o.isa.name());
    println!(
        "| heads / KV heads x head_dim | cached positions | threads | µs per call | ns per head-position |"
    );
    println!("|---|---|---|---|---|");
    for (heads, kvh, hd) in [(8, 4, 8), (6, 6, 48), (9, 3, 64)] {
        for len in [128usize, 512, 2048] {
            let mut cache = KvCache::new(1, kvh, hd);
            cache.append(0, &random(len * kvh * hd, 1), &random(len * kvh * hd, 2));
            let q = random(heads * hd, 3);
            let mut out = vec![0f32; heads * hd];
            for &threads in &o.threads {
                let pool = Pool::new(threads);
                let t = time_per_call(o.min_time, threads == 1, || {
                    attend_with(o.isa, &pool, &cache, 0, black_box(&q), 1, heads, &mut out);
                    black_box(&out);
                });
                println!(
                    "| {heads}/{kvh} x {hd} | {len} | {threads} | {:.2} | {:.2} |",
                    t * 1e6,
                    t * 1e9 / (heads * len) as f64
                );
            }
        }
    }
    println!();
}

/// The training path's attention of one sequence (what one thread runs per sequence), forward
/// and backward, at the shipped audio model's head shape (6 heads of 32) and growing contexts.
fn bench_train_attention(o: &Opts) {
    println!(
        "## training attention, one sequence, one thread ({:?} path)\n",
        o.isa
    );
    println!("| heads x head_dim | context | forward ms | backward ms | backward GFLOP/s |");
    println!("|---|---|---|---|---|");
    // nanoGPT's CPU training shape (bench.sh's training rows), then stories15M's heads.
    for (heads, hd, len) in [(4, 32, 64), (6, 32, 256), (6, 32, 1024), (6, 32, 4096)] {
        let shape = AttnShape {
            queries: len,
            keys: len,
            heads,
            kv_heads: heads,
            head_dim: hd,
        };
        let q = random(len * heads * hd, 1);
        let (k, v, grad) = (random(q.len(), 2), random(q.len(), 3), random(q.len(), 4));
        let (mut out, mut lse) = (vec![0f32; q.len()], vec![0f32; heads * len]);
        let forward = time_per_call(o.min_time, true, || {
            attention_forward_with(o.isa, shape, &q, &k, &v, &mut out, &mut lse);
            black_box(&out);
        });
        let (mut gq, mut gk, mut gv) = (
            vec![0f32; q.len()],
            vec![0f32; q.len()],
            vec![0f32; q.len()],
        );
        let backward = time_per_call(o.min_time, true, || {
            let grads = (&mut gq[..], &mut gk[..], &mut gv[..]);
            attention_backward_with(o.isa, shape, (&q, &k, &v), &out, &lse, &grad, grads);
            black_box(&gk);
        });
        // Five products over the causal half (scores, dp, grad_q, grad_k, grad_v), not counting
        // recomputations.
        let flop = 2.0 * 5.0 * heads as f64 * (len * len) as f64 / 2.0 * hd as f64;
        println!(
            "| {heads} x {hd} | {len} | {:.2} | {:.2} | {:.1} |",
            forward * 1e3,
            backward * 1e3,
            flop / backward / 1e9
        );
    }
    println!();
}

/// A comma-separated list of counts ("1,2"); panics with `usage` on anything else.
fn counts(arg: &str, usage: &str) -> Vec<usize> {
    arg.split(',').map(|n| n.parse().expect(usage)).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut isa = Isa::best();
    let mut min_time = Duration::from_millis(150);
    let mut sections = Vec::new();
    let mut threads = vec![1, 2];
    let mut only = None;
    let mut batches = vec![1, 16];
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--isa" => {
                i += 1;
                isa = match args.get(i).map(String::as_str) {
                    Some("scalar") => Isa::Scalar,
                    Some("avx2") => Isa::Avx2,
                    Some("avx512") => Isa::Avx512,
                    other => panic!("--isa scalar|avx2|avx512, got {other:?}"),
                };
                assert!(isa.is_available(), "{isa:?} is not supported by this CPU");
            }
            "--quick" => min_time = Duration::from_millis(30),
            "--threads" => {
                i += 1;
                threads = counts(&args[i], "--threads 1,2");
            }
            "--only" => {
                i += 1;
                only = Some(args[i].clone());
            }
            "--batch" => {
                i += 1;
                batches = counts(&args[i], "--batch 1,16");
            }
            s => sections.push(s.to_string()),
        }
        i += 1;
    }
    let o = Opts {
        isa,
        min_time,
        threads,
        only,
        batches,
    };
    // Other processes distort multi-threaded wall times: say how busy the machine was.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        println!(
            "Load average at start: {} ({cores} cores).\n",
            load.join(" ")
        );
    }
    let all = sections.is_empty();
    let want = |s: &str| all || sections.iter().any(|x| x == s);
    if want("pool") {
        bench_pool(&o);
    }
    if want("attention") {
        bench_attention(&o);
    }
    if want("step") {
        bench_steps(&o);
    }
    if want("train-attention") {
        bench_train_attention(&o);
    }
    if want("matmul") {
        bench_matmul(&o);
    }
}
