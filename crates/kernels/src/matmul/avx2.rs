//! AVX2 matrix-product kernels: a pair of ymm registers holds the 16 lanes of one output's dot
//! product (lanes 0-7 and 8-15), so the arithmetic is exactly the AVX-512 and portable one.
//!
//! With 16 registers the micro-tile is 2 batch rows x 2 output rows (8 accumulator registers,
//! the weight and activation vectors of one step in the rest).

use std::arch::x86_64::*;

use super::{Ahead, Args, STREAMED_BYTES};
use crate::quant::WeightType;

/// Batch rows per micro-tile.
const BT: usize = 2;
/// Output rows per micro-tile.
const RT: usize = 2;

/// 16 lanes: `[lanes 0..8, lanes 8..16]`.
type V = [__m256; 2];

/// A storage type, widened to f32 lanes in registers.
trait Load {
    /// 16-lane vectors one step yields: 1 for f32/bf16 (16 values), 2 for a 32-value block.
    const NV: usize;
    /// Whether loading costs instructions beyond the load (every type but f32).
    const WIDENS: bool = true;
    /// Bytes one step advances along a row.
    const STEP_BYTES: usize;
    /// The vectors of the step starting at `p` (only the first `NV` are meaningful); `f16` is
    /// the f16-to-f32 table.
    unsafe fn load(p: *const u8, f16: *const f32) -> [V; 2];
    /// The first `rem` (1..16) values at `p` and zeros after; f32 and bf16 only.
    unsafe fn load_tail(p: *const u8, rem: usize) -> V;
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn zero() -> V {
    [_mm256_setzero_ps(), _mm256_setzero_ps()]
}

/// Broadcasts the little-endian f16 at `p` to 8 f32 lanes, through the table (exact).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn splat_f16(p: *const u8, f16: *const f32) -> __m256 {
    // SAFETY (all loads in this file): pointers stay inside the weight and activation rows,
    // whose lengths were checked, and the 65,536-entry table; every load is unaligned.
    unsafe {
        let bits = std::ptr::read_unaligned(p.cast::<u16>());
        _mm256_set1_ps(*f16.add(bits as usize))
    }
}

/// Copies `n` bytes from `p` into a zeroed 64-byte buffer: AVX2 has no byte-masked loads, and
/// reading past the end of a row could fault at the end of a mapping.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn tail_bytes(p: *const u8, n: usize) -> [u8; 64] {
    let mut buf = [0u8; 64];
    unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n) };
    buf
}

struct F32;
impl Load for F32 {
    const NV: usize = 1;
    const WIDENS: bool = false;
    const STEP_BYTES: usize = 64;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load(p: *const u8, _: *const f32) -> [V; 2] {
        unsafe {
            [
                [_mm256_loadu_ps(p.cast()), _mm256_loadu_ps(p.add(32).cast())],
                zero(),
            ]
        }
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load_tail(p: *const u8, rem: usize) -> V {
        unsafe {
            let buf = tail_bytes(p, 4 * rem);
            Self::load(buf.as_ptr(), std::ptr::null())[0]
        }
    }
}

/// 8 bf16 to 8 f32: the 16 bits become the upper half of the f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn widen_bf16(h: __m128i) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
}

struct Bf16;
impl Load for Bf16 {
    const NV: usize = 1;
    const STEP_BYTES: usize = 32;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load(p: *const u8, _: *const f32) -> [V; 2] {
        unsafe {
            let lo = widen_bf16(_mm_loadu_si128(p.cast()));
            let hi = widen_bf16(_mm_loadu_si128(p.add(16).cast()));
            [[lo, hi], zero()]
        }
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load_tail(p: *const u8, rem: usize) -> V {
        unsafe {
            let buf = tail_bytes(p, 2 * rem);
            Self::load(buf.as_ptr(), std::ptr::null())[0]
        }
    }
}

/// 8 signed bytes at `p` to 8 f32 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn i8x8(p: *const u8) -> __m256 {
    unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))) }
}

