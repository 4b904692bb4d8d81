//! The training path's layout and fused operations.
//!
//! - A fresh model draws the same weights as before Q/K/V and gate/up were merged in memory:
//!   `named_tensors()` of `Transformer::init` is compared, name by name and bit by bit, with
//!   digests recorded from the unmerged model (set `JIELONG_PRINT_INIT_DIGESTS=1` to print the
//!   table again).

use burn::tensor::Device;
use jielong_nn::{Transformer, TransformerConfig, burn};

/// FNV-1a over the little-endian bytes of every value: a bit-exact fingerprint of a tensor.
fn digest(values: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.to_bits().to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The configurations whose fresh weights are pinned: plain, grouped-query attention with
/// biases and tied embeddings, and nanoGPT's CPU shape.
fn init_configs() -> Vec<(TransformerConfig, u64)> {
    vec![
        (TransformerConfig::small(37, 32, 2, 4, 48), 1337),
        (
            TransformerConfig::new(41, 24, 40, 3, 6, 2, 6, 48)
                .with_attention_bias(true)
                .with_output_bias(true)
                .with_tie_embeddings(true),
            7,
        ),
        (TransformerConfig::new(65, 128, 344, 4, 4, 4, 32, 64), 0),
    ]
}

/// `(config index, name, shape, digest)` of every tensor, in `named_tensors()` order.
fn init_digests() -> Vec<(usize, String, Vec<usize>, u64)> {
    let mut out = Vec::new();
    for (i, (config, seed)) in init_configs().iter().enumerate() {
        let model = Transformer::init(config, &Device::flex(), *seed).unwrap();
        for (name, data) in model.named_tensors() {
            let shape = data.shape().to_vec();
            out.push((i, name, shape, digest(&data.to_vec::<f32>().unwrap())));
        }
    }
    out
}

/// Recorded from the model before the merge (one Linear per projection).
const INIT_DIGESTS: &[(usize, &str, &[usize], u64)] = &[];

#[test]
fn fresh_weights_are_the_same_as_before_the_merge() {
    let now = init_digests();
    if std::env::var_os("JIELONG_PRINT_INIT_DIGESTS").is_some() {
        for (i, name, shape, d) in &now {
            println!("    ({i}, {name:?}, &{shape:?}, 0x{d:016x}),");
        }
    }
    assert_eq!(now.len(), INIT_DIGESTS.len(), "number of tensors");
    for ((i, name, shape, d), (ei, ename, eshape, ed)) in now.iter().zip(INIT_DIGESTS) {
        assert_eq!(
            (*i, name.as_str(), shape.as_slice()),
            (*ei, *ename, *eshape)
        );
        assert_eq!(d, ed, "config {i}: {name} differs");
    }
}
