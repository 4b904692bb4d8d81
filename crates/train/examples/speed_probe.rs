use std::sync::atomic::AtomicBool;
use jielong_core::{Sequences, windows};
use jielong_nn::{TransformerConfig, burn::tensor::Device};
use jielong_train::{TrainConfig, Run, train, Event};

fn main() {
    let thr: i32 = std::env::var("THR").map(|v| v.parse().unwrap()).unwrap_or(0);
    if thr > 0 { unsafe { println!("mallopt {}", libc::mallopt(libc::M_MMAP_THRESHOLD, thr)); libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX); libc::mallopt(libc::M_TOP_PAD, 256 << 20); } }
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (hidden, layers, heads, batch, len, steps) = (args[0], args[1], args[2], args[3], args[4], args[5]);
    let text = std::fs::read("../shared/data/text/tinyshakespeare.txt").unwrap();
    let ids: Vec<u32> = text.iter().map(|&b| b as u32).collect();
    let arch = TransformerConfig::small(256, hidden, layers, heads, len);
    let data = Sequences { seqs: vec![ids[..1_000_000].to_vec()], ..Default::default() };
    let held = windows(&ids[1_000_000..1_010_000], 0, len).unwrap();
    let cfg = TrainConfig { steps, batch_size: batch, seq_len: len, eval_every: 1000, checkpoint_every: 1000, warmup_steps: 5, ..Default::default() };
    let out = tempfile::tempdir().unwrap();
    let run = Run { out: out.path(), modality: "text", codec: &serde_json::json!({}), extra: &serde_json::json!({}) };
    println!("params {}", arch.num_params());
    let t = std::time::Instant::now();
    train(&arch, &cfg, &data, &held, &Device::flex(), &run, false, &AtomicBool::new(false), &mut |e| if let Event::Step(m) = e { println!("step {} loss {:.3} tok/s {:.0} gn {:.2}", m.step, m.train_loss, m.tokens_per_second, m.grad_norm) }).unwrap();
    println!("total {:.1}s", t.elapsed().as_secs_f64());
}