struct Q8_0;
impl Load for Q8_0 {
    const NV: usize = 2;
    const STEP_BYTES: usize = 34;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load(p: *const u8, f16: *const f32) -> [V; 2] {
        unsafe {
            let d = splat_f16(p, f16);
            let q0 = _mm256_mul_ps(i8x8(p.add(2)), d);
            let q1 = _mm256_mul_ps(i8x8(p.add(10)), d);
            let q2 = _mm256_mul_ps(i8x8(p.add(18)), d);
            let q3 = _mm256_mul_ps(i8x8(p.add(26)), d);
            [[q0, q1], [q2, q3]]
        }
    }
    unsafe fn load_tail(_: *const u8, _: usize) -> V {
        unreachable!("block rows have no tail")
    }
}

/// 16 nibble values (one per byte of `n`) as two vectors of 8 i32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn widen_nibbles(n: __m128i) -> [__m256i; 2] {
    [
        _mm256_cvtepu8_epi32(n),
        _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(n, n)),
    ]
}

/// The 32 nibbles of the 16 bytes at `p`: elements 0..16 (low nibbles), 16..32 (high nibbles).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn nibbles(p: *const u8) -> [[__m256i; 2]; 2] {
    unsafe {
        let bytes = _mm_loadu_si128(p.cast());
        let fifteen = _mm_set1_epi8(15);
        let lo = _mm_and_si128(bytes, fifteen);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(bytes), fifteen);
        [widen_nibbles(lo), widen_nibbles(hi)]
    }
}

/// `n * d + m` for 8 nibbles `n` (exact products, one rounding).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn widen_nibbles_f32(n: __m256i, d: __m256, m: __m256) -> __m256 {
    _mm256_fmadd_ps(_mm256_cvtepi32_ps(n), d, m)
}

struct Q4_0;
impl Load for Q4_0 {
    const NV: usize = 2;
    const STEP_BYTES: usize = 18;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load(p: *const u8, f16: *const f32) -> [V; 2] {
        unsafe {
            let d = splat_f16(p, f16);
            let n = nibbles(p.add(2));
            // (n - 8) d as n d + (-8 d): both terms and their sum are exact, so is the FMA.
            let m = _mm256_mul_ps(d, _mm256_set1_ps(-8.0));
            [
                [
                    widen_nibbles_f32(n[0][0], d, m),
                    widen_nibbles_f32(n[0][1], d, m),
                ],
                [
                    widen_nibbles_f32(n[1][0], d, m),
                    widen_nibbles_f32(n[1][1], d, m),
                ],
            ]
        }
    }
    unsafe fn load_tail(_: *const u8, _: usize) -> V {
        unreachable!("block rows have no tail")
    }
}

struct Q4_1;
impl Load for Q4_1 {
    const NV: usize = 2;
    const STEP_BYTES: usize = 20;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load(p: *const u8, f16: *const f32) -> [V; 2] {
        unsafe {
            let (d, m) = (splat_f16(p, f16), splat_f16(p.add(2), f16));
            let n = nibbles(p.add(4));
            // nibble * d is exact, so the FMA rounds once, like `nibble * d + m` in f32.
            [
                [
                    widen_nibbles_f32(n[0][0], d, m),
                    widen_nibbles_f32(n[0][1], d, m),
                ],
                [
                    widen_nibbles_f32(n[1][0], d, m),
                    widen_nibbles_f32(n[1][1], d, m),
                ],
            ]
        }
    }
    unsafe fn load_tail(_: *const u8, _: usize) -> V {
        unreachable!("block rows have no tail")
    }
}

