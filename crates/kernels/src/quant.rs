//! Weight formats: how a matrix's values are stored as bytes.
//!
//! Matrices are row-major `[rows = out_features][cols = in_features]`, the layout of PyTorch,
//! safetensors and GGUF (each output's weights are contiguous). The block formats are byte for
//! byte those of ggml/GGUF, so a GGUF tensor can be handed to the kernels as it lies in the
//! file. Quantization follows ggml's reference functions (`quantize_row_*_ref`) so that a model
//! quantized here matches one quantized by llama.cpp's tools.
//!
//! | type | block | bytes per block | value |
//! |---|---|---|---|
//! | `F32` | 1 | 4 | little-endian f32 |
//! | `Bf16` | 1 | 2 | upper 16 bits of an f32 (rounded to nearest even) |
//! | `Q8_0` | 32 | 34: `d: f16`, `qs: [i8; 32]` | `qs[i] * d` |
//! | `Q4_0` | 32 | 18: `d: f16`, `qs: [u8; 16]` | `(nibble - 8) * d` |
//! | `Q4_1` | 32 | 20: `d: f16`, `m: f16`, `qs: [u8; 16]` | `nibble * d + m` |
//!
//! In the 4-bit types element `j < 16` of a block is the low nibble of `qs[j]` and element
//! `j + 16` its high nibble.
//!
//! De-quantized values are exact in f32 (a small integer times an f16 needs at most 19
//! significant bits; Q4_1 adds `m` with one rounding), which is what lets the quantized
//! matrix products give exactly the bits of the f32 product of the de-quantized weights.

use std::fmt;
use std::str::FromStr;

use half::f16;

use crate::error::{KernelError, Result};

/// Values per block of the block formats.
pub const BLOCK: usize = 32;

/// How a matrix's values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightType {
    F32,
    Bf16,
    Q8_0,
    Q4_0,
    Q4_1,
}

impl WeightType {
    pub const ALL: [WeightType; 5] = [
        WeightType::F32,
        WeightType::Bf16,
        WeightType::Q8_0,
        WeightType::Q4_0,
        WeightType::Q4_1,
    ];

    /// The lower-case name used in configs and GGUF tools: "f32", "bf16", "q8_0", "q4_0", "q4_1".
    pub fn name(self) -> &'static str {
        match self {
            WeightType::F32 => "f32",
            WeightType::Bf16 => "bf16",
            WeightType::Q8_0 => "q8_0",
            WeightType::Q4_0 => "q4_0",
            WeightType::Q4_1 => "q4_1",
        }
    }

    /// Values per block: 1 for the plain floats, 32 for the quantized types.
    pub fn block_size(self) -> usize {
        match self {
            WeightType::F32 | WeightType::Bf16 => 1,
            _ => BLOCK,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            WeightType::F32 => 4,
            WeightType::Bf16 => 2,
            WeightType::Q8_0 => 34,
            WeightType::Q4_0 => 18,
            WeightType::Q4_1 => 20,
        }
    }

    /// Whether values are stored in blocks with a shared scale.
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes of one row of `cols` values; an error when `cols` is not a whole number of blocks.
    pub fn bytes_per_row(self, cols: usize) -> Result<usize> {
        let block = self.block_size();
        if !cols.is_multiple_of(block) {
            return Err(KernelError::RowNotBlocks {
                ty: self,
                cols,
                block,
            });
        }
        Ok(cols / block * self.block_bytes())
    }
}

impl fmt::Display for WeightType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WeightType {
    type Err = KernelError;

    fn from_str(s: &str) -> Result<Self> {
        WeightType::ALL
            .into_iter()
            .find(|ty| ty.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| KernelError::UnknownType(s.to_string()))
    }
}

/// A borrowed weight matrix: `rows` rows of `cols` values of type `ty`, row-major.
///
/// The constructor checks the byte length, so the kernels can trust `data` to hold exactly
/// `rows * ty.bytes_per_row(cols)` bytes. `data` may be unaligned (a slice of a memory-mapped
/// file): the kernels only use unaligned loads.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    ty: WeightType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: &'a [u8],
}

