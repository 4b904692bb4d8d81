//! A Llama decode step written with the kernels alone (random weights), to time whole tokens.

use jielong_kernels::attention::{AttnSeq, attend, attend_many};
use jielong_kernels::ops::{
    RopeStyle, add_in_place, rms_norm, rope, rope_inv_freq, rope_tables, silu_mul,
};
use jielong_kernels::quant::{MatRef, WeightType, quantize};
use jielong_kernels::{Aligned, KvAppend, KvCache, Pool, append_many, matmul, matmul_many};

use crate::random;

#[derive(Clone, Copy)]
pub struct Shape {
    pub name: &'static str,
    pub dim: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub hidden: usize,
    pub vocab: usize,
    pub context: usize,
}

impl Shape {
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads
    }
    pub fn params(&self) -> usize {
        let kv = self.kv_heads * self.head_dim();
        self.vocab * self.dim
            + self.layers
                * (2 * self.dim * self.dim + 2 * self.dim * kv + 3 * self.dim * self.hidden)
    }
}

struct Mat {
    bytes: Aligned<u8>,
    rows: usize,
    cols: usize,
    ty: WeightType,
}

impl Mat {
    fn new(ty: WeightType, rows: usize, cols: usize, seed: u64) -> Mat {
        let scale = 1.0 / (cols as f32).sqrt();
        let values: Vec<f32> = random(rows * cols, seed)
            .iter()
            .map(|v| v * scale)
            .collect();
        Mat {
            bytes: Aligned::from_slice(&quantize(ty, &values, cols).unwrap()),
            rows,
            cols,
            ty,
        }
    }
    fn r(&self) -> MatRef<'_> {
        MatRef::new(self.ty, self.rows, self.cols, &self.bytes).unwrap()
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Mat,
    wk: Mat,
    wv: Mat,
    wo: Mat,
    mlp_norm: Vec<f32>,
    w1: Mat,
    w2: Mat,
    w3: Mat,
}

pub struct Model {
    s: Shape,
    embed: Mat,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// Activation buffers of one batch size, allocated once.
pub struct Scratch {
    x: Aligned<f32>,
    xn: Aligned<f32>,
    q: Aligned<f32>,
    k: Aligned<f32>,
    v: Aligned<f32>,
    att: Aligned<f32>,
    tmp: Aligned<f32>,
    g: Aligned<f32>,
    u: Aligned<f32>,
    pub logits: Aligned<f32>,
    positions: Vec<usize>,
}

impl Model {
    /// Layers in `ty`; the embedding (tied with the classifier) in `embed_ty`.
    pub fn new(s: Shape, ty: WeightType, embed_ty: WeightType) -> Model {
        let (dim, kv) = (s.dim, s.kv_heads * s.head_dim());
        let norm = |seed| {
            random(dim, seed)
                .iter()
                .map(|v| 1.0 + 0.5 * v)
                .collect::<Vec<f32>>()
        };
        let layers = (0..s.layers as u64)
            .map(|l| Layer {
                attn_norm: norm(100 + l),
                wq: Mat::new(ty, dim, dim, 200 + l),
                wk: Mat::new(ty, kv, dim, 300 + l),
                wv: Mat::new(ty, kv, dim, 400 + l),
                wo: Mat::new(ty, dim, dim, 500 + l),
                mlp_norm: norm(600 + l),
                w1: Mat::new(ty, s.hidden, dim, 700 + l),
                w2: Mat::new(ty, dim, s.hidden, 800 + l),
                w3: Mat::new(ty, s.hidden, dim, 900 + l),
            })
            .collect();
        let (cos, sin) = rope_tables(&rope_inv_freq(s.head_dim(), 10000.0), s.context);
        Model {
            s,
            embed: Mat::new(embed_ty, s.vocab, dim, 1),
            layers,
            norm: norm(2),
            cos,
            sin,
        }
    }

    pub fn weight_bytes(&self) -> usize {
        self.embed.bytes.len()
            + self
                .layers
                .iter()
                .map(|l| {
                    [&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3]
                        .iter()
                        .map(|m| m.bytes.len())
                        .sum::<usize>()
                })
                .sum::<usize>()
    }

