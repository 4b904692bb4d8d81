//! De-quantization of every readable ggml type, and re-blocking of the types the decode kernels
//! do not run into ones they do.
//!
//! Block layouts (little-endian; `f16` is an IEEE half; "nibble" = 4 bits):
//!
//! | type | values / bytes | layout | value |
//! |---|---|---|---|
//! | Q5_0 | 32 / 22 | `f16 d; u32 qh; u8 qs[16]` | `(q - 16) * d`, `q` = low 4 bits from `qs` (values 0-15 low nibbles, 16-31 high nibbles) + bit `j` of `qh` as bit 4 |
//! | Q5_1 | 32 / 24 | `f16 d, m; u32 qh; u8 qs[16]` | `q * d + m` |
//! | Q4_K | 256 / 144 | `f16 d, dmin; u8 scales[12]; u8 qs[128]` | 8 sub-blocks of 32: `d*sc[j] * q - dmin*m[j]`, 6-bit `sc`, `m` packed in `scales` |
//! | Q5_K | 256 / 176 | `f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]` | as Q4_K with a fifth bit: bit `j` of `qh[l]` for value `l` of sub-block `j` |
//! | Q6_K | 256 / 210 | `u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d` | 16 groups of 16: `d * scales[g] * (q - 32)`, 6-bit `q` = 4 bits of `ql` + 2 of `qh` |
//!
//! In Q4_K and Q5_K the 128 `qs` bytes hold four 64-value chunks of 32 bytes: sub-block `2c` in the
//! low nibbles of chunk `c`, sub-block `2c+1` in the high ones. In Q6_K each 128-value half has
//! 64 `ql` and 32 `qh` bytes: value `r` of a half takes nibble `r / 64` of `ql[r % 64]` and bit
//! pair `r / 32` of `qh[r % 32]`.
//!
//! Exactness: every value is computed with f32 operations in which all products are exact (an f16
//! scale has 11 significant bits, the integer factors at most 8), so the only rounding is the one
//! addition of the affine types. That makes the results bit-identical to ggml's C code and to
//! gguf-py's NumPy code, which do the same operations.

use std::borrow::Cow;

use half::{bf16, f16};

use jielong_kernels::quant::{self as kq, MatRef, WeightType};

use crate::error::{GgufError, Result};
use crate::read::TensorView;
use crate::types::{GgmlType, QK_K};

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// De-quantizes `data`, a whole number of blocks of type `ty`, to f32 values in order.
/// Trailing bytes that do not make a whole block are ignored (a [`TensorView`] has none).
pub fn dequantize(ty: GgmlType, data: &[u8]) -> Vec<f32> {
    let (bs, ts) = (ty.block_size(), ty.type_size());
    let n_blocks = data.len() / ts;
    let data = &data[..n_blocks * ts];
    let mut out = vec![0f32; n_blocks * bs];
    // The kernels crate owns the formats it runs; all blocks are handed over as one row.
    if let Some(wt) = weight_type(ty).filter(|w| w.is_quantized()) {
        kq::dequantize_row(wt, data, &mut out);
        return out;
    }
    let block: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => |b, o| o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b, o| o[0] = f16_at(b, 0),
        GgmlType::BF16 => |b, o| o[0] = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32(),
        GgmlType::Q5_0 => dequant_q5_0,
        GgmlType::Q5_1 => dequant_q5_1,
        GgmlType::Q4_K => dequant_q4_k,
        GgmlType::Q5_K => dequant_q5_k,
        GgmlType::Q6_K => dequant_q6_k,
        // Handled by the kernels above.
        GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 => |_, _| {},
    };
    for (b, o) in data.chunks_exact(ts).zip(out.chunks_exact_mut(bs)) {
        block(b, o);
    }
    out
}

/// The kernels' name for a ggml type, if the kernels run it.
pub fn weight_type(ty: GgmlType) -> Option<WeightType> {
    Some(match ty {
        GgmlType::F32 => WeightType::F32,
        GgmlType::BF16 => WeightType::Bf16,
        GgmlType::Q8_0 => WeightType::Q8_0,
        GgmlType::Q4_0 => WeightType::Q4_0,
        GgmlType::Q4_1 => WeightType::Q4_1,
        _ => return None,
    })
}