/// The canonical reduction tree of [`crate::lanes::hsum16`] on a register pair.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum(a: V) -> f32 {
    let s1 = _mm256_add_ps(a[0], a[1]); // lanes l + (l + 8)
    let s2 = _mm_add_ps(_mm256_castps256_ps128(s1), _mm256_extractf128_ps::<1>(s1)); // + (l + 4)
    let s3 = _mm_add_ps(s2, _mm_movehl_ps(s2, s2)); // + (l + 2)
    _mm_cvtss_f32(_mm_add_ss(s3, _mm_movehdup_ps(s3))) // lane 0 + lane 1
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn fma(x: V, w: V, acc: V) -> V {
    [
        _mm256_fmadd_ps(x[0], w[0], acc[0]),
        _mm256_fmadd_ps(x[1], w[1], acc[1]),
    ]
}

/// Output rows `r0..r1` for every batch row.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C, and `a` must describe valid buffers.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows(a: &Args, r0: usize, r1: usize) {
    unsafe {
        match a.ty {
            WeightType::F32 => rows_of::<F32>(a, r0, r1),
            WeightType::Bf16 => rows_of::<Bf16>(a, r0, r1),
            WeightType::Q8_0 => rows_of::<Q8_0>(a, r0, r1),
            WeightType::Q4_0 => rows_of::<Q4_0>(a, r0, r1),
            WeightType::Q4_1 => rows_of::<Q4_1>(a, r0, r1),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_of<L: Load>(a: &Args, r0: usize, r1: usize) {
    if L::WIDENS && a.batch > BT {
        // Widen each row tile once into an f32 panel instead of once per batch tile (the same
        // values, so the same bits).
        return super::with_panel(RT * a.cols, |panel| unsafe {
            rows_via_panel::<L>(a, r0, r1, panel)
        });
    }
    let steps = a.cols / (16 * L::NV);
    let rate = Ahead::rate(RT * a.row_bytes, a.batch.div_ceil(BT), steps);
    let mut r = r0;
    while r < r1 {
        let rt = if r1 - r >= RT { RT } else { 1 };
        let w = unsafe { a.w.add(r * a.row_bytes) };
        let next = Ahead::two_tiles_on(a, r, rt, rate);
        unsafe { batch_tiles::<L>(a, r, rt, w, a.row_bytes, next) };
        r += rt;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_via_panel<L: Load>(a: &Args, r0: usize, r1: usize, panel: &mut [f32]) {
    let cols = a.cols;
    let steps = cols / (16 * L::NV);
    let rem = cols - steps * 16 * L::NV;
    // The f32 tiles on the panel step 16 values at a time.
    let rate = Ahead::rate(RT * a.row_bytes, a.batch.div_ceil(BT), cols / 16);
    let mut r = r0;
    while r < r1 {
        let rt = if r1 - r >= RT { RT } else { 1 };
        for i in 0..rt {
            unsafe {
                let w = a.w.add((r + i) * a.row_bytes);
                let dst = panel.as_mut_ptr().add(i * cols);
                for s in 0..steps {
                    let v = L::load(w.add(s * L::STEP_BYTES), a.f16);
                    for (j, vj) in v.iter().enumerate().take(L::NV) {
                        _mm256_storeu_ps(dst.add((s * L::NV + j) * 16), vj[0]);
                        _mm256_storeu_ps(dst.add((s * L::NV + j) * 16 + 8), vj[1]);
                    }
                }
                if rem > 0 {
                    let v = L::load_tail(w.add(steps * L::STEP_BYTES), rem);
                    let mut buf = [0f32; 16];
                    _mm256_storeu_ps(buf.as_mut_ptr(), v[0]);
                    _mm256_storeu_ps(buf.as_mut_ptr().add(8), v[1]);
                    std::ptr::copy_nonoverlapping(buf.as_ptr(), dst.add(steps * 16), rem);
                }
            }
        }
        // The tiles run on the panel, in cache: they ask for the stored weights two row tiles on.
        let next = Ahead::two_tiles_on(a, r, rt, rate);
        unsafe { batch_tiles::<F32>(a, r, rt, panel.as_ptr().cast(), cols * 4, next) };
        r += rt;
    }
}

/// Output rows `r..r + rt` (`rt` is `RT` or 1) for every batch row, reading the weights of row
/// `r + i` at `w + i * stride`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn batch_tiles<L: Load>(
    a: &Args,
    r: usize,
    rt: usize,
    w: *const u8,
    stride: usize,
    ahead: Ahead,
) {
    let mut b = 0;
    while b < a.batch {
        let bt = BT.min(a.batch - b);
        unsafe {
            match (bt, rt) {
                (2, 2) => tile::<L, 2, 2>(a, b, r, w, stride, ahead),
                (1, 2) => tile::<L, 1, 2>(a, b, r, w, stride, ahead),
                (2, _) => tile::<L, 2, 1>(a, b, r, w, stride, ahead),
                _ => tile::<L, 1, 1>(a, b, r, w, stride, ahead),
            }
        }
        b += bt;
    }
}

/// Batch rows `b0..b0 + B` x output rows `r0..r0 + R`; weight row `r0 + i` is at `w + i * stride`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile<L: Load, const B: usize, const R: usize>(
    a: &Args,
    b0: usize,
    r0: usize,
    w: *const u8,
    stride: usize,
    ahead: Ahead,
) {
    let cols = a.cols;
    unsafe {
        let x = a.x.add(b0 * cols);
        let mut acc = [[zero(); R]; B];
        let steps = cols / (16 * L::NV);
        let streamed = B == 1 && L::NV == 1 && a.rows * a.row_bytes >= STREAMED_BYTES;
        if streamed {
            // A large matrix for one activation row: row after row (see the AVX-512 tile).
            for (r, acc_r) in acc[0].iter_mut().enumerate() {
                for s in 0..steps {
                    let wv = L::load(w.add(r * stride + s * L::STEP_BYTES), a.f16);
                    let xb = [
                        _mm256_loadu_ps(x.add(s * 16)),
                        _mm256_loadu_ps(x.add(s * 16 + 8)),
                    ];
                    *acc_r = fma(xb, wv[0], *acc_r);
                }
            }
        }
        // Otherwise the tile's rows side by side, `steps` steps of 16 (or 32) values.
        let side_by_side_steps = if streamed { 0 } else { steps };
        let mut prefetches = ahead.cursor(b0 / BT, steps, 0);
        for s in 0..side_by_side_steps {
            prefetches.step();
            let mut wv = [[zero(); 2]; R];
            for (r, v) in wv.iter_mut().enumerate() {
                *v = L::load(w.add(r * stride + s * L::STEP_BYTES), a.f16);
            }
            for v in 0..L::NV {
                for (b, acc_b) in acc.iter_mut().enumerate() {
                    let at = b * cols + (s * L::NV + v) * 16;
                    let xb = [_mm256_loadu_ps(x.add(at)), _mm256_loadu_ps(x.add(at + 8))];
                    for (acc_br, wr) in acc_b.iter_mut().zip(&wv) {
                        *acc_br = fma(xb, wr[v], *acc_br);
                    }
                }
            }
        }
        let rem = cols - steps * 16 * L::NV;
        if rem > 0 {
            let mut wv = [zero(); R];
            for (r, v) in wv.iter_mut().enumerate() {
                *v = L::load_tail(w.add(r * stride + steps * L::STEP_BYTES), rem);
            }
            for (b, acc_b) in acc.iter_mut().enumerate() {
                let buf = tail_bytes(x.add(b * cols + steps * 16).cast(), 4 * rem);
                let p = buf.as_ptr().cast::<f32>();
                let xb = [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))];
                for (acc_br, wr) in acc_b.iter_mut().zip(&wv) {
                    *acc_br = fma(xb, *wr, *acc_br);
                }
            }
        }
        for (b, acc_b) in acc.iter().enumerate() {
            for (r, acc_br) in acc_b.iter().enumerate() {
                let mut v = hsum(*acc_br);
                if !a.bias.is_null() {
                    v += *a.bias.add(r0 + r);
                }
                *a.out.add((b0 + b) * a.rows + r0 + r) = v;
            }
        }
    }
}