impl<'a> MatRef<'a> {
    /// Wraps `data`; errors when `cols` does not fit the block size or the length is wrong.
    pub fn new(ty: WeightType, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self> {
        let row_bytes = ty.bytes_per_row(cols)?;
        let expected = rows * row_bytes;
        if data.len() != expected {
            return Err(KernelError::WrongByteLength {
                ty,
                rows,
                cols,
                expected,
                got: data.len(),
            });
        }
        Ok(MatRef {
            ty,
            rows,
            cols,
            row_bytes,
            data,
        })
    }

    /// An f32 matrix borrowed from values (a convenience for tests and small tensors).
    pub fn from_f32(values: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        // An f32 slice is always readable as bytes (the other direction needs alignment checks).
        let bytes = unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        };
        MatRef::new(WeightType::F32, rows, cols, bytes)
    }

    pub fn ty(&self) -> WeightType {
        self.ty
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The bytes of row `r`. Panics when `r >= rows`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// De-quantizes row `r` into `out` (`cols` values): an embedding lookup.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        dequantize_row(self.ty, self.row(r), out);
    }
}

/// Rounds an f32 to bf16 (round to nearest, ties to even; NaN stays NaN).
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        // Keep the sign and force a quiet NaN (the rounding could otherwise carry into inf).
        return ((bits >> 16) | 0x0040) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// Widens a bf16 to f32 (exact).
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Rounds an f32 to IEEE half (nearest even), as bits.
pub fn f32_to_f16(x: f32) -> u16 {
    f16::from_f32(x).to_bits()
}

/// Widens an IEEE half to f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    f16::from_bits(h).to_f32()
}

/// Every f16 widened to f32 (256 KiB, built on first use): the SIMD kernels load a block's
/// scale with one broadcast from this table instead of a convert on the busy vector ports.
/// Only the entries of the scales a model uses are ever touched, so it costs little cache.
pub(crate) fn f16_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Box<[f32]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(f16_to_f32).collect())
}

fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Quantizes `values` (whole rows of `cols`) into `ty`'s bytes, row by row.
pub fn quantize(ty: WeightType, values: &[f32], cols: usize) -> Result<Vec<u8>> {
    let row_bytes = ty.bytes_per_row(cols)?;
    if cols == 0 || !values.len().is_multiple_of(cols) {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        return Err(KernelError::RaggedValues {
            len: values.len(),
            cols,
        });
    }
    let rows = values.len() / cols;
    let mut out = vec![0u8; rows * row_bytes];
    for (row, dst) in values
        .chunks_exact(cols)
        .zip(out.chunks_exact_mut(row_bytes))
    {
        quantize_row(ty, row, dst);
    }
    Ok(out)
}

/// De-quantizes whole rows of `cols` values from `ty`'s bytes.
pub fn dequantize(ty: WeightType, bytes: &[u8], cols: usize) -> Result<Vec<f32>> {
    let row_bytes = ty.bytes_per_row(cols)?;
    if row_bytes == 0 {
        return Ok(Vec::new());
    }
    if !bytes.len().is_multiple_of(row_bytes) {
        let rows = bytes.len() / row_bytes;
        let expected = (rows + 1) * row_bytes;
        return Err(KernelError::WrongByteLength {
            ty,
            rows: rows + 1,
            cols,
            expected,
            got: bytes.len(),
        });
    }
    let rows = bytes.len() / row_bytes;
    let mut out = vec![0f32; rows * cols];
    for (src, dst) in bytes
        .chunks_exact(row_bytes)
        .zip(out.chunks_exact_mut(cols))
    {
        dequantize_row(ty, src, dst);
    }
    Ok(out)
}

