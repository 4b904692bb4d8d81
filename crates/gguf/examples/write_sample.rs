//! Writes a small GGUF file with metadata of every kind and tensors of every type the writer
//! produces, for `scripts/make_gguf_fixtures.py --check-writer`, which reads it with llama.cpp's
//! Python package and checks each value.
//!
//!     cargo run -p jielong-gguf --example write_sample -- /tmp/sample.gguf

use jielong_gguf::{Array, GgmlType, GgufWriter, TensorData, Value};

/// An integer hash scaled by a power of two: computed exactly alike by Rust and NumPy
/// (`sample_values` in the script).
fn sample_values(n: usize, seed: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let x = (i.wrapping_mul(2654435761).wrapping_add(seed)) % (1 << 32);
            (((x >> 8) as f64 - 2f64.powi(23)) / 2f64.powi(20)) as f32
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: write_sample OUT.gguf")?;
    let mut w = GgufWriter::new();
    w.add("general.architecture", "jielong-sample")
        .add("sample.u8", 200u8)
        .add("sample.i8", -100i8)
        .add("sample.u16", 60000u16)
        .add("sample.i16", -30000i16)
        .add("sample.u32", 4_000_000_000u32)
        .add("sample.i32", -2_000_000_000i32)
        .add("sample.f32", 0.1f32)
        .add("sample.bool", true)
        .add("sample.string", "jielong 接龍")
        .add("sample.u64", u64::MAX)
        .add("sample.i64", i64::MIN)
        .add("sample.f64", 0.1f64)
        .add("sample.tokens", vec!["<s>", "</s>", "▁接", ""])
        .add("sample.scores", vec![0.5f32, -1.25, 3.0])
        .add(
            "sample.nested",
            Value::Array(Array::Array(vec![
                Array::I32(vec![1, 2, 3]),
                Array::String(vec!["a".into(), "b".into()]),
            ])),
        );
    // name, type, ggml dims (ne0 first), seed of the values
    let plan: [(&str, GgmlType, &[u64], u64); 6] = [
        ("f32", GgmlType::F32, &[64, 2], 1),
        ("f16", GgmlType::F16, &[64, 2], 2),
        ("bf16", GgmlType::BF16, &[64, 2], 3),
        ("q8_0", GgmlType::Q8_0, &[64, 3], 4),
        ("q4_0", GgmlType::Q4_0, &[64, 3], 5),
        ("q4_1", GgmlType::Q4_1, &[32, 2, 2], 6),
    ];
    for (name, ty, dims, _) in plan {
        w.add_tensor(name, ty, dims);
    }
    let mut out = w.create(&path)?;
    for (name, _, dims, seed) in plan {
        let n = dims.iter().product::<u64>() as usize;
        out.write_tensor(name, TensorData::F32(&sample_values(n, seed)))?;
    }
    out.finish()?;
    println!("wrote {path}");
    Ok(())
}