/// The ggml type of a kernels weight type.
pub fn ggml_type(ty: WeightType) -> GgmlType {
    match ty {
        WeightType::F32 => GgmlType::F32,
        WeightType::Bf16 => GgmlType::BF16,
        WeightType::Q8_0 => GgmlType::Q8_0,
        WeightType::Q4_0 => GgmlType::Q4_0,
        WeightType::Q4_1 => GgmlType::Q4_1,
    }
}

/// The 5-bit integers of a Q5_0/Q5_1 block: nibbles from `qs`, bit 4 from `qh`.
fn q5_ints(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = (qs[j] & 0x0f) | (((qh >> j) & 1) as u8) << 4;
        q[j + 16] = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) as u8) << 4;
    }
    q
}

fn dequant_q5_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, q) in out.iter_mut().zip(q5_ints(&b[2..6], &b[6..22])) {
        *o = (q as i32 - 16) as f32 * d;
    }
}

fn dequant_q5_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (o, q) in out.iter_mut().zip(q5_ints(&b[4..8], &b[8..24])) {
        *o = q as f32 * d + m;
    }
}

/// The eight 6-bit (scale, min) pairs of a Q4_K/Q5_K super-block, unpacked from 12 bytes: bytes
/// 0-3 hold the low 6 bits of scales 0-3 (top 2 bits: high bits of scales 4-7), bytes 4-7 the
/// same for mins, bytes 8-11 the low 4 bits of scale (low nibble) and min (high nibble) 4-7.
pub(crate) fn k_scales(s: &[u8]) -> [(u8, u8); 8] {
    let mut out = [(0u8, 0u8); 8];
    for (j, o) in out.iter_mut().enumerate() {
        *o = if j < 4 {
            (s[j] & 63, s[j + 4] & 63)
        } else {
            (
                (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
                (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
            )
        };
    }
    out
}

/// Nibble `l` of sub-block `j` of a Q4_K/Q5_K `qs` array.
fn k_nibble(qs: &[u8], j: usize, l: usize) -> u8 {
    let byte = qs[(j / 2) * 32 + l];
    if j.is_multiple_of(2) {
        byte & 0x0f
    } else {
        byte >> 4
    }
}

fn dequant_q4_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = k_scales(&b[4..16]);
    let qs = &b[16..144];
    for (j, (sc, m)) in scales.into_iter().enumerate() {
        let (scale, min) = (d * sc as f32, dmin * m as f32);
        for l in 0..32 {
            out[j * 32 + l] = scale * k_nibble(qs, j, l) as f32 - min;
        }
    }
}

fn dequant_q5_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = k_scales(&b[4..16]);
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (j, (sc, m)) in scales.into_iter().enumerate() {
        let (scale, min) = (d * sc as f32, dmin * m as f32);
        for l in 0..32 {
            let q = k_nibble(qs, j, l) | ((qh[l] >> j) & 1) << 4;
            out[j * 32 + l] = scale * q as f32 - min;
        }
    }
}

fn dequant_q6_k(b: &[u8], out: &mut [f32]) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for half in 0..2 {
        let (ql, qh) = (&ql[half * 64..][..64], &qh[half * 32..][..32]);
        for r in 0..128 {
            let lo = (ql[r % 64] >> (4 * (r / 64))) & 0x0f;
            let hi = (qh[r % 32] >> (2 * (r / 32))) & 0x03;
            let q = (lo | hi << 4) as i32 - 32;
            let e = half * 128 + r;
            out[e] = d * scales[e / 16] as i8 as f32 * q as f32;
        }
    }
}

// ---- re-blocking -------------------------------------------------------------------------------

/// A tensor converted to a type the decode kernels run, as a `rows x cols` matrix (`cols` = ne0,
/// the contiguous dimension; `rows` = the product of the others; 1-D tensors are one row).
#[derive(Clone, Debug)]
pub struct Reblocked<'a> {
    pub ty: WeightType,
    /// Borrowed from the file when the type was already runnable.
    pub data: Cow<'a, [u8]>,
    pub rows: usize,
    pub cols: usize,
    /// Whether every value is exactly the source's de-quantized value.
    pub exact: bool,
}