/// Quantizes one row. `out` must hold exactly `ty.bytes_per_row(row.len())` bytes.
pub fn quantize_row(ty: WeightType, row: &[f32], out: &mut [u8]) {
    assert_eq!(
        Ok(out.len()),
        ty.bytes_per_row(row.len()),
        "quantize_row: output length"
    );
    match ty {
        WeightType::F32 => {
            for (v, o) in row.iter().zip(out.chunks_exact_mut(4)) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        WeightType::Bf16 => {
            for (v, o) in row.iter().zip(out.chunks_exact_mut(2)) {
                o.copy_from_slice(&f32_to_bf16(*v).to_le_bytes());
            }
        }
        WeightType::Q8_0 => {
            for (x, o) in row.chunks_exact(BLOCK).zip(out.chunks_exact_mut(34)) {
                quantize_block_q8_0(x, o);
            }
        }
        WeightType::Q4_0 => {
            for (x, o) in row.chunks_exact(BLOCK).zip(out.chunks_exact_mut(18)) {
                quantize_block_q4_0(x, o);
            }
        }
        WeightType::Q4_1 => {
            for (x, o) in row.chunks_exact(BLOCK).zip(out.chunks_exact_mut(20)) {
                quantize_block_q4_1(x, o);
            }
        }
    }
}

/// De-quantizes one row of `out.len()` values from `bytes`.
pub fn dequantize_row(ty: WeightType, bytes: &[u8], out: &mut [f32]) {
    assert_eq!(
        Ok(bytes.len()),
        ty.bytes_per_row(out.len()),
        "dequantize_row: input length"
    );
    match ty {
        WeightType::F32 => {
            for (b, o) in bytes.chunks_exact(4).zip(out.iter_mut()) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        WeightType::Bf16 => {
            for (b, o) in bytes.chunks_exact(2).zip(out.iter_mut()) {
                *o = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        WeightType::Q8_0 => {
            for (b, o) in bytes.chunks_exact(34).zip(out.chunks_exact_mut(BLOCK)) {
                let d = f16_to_f32(rd16(b, 0));
                for (q, v) in b[2..].iter().zip(o.iter_mut()) {
                    *v = (*q as i8) as f32 * d;
                }
            }
        }
        WeightType::Q4_0 => {
            for (b, o) in bytes.chunks_exact(18).zip(out.chunks_exact_mut(BLOCK)) {
                let d = f16_to_f32(rd16(b, 0));
                let (lo, hi) = o.split_at_mut(16);
                for j in 0..16 {
                    lo[j] = ((b[2 + j] & 15) as i32 - 8) as f32 * d;
                    hi[j] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
                }
            }
        }
        WeightType::Q4_1 => {
            for (b, o) in bytes.chunks_exact(20).zip(out.chunks_exact_mut(BLOCK)) {
                let d = f16_to_f32(rd16(b, 0));
                let m = f16_to_f32(rd16(b, 2));
                let (lo, hi) = o.split_at_mut(16);
                for j in 0..16 {
                    // The product is exact, so this is one rounding, like the kernels' FMA.
                    lo[j] = (b[4 + j] & 15) as f32 * d + m;
                    hi[j] = (b[4 + j] >> 4) as f32 * d + m;
                }
            }
        }
    }
}

/// One Q8_0 block, as ggml's `quantize_row_q8_0_ref`: d = max|x| / 127, q = round(x / d).
fn quantize_block_q8_0(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    for (v, q) in x.iter().zip(out[2..].iter_mut()) {
        // f32::round rounds half away from zero, like C's roundf.
        *q = ((v * id).round() as i8) as u8;
    }
}

/// One Q4_0 block, as ggml's `quantize_row_q4_0_ref`: the value of largest magnitude (with its
/// sign) becomes level -8, so d = max / -8; levels are truncated after adding 8.5 and capped at 15.
fn quantize_block_q4_0(x: &[f32], out: &mut [u8]) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    let level = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    for j in 0..16 {
        out[2 + j] = level(x[j]) | (level(x[16 + j]) << 4);
    }
}

/// One Q4_1 block, as ggml's `quantize_row_q4_1_ref`: d = (max - min) / 15, m = min, levels
/// rounded by truncating after adding 0.5 and capped at 15.
fn quantize_block_q4_1(x: &[f32], out: &mut [u8]) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    out[2..4].copy_from_slice(&f32_to_f16(min).to_le_bytes());
    let level = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
    for j in 0..16 {
        out[4 + j] = level(x[j]) | (level(x[16 + j]) << 4);
    }
}
