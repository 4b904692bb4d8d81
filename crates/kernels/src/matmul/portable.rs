//! The portable matrix-product kernel: the canonical arithmetic written out plainly, one output
//! at a time. It is the path of CPUs without AVX2 and the definition the SIMD paths match bit
//! for bit.

use super::Args;
use crate::lanes::{LANES, hsum16};
use crate::quant::{WeightType, bf16_to_f32, f16_to_f32};

/// Output rows `r0..r1` for every batch row.
///
/// # Safety
/// `a` must describe valid buffers of the shapes it states.
pub(super) unsafe fn rows(a: &Args, r0: usize, r1: usize) {
    // SAFETY: the caller guarantees the shapes.
    let x = unsafe { std::slice::from_raw_parts(a.x, a.batch * a.cols) };
    for r in r0..r1 {
        let row = unsafe { std::slice::from_raw_parts(a.w.add(r * a.row_bytes), a.row_bytes) };
        let bias = if a.bias.is_null() {
            None
        } else {
            Some(unsafe { *a.bias.add(r) })
        };
        for (b, xb) in x.chunks_exact(a.cols).enumerate() {
            let mut v = dot_row(a.ty, xb, row);
            if let Some(bias) = bias {
                v += bias;
            }
            unsafe { *a.out.add(b * a.rows + r) = v };
        }
    }
}

/// `Σ_i x[i] * W[i]` for one stored row, in the canonical lane order.
fn dot_row(ty: WeightType, x: &[f32], row: &[u8]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut w = [0f32; LANES];
    for (c, xc) in x.chunks(LANES).enumerate() {
        load_chunk(ty, row, c, &mut w[..xc.len()]);
        for (l, (xv, wv)) in xc.iter().zip(&w).enumerate() {
            acc[l] = xv.mul_add(*wv, acc[l]);
        }
    }
    hsum16(&acc)
}

/// Values `16c .. 16c + w.len()` of a stored row, as f32 (exactly the de-quantized values).
fn load_chunk(ty: WeightType, row: &[u8], c: usize, w: &mut [f32]) {
    let rd16 = |at: usize| u16::from_le_bytes([row[at], row[at + 1]]);
    match ty {
        WeightType::F32 => {
            for (j, v) in w.iter_mut().enumerate() {
                let at = 4 * (c * LANES + j);
                *v = f32::from_le_bytes([row[at], row[at + 1], row[at + 2], row[at + 3]]);
            }
        }
        WeightType::Bf16 => {
            for (j, v) in w.iter_mut().enumerate() {
                *v = bf16_to_f32(rd16(2 * (c * LANES + j)));
            }
        }
        // The block types: chunk c is half c % 2 of block c / 2.
        WeightType::Q8_0 => {
            let blk = 34 * (c / 2);
            let d = f16_to_f32(rd16(blk));
            let qs = blk + 2 + 16 * (c % 2);
            for (j, v) in w.iter_mut().enumerate() {
                *v = (row[qs + j] as i8) as f32 * d;
            }
        }
        WeightType::Q4_0 => {
            let blk = 18 * (c / 2);
            let d = f16_to_f32(rd16(blk));
            let shift = 4 * (c % 2);
            for (j, v) in w.iter_mut().enumerate() {
                *v = (((row[blk + 2 + j] >> shift) & 15) as i32 - 8) as f32 * d;
            }
        }
        WeightType::Q4_1 => {
            let blk = 20 * (c / 2);
            let (d, m) = (f16_to_f32(rd16(blk)), f16_to_f32(rd16(blk + 2)));
            let shift = 4 * (c % 2);
            for (j, v) in w.iter_mut().enumerate() {
                *v = ((row[blk + 4 + j] >> shift) & 15) as f32 * d + m;
            }
        }
    }
}
