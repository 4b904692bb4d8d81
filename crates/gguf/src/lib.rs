//! GGUF, llama.cpp's model file format: read and write it, and decode every ggml tensor type
//! jielong loads.
//!
//! A GGUF file is one little-endian blob: the magic `GGUF`, a version (2 or 3 are read, 3 is
//! written), a table of typed metadata (`general.architecture`, `llama.block_count`, the
//! tokenizer's vocabulary...), a table of tensors (name, dims, ggml type, offset), then, aligned
//! to `general.alignment` (default 32), the tensor data. Dims are in ggml order: `dims[0]` (ne0)
//! is the contiguous dimension, so a PyTorch weight `[out, in]` has dims `[in, out]`.
//!
//! ```no_run
//! let file = jielong_gguf::GgufFile::open("model.gguf")?;
//! let layers = file.get_u32("llama.block_count")?;
//! let tokens = file.get_array_str("tokenizer.ggml.tokens")?;
//! let q = file.tensor("blk.0.attn_q.weight")?;          // a view into the mapped file
//! let values: Vec<f32> = q.dequantize_f32();             // any readable type
//! let runnable = jielong_gguf::reblock(&q)?;             // a type the decode kernels run
//! # Ok::<(), jielong_gguf::GgufError>(())
//! ```
//!
//! # Types
//!
//! jielong's decode kernels (`jielong_kernels::quant`) run F32, BF16, Q8_0, Q4_0 and Q4_1. Every
//! type below is read and de-quantized ([`TensorView::dequantize_f32`], bit-identical to ggml and
//! gguf-py; the kernels crate decodes its own three block types); the others are converted once,
//! at load, by [`reblock`] into a [`Reblocked`] matrix ([`Reblocked::mat`] is the kernels'
//! [`MatRef`]):
//!
//! | type (ggml id) | block: values / bytes | re-blocked to | exact? |
//! |---|---|---|---|
//! | F32 (0)  | 1 / 4     | F32 (borrowed from the file) | yes |
//! | F16 (1)  | 1 / 2     | F32          | yes (BF16 would drop 3 mantissa bits and f16's small numbers) |
//! | BF16 (30)| 1 / 2     | BF16 (borrowed) | yes |
//! | Q8_0 (8) | 32 / 34   | Q8_0 (borrowed) | yes |
//! | Q4_0 (2) | 32 / 18   | Q4_0 (borrowed) | yes |
//! | Q4_1 (3) | 32 / 20   | Q4_1 (borrowed) | yes |
//! | Q5_0 (6) | 32 / 22   | Q8_0: same f16 scale, int8 = `q - 16` | yes |
//! | Q5_1 (7) | 32 / 24   | Q8_0, re-quantized by ggml's Q8_0 rule | no: within `d * (0.5 + 127 * 2^-11)`, `d = amax / 127` of each block of 32 (about `amax / 250`) |
//! | Q4_K (12)| 256 / 144 | Q4_1: each 32-value sub-block (`d*sc*q - dmin*m`) becomes one Q4_1 block with scale `d*sc` and min `-dmin*m` rounded to f16 | no: the products have up to 17 significant bits and f16 keeps 11, so a value moves by at most `15 * u(d*sc) + u(dmin*m)` plus one f32 rounding, `u(x)` = half an f16 ulp of `x` (`2^-11 * abs(x)`): about 1/2000 of the block's range, far below its 4-bit step. Exact when both products fit in f16. A scale above f16's range (65504) is an error. |
//! | Q5_K (13)| 256 / 176 | Q8_0, re-quantized | no: as Q5_1 |
//! | Q6_K (14)| 256 / 210 | Q8_0, re-quantized | no: as Q5_1 (about 1/8 of a Q6_K step) |
//!
//! Any other type id (Q2_K, IQ4_XS, ...) is named in an error when its tensor is asked for; the
//! file still opens, so its metadata and tokenizer can be read.
//!
//! # Writing
//!
//! [`GgufWriter`] writes version 3 with alignment 32 (or `general.alignment`): metadata of every
//! value type, and tensors of F32, F16, BF16 (converted from f32 with round-to-nearest-even, or
//! given as f16/bf16 bits) and Q8_0, Q4_0, Q4_1 (quantized from f32 by the kernels crate, byte for
//! byte what llama.cpp's reference quantizers produce), or raw blocks of any readable type. The
//! file is written beside the target and renamed into place, one tensor at a time.
//!
//! # Safety of reading
//!
//! Every count, length and offset in a file is checked against the file's size before it is
//! used or allocated for, so a corrupt or hostile file gives an error, never a panic, a huge
//! allocation or a read outside the file (tested with every truncation and thousands of random
//! byte flips of a valid file).

mod error;
mod quants;
mod read;
mod types;
mod value;
mod write;

pub use error::{GgufError, Result};
/// The kernels' weight formats, re-exported: what [`reblock`] produces.
pub use jielong_kernels::quant::{MatRef, WeightType};
pub use quants::{Reblocked, dequantize, ggml_type, reblock, weight_type};
pub use read::{
    DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufFile, MAX_ARRAY_NESTING, MAX_DIMS, TensorInfo, TensorView,
};
pub use types::{GgmlType, QK_K, type_layout, type_name};
pub use value::{Array, GgufString, Value, ValueType};
pub use write::{GgufWriter, TensorData, TensorWriter, WRITE_VERSION};