impl Reblocked<'_> {
    /// The kernels' view of the matrix.
    pub fn mat(&self) -> Result<MatRef<'_>> {
        Ok(MatRef::new(self.ty, self.rows, self.cols, &self.data)?)
    }

    /// The ggml type of the data.
    pub fn ggml_type(&self) -> GgmlType {
        ggml_type(self.ty)
    }

    /// The values, de-quantized by the kernels.
    pub fn dequantize_f32(&self) -> Result<Vec<f32>> {
        Ok(kq::dequantize(self.ty, &self.data, self.cols)?)
    }
}

/// Converts a tensor to a type the decode kernels run:
///
/// | source | becomes | exact? |
/// |---|---|---|
/// | F32, BF16, Q8_0, Q4_0, Q4_1 | itself (borrowed, no copy) | yes |
/// | F16 | F32 | yes (BF16 would drop 3 bits of mantissa and f16's small numbers) |
/// | Q5_0 | Q8_0 (same scale, `q - 16` as the int8) | yes |
/// | Q4_K | Q4_1, one block per 32-value sub-block: scale `d*sc` and min `-dmin*m` rounded to f16 | no: each value within `15*u(d*sc) + u(dmin*m)` (plus f32 rounding), `u(x)` half an f16 ulp of `x` (`|x| * 2^-11`, or `2^-25` below f16's normal range) |
/// | Q5_1, Q5_K, Q6_K | Q8_0, re-quantized from the de-quantized values (ggml's Q8_0 quantizer) | no: within `d * (0.5 + 127 * 2^-11)` per 32-value block, `d = amax / 127` |
///
/// Fails only if a Q4_K scale does not fit in f16 (above 65504; real files have scales below 1).
pub fn reblock<'a>(view: &TensorView<'a>) -> Result<Reblocked<'a>> {
    let data = view.data();
    let (rows, cols) = (view.n_rows(), view.row_len());
    let make = |ty, data, exact| Reblocked {
        ty,
        data,
        rows,
        cols,
        exact,
    };
    Ok(match view.ty() {
        GgmlType::F32 => make(WeightType::F32, Cow::Borrowed(data), true),
        GgmlType::BF16 => make(WeightType::Bf16, Cow::Borrowed(data), true),
        GgmlType::Q8_0 => make(WeightType::Q8_0, Cow::Borrowed(data), true),
        GgmlType::Q4_0 => make(WeightType::Q4_0, Cow::Borrowed(data), true),
        GgmlType::Q4_1 => make(WeightType::Q4_1, Cow::Borrowed(data), true),
        GgmlType::F16 => {
            let f32s = data
                .chunks_exact(2)
                .flat_map(|b| f16_at(b, 0).to_le_bytes());
            make(WeightType::F32, Cow::Owned(f32s.collect()), true)
        }
        GgmlType::Q5_0 => make(WeightType::Q8_0, Cow::Owned(q5_0_to_q8_0(data)), true),
        GgmlType::Q4_K => make(
            WeightType::Q4_1,
            Cow::Owned(q4_k_to_q4_1(view.name(), data)?),
            false,
        ),
        GgmlType::Q5_1 | GgmlType::Q5_K | GgmlType::Q6_K => make(
            WeightType::Q8_0,
            Cow::Owned(requantize_q8_0(view.ty(), data)),
            false,
        ),
    })
}

fn q5_0_to_q8_0(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 22 * 34);
    for b in data.chunks_exact(22) {
        out.extend_from_slice(&b[0..2]); // the same f16 scale
        out.extend(q5_ints(&b[2..6], &b[6..22]).map(|q| (q as i8 - 16) as u8));
    }
    out
}

fn q4_k_to_q4_1(tensor: &str, data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 144 * 8 * 20);
    for b in data.chunks_exact(144) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let qs = &b[16..144];
        for (j, (sc, m)) in k_scales(&b[4..16]).into_iter().enumerate() {
            // Q4_1 is {d, m, nibbles} with value q*d + m; the sub-block is q*(d*sc) - dmin*m.
            for v in [d * sc as f32, -(dmin * m as f32)] {
                let h = f16::from_f32(v);
                if h.is_infinite() && v.is_finite() {
                    return Err(GgufError::ReblockOverflow {
                        tensor: tensor.into(),
                        from: "Q4_K",
                        to: "Q4_1",
                        value: v,
                    });
                }
                out.extend_from_slice(&h.to_bits().to_le_bytes());
            }
            // Q4_1 packs value l in the low nibble of byte l and value l+16 in the high one.
            out.extend((0..16).map(|l| k_nibble(qs, j, l) | k_nibble(qs, j, l + 16) << 4));
        }
    }
    Ok(out)
}

