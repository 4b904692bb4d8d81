//! Helpers shared by the integration tests: a seeded generator and plain reference loops.
#![allow(dead_code)]

/// SplitMix64: a tiny seeded generator (tests must not depend on global state).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// `out[b][o] = bias[o] + Σ x[b][i] w[o][i]` in f64, and `Σ |x w| + |bias|` for tolerances.
pub fn matmul_f64(
    x: &[f32],
    batch: usize,
    w: &[f32],
    rows: usize,
    bias: Option<&[f32]>,
) -> (Vec<f64>, Vec<f64>) {
    let cols = x.len().checked_div(batch).unwrap_or(0);
    let mut out = vec![0f64; batch * rows];
    let mut mag = vec![0f64; batch * rows];
    for b in 0..batch {
        for o in 0..rows {
            let (mut s, mut m) = (0f64, 0f64);
            for i in 0..cols {
                let p = x[b * cols + i] as f64 * w[o * cols + i] as f64;
                s += p;
                m += p.abs();
            }
            if let Some(bias) = bias {
                s += bias[o] as f64;
                m += (bias[o] as f64).abs();
            }
            out[b * rows + o] = s;
            mag[b * rows + o] = m;
        }
    }
    (out, mag)
}
