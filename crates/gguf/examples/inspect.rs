//! Prints a GGUF file's metadata and tensor table; with `--check`, de-quantizes and re-blocks
//! every tensor jielong reads and prints the largest re-blocking error per type.
//!
//!     cargo run --release -p jielong-gguf --example inspect -- [--check] FILE.gguf...

use std::collections::BTreeMap;

use jielong_gguf::{Array, GgufFile, Value, reblock};

fn short(v: &Value) -> String {
    match v {
        Value::Array(a) => {
            let head = match a {
                Array::String(s) => format!("{:?}", &s[..s.len().min(4)]),
                Array::F32(x) => format!("{:?}", &x[..x.len().min(4)]),
                Array::I32(x) => format!("{:?}", &x[..x.len().min(4)]),
                _ => String::new(),
            };
            format!("[{} x {}] {head}", a.len(), a.item_type().name())
        }
        other => other.describe(),
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    args.retain(|a| a != "--check");
    let mut failed = false;
    for path in &args {
        let f = match GgufFile::open(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {path}: {e}");
                failed = true;
                continue;
            }
        };
        println!(
            "{path}: GGUF v{}, {} keys, {} tensors, alignment {}",
            f.version(),
            f.metadata().len(),
            f.tensors().len(),
            f.alignment()
        );
        for (k, v) in f.metadata() {
            println!("  {k} = {}", short(v));
        }
        if let Ok(tokens) = f.get_array_bytes("tokenizer.ggml.tokens") {
            let bad = tokens
                .iter()
                .filter(|t| std::str::from_utf8(t).is_err())
                .count();
            println!("  {} tokens, {bad} of them not UTF-8", tokens.len());
        }
        let mut by_type: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
        for t in f.tensors() {
            let e = by_type.entry(t.type_name()).or_default();
            e.0 += 1;
            e.1 += t.n_bytes().unwrap_or(0);
        }
        for (ty, (n, bytes)) in &by_type {
            println!("  {n} tensors of {ty}, {bytes} bytes");
        }
        if !check {
            continue;
        }
        let mut worst: BTreeMap<String, f32> = BTreeMap::new();
        for t in f.tensors() {
            let view = match f.view(t) {
                Ok(v) => v,
                Err(e) => {
                    println!("  {e}");
                    continue;
                }
            };
            let values = view.dequantize_f32();
            let r = match reblock(&view) {
                Ok(r) => r,
                Err(e) => {
                    println!("  {e}");
                    failed = true;
                    continue;
                }
            };
            let back = r.dequantize_f32().expect("re-blocked data de-quantize");
            let err = values
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let key = format!("{} -> {}", view.ty(), r.ggml_type());
            let w = worst.entry(key).or_default();
            *w = w.max(err);
        }
        for (k, e) in worst {
            println!("  re-blocked {k}: largest change {e:e}");
        }
    }
    if failed {
        std::process::exit(1);
    }
}