    pub fn caches(&self, batch: usize) -> Vec<KvCache> {
        (0..batch)
            .map(|_| KvCache::new(self.s.layers, self.s.kv_heads, self.s.head_dim()))
            .collect()
    }

    pub fn scratch(&self, batch: usize) -> Scratch {
        let s = &self.s;
        let kv = s.kv_heads * s.head_dim();
        Scratch {
            x: Aligned::zeroed(batch * s.dim),
            xn: Aligned::zeroed(batch * s.dim),
            q: Aligned::zeroed(batch * s.dim),
            k: Aligned::zeroed(batch * kv),
            v: Aligned::zeroed(batch * kv),
            att: Aligned::zeroed(batch * s.dim),
            tmp: Aligned::zeroed(batch * s.dim),
            g: Aligned::zeroed(batch * s.hidden),
            u: Aligned::zeroed(batch * s.hidden),
            logits: Aligned::zeroed(batch * s.vocab),
            positions: vec![0; batch],
        }
    }

    /// One decode step: one new token for each sequence (`caches[b]`, token `tokens[b]`).
    pub fn step(&self, pool: &Pool, caches: &mut [KvCache], tokens: &[usize], sc: &mut Scratch) {
        let s = &self.s;
        let (dim, hd, kv) = (s.dim, s.head_dim(), s.kv_heads * s.head_dim());
        let batch = tokens.len();
        for (b, &t) in tokens.iter().enumerate() {
            self.embed
                .r()
                .dequantize_row(t, &mut sc.x[b * dim..][..dim]);
            sc.positions[b] = caches[b].len();
        }
        for (li, l) in self.layers.iter().enumerate() {
            rms_norm(&sc.x, &l.attn_norm, 1e-5, &mut sc.xn, dim);
            matmul_many(
                pool,
                &sc.xn,
                batch,
                &mut [
                    (l.wq.r(), None, &mut sc.q),
                    (l.wk.r(), None, &mut sc.k),
                    (l.wv.r(), None, &mut sc.v),
                ],
            );
            rope(
                &mut sc.q,
                s.heads,
                hd,
                &sc.positions,
                &self.cos,
                &self.sin,
                RopeStyle::Half,
            );
            rope(
                &mut sc.k,
                s.kv_heads,
                hd,
                &sc.positions,
                &self.cos,
                &self.sin,
                RopeStyle::Half,
            );
            // The appends on the pool's threads, as the model's forward does.
            let mut appends: Vec<KvAppend> = caches
                .iter_mut()
                .zip(sc.k.chunks(kv).zip(sc.v.chunks(kv)))
                .map(|(cache, (k, v))| KvAppend { cache, k, v })
                .collect();
            append_many(pool, li, &mut appends);
            if batch == 1 {
                attend(pool, &caches[0], li, &sc.q, 1, s.heads, &mut sc.att);
            } else {
                // One AttnSeq per sequence (the decode path would keep this list between steps).
                let mut seqs: Vec<AttnSeq> = caches
                    .iter()
                    .zip(sc.q.chunks(dim))
                    .zip(sc.att.chunks_mut(dim))
                    .map(|((c, q), out)| AttnSeq {
                        cache: c,
                        q,
                        n_new: 1,
                        out,
                    })
                    .collect();
                attend_many(pool, li, s.heads, &mut seqs);
            }
            matmul(pool, &sc.att, batch, l.wo.r(), None, &mut sc.tmp);
            add_in_place(&mut sc.x, &sc.tmp);
            rms_norm(&sc.x, &l.mlp_norm, 1e-5, &mut sc.xn, dim);
            matmul_many(
                pool,
                &sc.xn,
                batch,
                &mut [(l.w1.r(), None, &mut sc.g), (l.w3.r(), None, &mut sc.u)],
            );
            silu_mul(&mut sc.g, &sc.u);
            matmul(pool, &sc.g, batch, l.w2.r(), None, &mut sc.tmp);
            add_in_place(&mut sc.x, &sc.tmp);
        }
        rms_norm(&sc.x, &self.norm, 1e-5, &mut sc.xn, dim);
        matmul(pool, &sc.xn, batch, self.embed.r(), None, &mut sc.logits);
    }
}

/// The index of the largest logit (greedy decoding keeps the benchmark deterministic).
pub fn argmax(x: &[f32]) -> usize {
    x.iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
        )
        .0
}