fn requantize_q8_0(ty: GgmlType, data: &[u8]) -> Vec<u8> {
    // One super-block (or up to 256 values) at a time: never an f32 copy of the whole tensor.
    let (bs, ts) = (ty.block_size(), ty.type_size());
    let per_chunk = QK_K.max(bs) / bs;
    let mut out = Vec::with_capacity(data.len() / ts * bs / 32 * 34);
    let mut buf = [0u8; QK_K / 32 * 34];
    for chunk in data.chunks(per_chunk * ts) {
        let values = dequantize(ty, chunk);
        let bytes = &mut buf[..values.len() / 32 * 34];
        kq::quantize_row(WeightType::Q8_0, &values, bytes);
        out.extend_from_slice(bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Q4_K super-block with the given f16 scales, 6-bit (scale, min) pairs and nibbles.
    fn q4_k_block(d: f32, dmin: f32, sm: [(u8, u8); 8], q: impl Fn(usize) -> u8) -> Vec<u8> {
        let mut b = Vec::with_capacity(144);
        b.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        b.extend_from_slice(&f16::from_f32(dmin).to_le_bytes());
        let mut s = [0u8; 12];
        for (j, (sc, m)) in sm.into_iter().enumerate() {
            if j < 4 {
                s[j] |= sc & 63;
                s[j + 4] |= m & 63;
            } else {
                s[j + 4] |= (sc & 15) | (m & 15) << 4;
                s[j - 4] |= (sc >> 4) << 6;
                s[j] |= (m >> 4) << 6;
            }
        }
        b.extend_from_slice(&s);
        // value l of sub-block j: nibble (j % 2) of byte (j / 2) * 32 + l
        b.extend((0..128).map(|i| q((i / 32) * 64 + i % 32) | q((i / 32) * 64 + 32 + i % 32) << 4));
        b
    }

    const SM: [(u8, u8); 8] = [
        (1, 0),
        (63, 63),
        (17, 5),
        (32, 40),
        (5, 33),
        (48, 1),
        (60, 62),
        (9, 16),
    ];

    #[test]
    fn q4_k_packing_round_trips_through_the_scale_unpacker() {
        let b = q4_k_block(0.5, 0.25, SM, |i| (i * 7 % 16) as u8);
        assert_eq!(k_scales(&b[4..16]), SM);
        let v = dequantize(GgmlType::Q4_K, &b);
        for (i, x) in v.iter().enumerate() {
            let (sc, m) = SM[i / 32];
            assert_eq!(*x, 0.5 * sc as f32 * (i * 7 % 16) as f32 - 0.25 * m as f32);
        }
    }

    /// When d*sc and dmin*m are representable in f16 (here: d and dmin powers of two), the
    /// Q4_K to Q4_1 conversion is exact; the lossy case is tested against gguf-py's fixtures.
    #[test]
    fn q4_k_to_q4_1_is_exact_when_the_products_fit_in_f16() {
        let b = q4_k_block(1.0 / 64.0, 1.0 / 128.0, SM, |i| (i * 5 % 16) as u8);
        let q41 = q4_k_to_q4_1("t", &b).unwrap();
        let got = kq::dequantize(WeightType::Q4_1, &q41, 256).unwrap();
        let want = dequantize(GgmlType::Q4_K, &b);
        assert_eq!(got, want);
    }

    #[test]
    fn q4_k_scales_beyond_f16_are_an_error() {
        let b = q4_k_block(60000.0, 0.0, SM, |_| 1);
        let e = q4_k_to_q4_1("blk.3.ffn_up.weight", &b).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tensor \"blk.3.ffn_up.weight\": a block scale 3780000 does not fit in f16 when re-blocking Q4_K to Q4_1"
        );
    }

    #[test]
    fn q5_0_becomes_q8_0_exactly() {
        let mut b = f16::from_f32(-0.037).to_le_bytes().to_vec();
        b.extend_from_slice(&0xdead_beefu32.to_le_bytes());
        b.extend((0..16u8).map(|i| i.wrapping_mul(37)));
        let q8 = q5_0_to_q8_0(&b);
        assert_eq!(
            kq::dequantize(WeightType::Q8_0, &q8, 32).unwrap(),
            dequantize(GgmlType::Q5_0, &b)
        );
    }
}
