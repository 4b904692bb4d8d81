//! CPU kernels of jielong's decode path and of its training ops: pure functions over slices, no
//! tensors; the decode kernels allocate nothing per call.
//!
//! Decoding one token of a small transformer is memory-bound at batch 1 (every weight is read
//! once per step) and compute-bound at batch 16; a general tensor library loses to hand-written
//! loops at both ends (single-threaded matrix-vector products, an allocation per op). This
//! crate holds the loops the decode path calls:
//!
//! - [`aligned`]: buffers that start on a cache line, for activations and weights;
//! - [`quant`]: weight formats (f32, bf16 and ggml's Q8_0, Q4_0, Q4_1, byte for byte), as
//!   borrowed [`MatRef`]s over possibly unaligned bytes (a memory-mapped file);
//! - [`mod@matmul`]: `y = x Wᵀ + b` for a batch of rows and any weight format, split across a
//!   [`Pool`] by output rows; [`matmul_many`] runs several products of one input (Q, K, V) in
//!   one parallel region;
//! - [`ops`]: RMSNorm, rotary positions (both pair layouts), SwiGLU, softmax, residual adds;
//! - [`kv`] and [`attention`]: one sequence's KV cache grown in blocks of 64 positions, and
//!   causal grouped-query attention of new rows over it (one sequence or a ragged batch);
//! - [`train`]: the training path's fused operations beyond [`ops`] (RMSNorm with its saved
//!   normaliser, the backward passes, causal attention over a whole sequence), which jielong-nn
//!   runs inside burn's autodiff graph.
//!
//! # Determinism
//!
//! Every output is computed by the same sequence of IEEE operations whatever the batch size,
//! the other rows of the batch, the number of threads and the tiling (16 lanes of FMAs over a
//! fixed assignment of elements, then a fixed reduction tree). A server can batch unrelated
//! requests and each gets the bits it would get alone; a prompt processed at once and token by
//! token gives the same attention outputs. Quantized products are exactly the f32 product of
//! the de-quantized weights.
//!
//! # Instruction sets
//!
//! Each kernel has an AVX-512, an AVX2 and a portable build, chosen once at run time
//! ([`Isa::best`]); the `*_with` variants force one (tests run every path). All three give the
//! same bits.
//!
//! # A decode step
//!
//! ```
//! use jielong_kernels::{KvCache, MatRef, Pool, WeightType, attend, matmul_many, quantize};
//! use jielong_kernels::ops::{RopeStyle, rms_norm, rope, rope_inv_freq, rope_tables};
//!
//! let (dim, heads, kv_heads, hd) = (64, 8, 4, 8);
//! let pool = Pool::new(2);
//! let wq = quantize(WeightType::Q8_0, &vec![0.01; dim * dim], dim).unwrap();
//! let wkv = vec![0.02f32; kv_heads * hd * dim];
//! let (wq, wk) = (
//!     MatRef::new(WeightType::Q8_0, dim, dim, &wq).unwrap(),
//!     MatRef::from_f32(&wkv, kv_heads * hd, dim).unwrap(),
//! );
//! let (cos, sin) = rope_tables(&rope_inv_freq(hd, 10000.0), 512);
//! let mut cache = KvCache::new(1, kv_heads, hd);
//!
//! let x = vec![0.5f32; dim]; // one new token
//! let mut xn = vec![0f32; dim];
//! rms_norm(&x, &vec![1.0; dim], 1e-5, &mut xn, dim);
//! let (mut q, mut k, mut v) = (vec![0f32; dim], vec![0f32; kv_heads * hd], vec![0f32; kv_heads * hd]);
//! matmul_many(&pool, &xn, 1, &mut [(wq, None, &mut q), (wk, None, &mut k), (wk, None, &mut v)]);
//! let pos = [cache.len()];
//! rope(&mut q, heads, hd, &pos, &cos, &sin, RopeStyle::Half);
//! rope(&mut k, kv_heads, hd, &pos, &cos, &sin, RopeStyle::Half);
//! cache.append(0, &k, &v);
//! let mut out = vec![0f32; dim];
//! attend(&pool, &cache, 0, &q, 1, heads, &mut out);
//! ```

pub mod aligned;
pub mod attention;
pub mod error;
pub mod isa;
pub mod kv;
mod lanes;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod quant;
mod simd;
pub mod train;

pub use aligned::Aligned;
pub use attention::{AttnSeq, attend, attend_many, attend_with};
pub use error::{KernelError, Result};
pub use isa::Isa;
pub use kv::{KvAppend, KvCache, append_many};
pub use matmul::{matmul, matmul_many, matmul_many_with, matmul_with};
pub use pool::Pool;
pub use quant::{MatRef, WeightType, dequantize, quantize};
