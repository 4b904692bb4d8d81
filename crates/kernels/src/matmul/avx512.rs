//! AVX-512 matrix-product kernels: one zmm register holds the 16 lanes of one output's dot
//! product.
//!
//! A micro-tile computes `B` batch rows x `R` output rows: per step it widens the `R` weight
//! rows' next 16 (or 32) values to f32 once and reuses them for all `B` activation rows, so a
//! batch multiplies each weight read from memory `B` times (register blocking; 6 x 4 tiles keep
//! 24 accumulators, 4 weight vectors and 1 activation vector in the 32 registers: a weight vector
//! loaded serves 6 FMAs, which at batch 16 gave 15-30% more GFLOP/s than 4 x 4 tiles). The
//! accumulators of four batch rows are reduced together by a transposing shuffle tree that
//! performs the canonical per-output tree of [`crate::lanes::hsum16`] with a quarter of the
//! instructions.

use std::arch::x86_64::*;

use super::{Ahead, Args, Part, SLOTS, STREAMED_BYTES};
use crate::quant::WeightType;

/// Batch rows per micro-tile (at most 6: 24 accumulators).
const BT: usize = 6;
/// Output rows per micro-tile.
const RT: usize = 4;

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
    unsafe fn load(p: *const u8, f16: *const f32) -> [__m512; 2];
    /// The first `rem` (1..16) values at `p` and zeros after; f32 and bf16 only (the block
    /// types always have whole blocks).
    unsafe fn load_tail(p: *const u8, rem: usize) -> __m512;
}

/// Broadcasts the little-endian f16 at `p` to 16 f32 lanes, through the table (exact).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
unsafe fn splat_f16(p: *const u8, f16: *const f32) -> __m512 {
    // SAFETY (all loads in this file): the caller passes pointers inside the weight rows (or
    // inside the activation rows), whose lengths `MatRef::new` and `matmul` checked, and the
    // 65,536-entry table; unaligned loads are used throughout.
    unsafe {
        let bits = std::ptr::read_unaligned(p.cast::<u16>());
        _mm512_set1_ps(*f16.add(bits as usize))
    }
}

#[inline(always)]
fn tail_mask(rem: usize) -> __mmask16 {
    ((1u32 << rem) - 1) as __mmask16
}

struct F32;
impl Load for F32 {
    const NV: usize = 1;
    const WIDENS: bool = false;
    const STEP_BYTES: usize = 64;
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn load(p: *const u8, _: *const f32) -> [__m512; 2] {
        unsafe { [_mm512_loadu_ps(p.cast()), _mm512_setzero_ps()] }
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn load_tail(p: *const u8, rem: usize) -> __m512 {
        // Masked-off lanes are not read (no fault past the row) and become +0.
        unsafe { _mm512_maskz_loadu_ps(tail_mask(rem), p.cast()) }
    }
}

/// bf16 to f32: the 16 bits become the upper half of the f32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn widen_bf16(h: __m256i) -> __m512 {
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
}

struct Bf16;
impl Load for Bf16 {
    const NV: usize = 1;
    const STEP_BYTES: usize = 32;
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn load(p: *const u8, _: *const f32) -> [__m512; 2] {
        unsafe {
            [
                widen_bf16(_mm256_loadu_si256(p.cast())),
                _mm512_setzero_ps(),
            ]
        }
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn load_tail(p: *const u8, rem: usize) -> __m512 {
        unsafe { widen_bf16(_mm256_maskz_loadu_epi16(tail_mask(rem), p.cast())) }
    }
}

struct Q8_0;
impl Load for Q8_0 {
    const NV: usize = 2;
    const STEP_BYTES: usize = 34;
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn load(p: *const u8, f16: *const f32) -> [__m512; 2] {
        unsafe {
            let d = splat_f16(p, f16);
            let lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(2).cast())));
            let hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(18).cast())));
            [_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d)]
        }
    }
    unsafe fn load_tail(_: *const u8, _: usize) -> __m512 {
        unreachable!("block rows have no tail")
    }
}

/// The 32 nibbles of 16 bytes, de-quantized: `n d + m` for each nibble `n`, low nibbles in the
/// first vector, high nibbles in the second.
///
/// The sixteen possible values are computed once per block (one FMA over 0..15) and each nibble
/// picks its own with a permute, which reads only the low four bits of each 32-bit lane: a
/// nibble costs no mask and no integer-to-float conversion, and gets the bits of `n d + m`
/// computed for it alone (the same FMA on the same operands). Two cores of a Xeon, SmolLM2's
/// Q4_1 file, batch 1: see BENCHMARKS.md.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
unsafe fn nibbles(p: *const u8, d: __m512, m: __m512) -> [__m512; 2] {
    unsafe {
        let values = _mm512_fmadd_ps(
            _mm512_setr_ps(
                0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0,
                15.0,
            ),
            d,
            m,
        );
        let bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.cast()));
        [
            _mm512_permutexvar_ps(bytes, values),
            _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(bytes), values),
        ]
    }
}

struct Q4_0;
impl Load for Q4_0 {
    const NV: usize = 2;
    const STEP_BYTES: usize = 18;
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn load(p: *const u8, f16: *const f32) -> [__m512; 2] {
        unsafe {
            let d = splat_f16(p, f16);
            // (n - 8) d as n d + (-8 d): both terms are exact and so is their sum (it is the
            // de-quantized value, an f32), so the FMA returns it exactly.
            let m = _mm512_mul_ps(d, _mm512_set1_ps(-8.0));
            nibbles(p.add(2), d, m)
        }
    }
    unsafe fn load_tail(_: *const u8, _: usize) -> __m512 {
        unreachable!("block rows have no tail")
    }
}

struct Q4_1;
impl Load for Q4_1 {
    const NV: usize = 2;
    const STEP_BYTES: usize = 20;
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn load(p: *const u8, f16: *const f32) -> [__m512; 2] {
        unsafe {
            let (d, m) = (splat_f16(p, f16), splat_f16(p.add(2), f16));
            // n d is exact, so the FMA rounds once, like `n * d + m` in f32.
            nibbles(p.add(4), d, m)
        }
    }
    unsafe fn load_tail(_: *const u8, _: usize) -> __m512 {
        unreachable!("block rows have no tail")
    }
}

/// The canonical reduction tree of [`crate::lanes::hsum16`] on one register.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn hsum(a: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(a);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
    let s1 = _mm256_add_ps(lo, hi); // lanes l + (l + 8)
    let s2 = _mm_add_ps(_mm256_castps256_ps128(s1), _mm256_extractf128_ps::<1>(s1)); // + (l + 4)
    let s3 = _mm_add_ps(s2, _mm_movehl_ps(s2, s2)); // + (l + 2)
    _mm_cvtss_f32(_mm_add_ss(s3, _mm_movehdup_ps(s3))) // lane 0 + lane 1
}

// The transposing reduction: each level adds the two halves of the canonical tree for two
// registers at once and packs the results of both into one register.

/// Tree level 1 (lanes l + (l + 8)) of `a` and `b`: `[a's 8 sums, b's 8 sums]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn level1(a: __m512, b: __m512) -> __m512 {
    _mm512_add_ps(
        _mm512_shuffle_f32x4::<0x44>(a, b),
        _mm512_shuffle_f32x4::<0xee>(a, b),
    )
}

/// Tree level 2 (l + (l + 4)) of two level-1 results `[a | b]`, `[c | d]`: quarters `[a, b, c, d]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn level2(ab: __m512, cd: __m512) -> __m512 {
    _mm512_add_ps(
        _mm512_shuffle_f32x4::<0x88>(ab, cd),
        _mm512_shuffle_f32x4::<0xdd>(ab, cd),
    )
}

/// Tree level 3 (l + (l + 2)) of two level-2 results: quarter k is `[e_k's 2 sums, f_k's 2 sums]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn level3(e: __m512, f: __m512) -> __m512 {
    _mm512_add_ps(
        _mm512_shuffle_ps::<0x44>(e, f),
        _mm512_shuffle_ps::<0xee>(e, f),
    )
}

/// Tree level 4 (lane 0 + lane 1) of two level-3 results: quarter k is `[e_k, f_k, g_k, h_k]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn level4(ef: __m512, gh: __m512) -> __m512 {
    _mm512_add_ps(
        _mm512_shuffle_ps::<0x88>(ef, gh),
        _mm512_shuffle_ps::<0xdd>(ef, gh),
    )
}

/// Reduces `acc[b][r]` (4 x 4): quarter `b` of the result holds outputs `r = 0..4` of row `b`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn reduce_4x4(acc: &[[__m512; 4]; 4]) -> __m512 {
    let c0 = level2(level1(acc[0][0], acc[1][0]), level1(acc[2][0], acc[3][0]));
    let c1 = level2(level1(acc[0][1], acc[1][1]), level1(acc[2][1], acc[3][1]));
    let c2 = level2(level1(acc[0][2], acc[1][2]), level1(acc[2][2], acc[3][2]));
    let c3 = level2(level1(acc[0][3], acc[1][3]), level1(acc[2][3], acc[3][3]));
    level4(level3(c0, c1), level3(c2, c3))
}

/// Reduces four accumulators: lanes 0..4 of the result hold their sums.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn reduce_1x4(acc: &[__m512; 4]) -> __m128 {
    let e = level2(level1(acc[0], acc[1]), level1(acc[2], acc[3]));
    // Levels 3 and 4 within each quarter, then lane 0 of each quarter to the bottom.
    let f = _mm512_add_ps(e, _mm512_shuffle_ps::<0x4e>(e, e));
    let g = _mm512_add_ps(f, _mm512_shuffle_ps::<0xb1>(f, f));
    let idx = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_castps512_ps128(_mm512_permutexvar_ps(idx, g))
}

/// Output rows `r0..r1` for every batch row.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, FMA and F16C, and `a` must describe valid buffers.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
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

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn rows_of<L: Load>(a: &Args, r0: usize, r1: usize) {
    if L::WIDENS && a.batch > BT {
        // Several batch tiles would widen the same weights again and again: widen each row
        // tile once into an f32 panel and run the f32 tiles on it (the same values, so the
        // same bits).
        return super::with_panel(RT * a.cols, |panel| unsafe {
            rows_via_panel::<L>(a, r0, r1, panel)
        });
    }
    let steps = a.cols / (16 * L::NV);
    let rate = Ahead::rate(RT * a.row_bytes, a.batch.div_ceil(BT), steps);
    if a.batch > BT && super::blocked(a) {
        // The accumulators of a block's row tiles between the parts of a long reduction.
        return super::with_carry(SLOTS * BT * RT * 16, |carry| {
            let tiles = |b, bt, r, rt, ahead, part: Part| unsafe {
                let w = a.w.add(r * a.row_bytes);
                let at = Carry {
                    part,
                    slots: carry.as_mut_ptr(),
                };
                if part.whole(steps) {
                    tile_of::<L, false>(a, b, bt, r, rt, w, a.row_bytes, ahead, at)
                } else {
                    tile_of::<L, true>(a, b, bt, r, rt, w, a.row_bytes, ahead, at)
                }
            };
            super::in_blocks(a, (r0, r1), (BT, RT), (steps, rate), tiles)
        });
    }
    let mut r = r0;
    while r < r1 {
        let rt = if r1 - r >= RT { RT } else { 1 };
        let w = unsafe { a.w.add(r * a.row_bytes) };
        let next = Ahead::two_tiles_on(a, r, rt, rate);
        unsafe { batch_tiles::<L>(a, r, rt, w, a.row_bytes, next) };
        r += rt;
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
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
                        _mm512_storeu_ps(dst.add((s * L::NV + j) * 16), *vj);
                    }
                }
                if rem > 0 {
                    let v = L::load_tail(w.add(steps * L::STEP_BYTES), rem);
                    _mm512_mask_storeu_ps(dst.add(steps * 16), tail_mask(rem), v);
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
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
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
        unsafe { tile_of::<L, false>(a, b, bt, r, rt, w, stride, ahead, Carry::NONE) };
        b += bt;
    }
}

/// The tile of batch rows `b..b + bt` (`bt` at most `BT`) x output rows `r..r + rt` (`rt` is
/// `RT` or 1), for the tiles' sizes chosen at compile time.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_of<L: Load, const PARTS: bool>(
    a: &Args,
    b: usize,
    bt: usize,
    r: usize,
    rt: usize,
    w: *const u8,
    stride: usize,
    ahead: Ahead,
    carry: Carry,
) {
    unsafe {
        match (bt, rt) {
            (6, 4) => tile::<L, 6, 4, PARTS>(a, b, r, w, stride, ahead, carry),
            (5, 4) => tile::<L, 5, 4, PARTS>(a, b, r, w, stride, ahead, carry),
            (4, 4) => tile::<L, 4, 4, PARTS>(a, b, r, w, stride, ahead, carry),
            (3, 4) => tile::<L, 3, 4, PARTS>(a, b, r, w, stride, ahead, carry),
            (2, 4) => tile::<L, 2, 4, PARTS>(a, b, r, w, stride, ahead, carry),
            (1, 4) => tile::<L, 1, 4, PARTS>(a, b, r, w, stride, ahead, carry),
            (6, _) => tile::<L, 6, 1, PARTS>(a, b, r, w, stride, ahead, carry),
            (5, _) => tile::<L, 5, 1, PARTS>(a, b, r, w, stride, ahead, carry),
            (4, _) => tile::<L, 4, 1, PARTS>(a, b, r, w, stride, ahead, carry),
            (3, _) => tile::<L, 3, 1, PARTS>(a, b, r, w, stride, ahead, carry),
            (2, _) => tile::<L, 2, 1, PARTS>(a, b, r, w, stride, ahead, carry),
            _ => tile::<L, 1, 1, PARTS>(a, b, r, w, stride, ahead, carry),
        }
    }
}

/// Where a tile's accumulators wait between the parts of a long reduction ([`Part`]): slot
/// `part.slot` of `slots`, `BT * RT` vectors each.
#[derive(Clone, Copy)]
struct Carry {
    part: Part,
    slots: *mut f32,
}

impl Carry {
    /// The whole reduction in one part: nothing waits.
    const NONE: Carry = Carry {
        part: Part {
            from: 0,
            to: 0,
            slot: 0,
        },
        slots: std::ptr::null_mut(),
    };

    fn at(self, b: usize, r: usize) -> *mut f32 {
        self.slots
            .wrapping_add(((self.part.slot * BT + b) * RT + r) * 16)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn save<const B: usize, const R: usize>(self, acc: &[[__m512; R]; B]) {
        for (b, acc_b) in acc.iter().enumerate() {
            for (r, v) in acc_b.iter().enumerate() {
                // SAFETY: the slots hold `SLOTS * BT * RT` vectors (`with_carry`).
                unsafe { _mm512_storeu_ps(self.at(b, r), *v) };
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn load<const B: usize, const R: usize>(self, acc: &mut [[__m512; R]; B]) {
        for (b, acc_b) in acc.iter_mut().enumerate() {
            for (r, v) in acc_b.iter_mut().enumerate() {
                // SAFETY: as in `save`.
                *v = unsafe { _mm512_loadu_ps(self.at(b, r)) };
            }
        }
    }
}

/// Batch rows `b0..b0 + B` x output rows `r0..r0 + R`; weight row `r0 + i` is at `w + i * stride`.
/// With `PARTS` the tile computes the steps `carry.part` of its reduction, its accumulators
/// waiting in `carry` between parts; without, the whole reduction (`carry` unused).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn tile<L: Load, const B: usize, const R: usize, const PARTS: bool>(
    a: &Args,
    b0: usize,
    r0: usize,
    w: *const u8,
    stride: usize,
    ahead: Ahead,
    carry: Carry,
) {
    let cols = a.cols;
    unsafe {
        let x = a.x.add(b0 * cols);
        let mut acc = [[_mm512_setzero_ps(); R]; B];
        let steps = cols / (16 * L::NV);
        let (from, to) = if PARTS {
            (carry.part.from, carry.part.to)
        } else {
            (0, steps)
        };
        if PARTS && from > 0 {
            carry.load(&mut acc);
        }
        let streamed = !PARTS && B == 1 && L::NV == 1 && a.rows * a.row_bytes >= STREAMED_BYTES;
        if streamed {
            // A large f32 or bf16 matrix for one activation row comes from memory: read the
            // tile's rows one after another, each a single sequential stream, which the
            // hardware prefetchers serve at full bandwidth (every output still sees the same
            // FMAs in the same order).
            for (r, acc_r) in acc[0].iter_mut().enumerate() {
                for s in 0..steps {
                    let wv = L::load(w.add(r * stride + s * L::STEP_BYTES), a.f16);
                    let xv = _mm512_loadu_ps(x.add(s * 16));
                    *acc_r = _mm512_fmadd_ps(xv, wv[0], *acc_r);
                }
            }
        }
        // Otherwise the tile's rows side by side, `steps` steps of 16 (or 32) values.
        let side_by_side = if streamed { 0..0 } else { from..to };
        let mut prefetches = ahead.cursor(b0 / BT, steps, side_by_side.start);
        for s in side_by_side {
            prefetches.step();
            let mut wv = [[_mm512_setzero_ps(); 2]; R];
            for (r, v) in wv.iter_mut().enumerate() {
                *v = L::load(w.add(r * stride + s * L::STEP_BYTES), a.f16);
            }
            for v in 0..L::NV {
                for (b, acc_b) in acc.iter_mut().enumerate() {
                    let xv = _mm512_loadu_ps(x.add(b * cols + (s * L::NV + v) * 16));
                    for (acc_br, wr) in acc_b.iter_mut().zip(&wv) {
                        *acc_br = _mm512_fmadd_ps(xv, wr[v], *acc_br);
                    }
                }
            }
        }
        if PARTS && to < steps {
            carry.save(&acc);
            return;
        }
        let rem = cols - steps * 16 * L::NV;
        if rem > 0 {
            let mut wv = [_mm512_setzero_ps(); R];
            for (r, v) in wv.iter_mut().enumerate() {
                *v = L::load_tail(w.add(r * stride + steps * L::STEP_BYTES), rem);
            }
            for (b, acc_b) in acc.iter_mut().enumerate() {
                let xv = _mm512_maskz_loadu_ps(tail_mask(rem), x.add(b * cols + steps * 16));
                for (acc_br, wr) in acc_b.iter_mut().zip(&wv) {
                    *acc_br = _mm512_fmadd_ps(xv, *wr, *acc_br);
                }
            }
        }
        store(a, &acc, b0, r0);
    }
}

/// Reduces a tile's accumulators (four batch rows at a time), adds the bias and writes the
/// outputs.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
unsafe fn store<const B: usize, const R: usize>(
    a: &Args,
    acc: &[[__m512; R]; B],
    b0: usize,
    r0: usize,
) {
    unsafe {
        let out = a.out.add(b0 * a.rows + r0);
        if R == 4 {
            let bias = if a.bias.is_null() {
                _mm_setzero_ps()
            } else {
                _mm_loadu_ps(a.bias.add(r0))
            };
            let mut c = 0;
            while c < B {
                let n = (B - c).min(4);
                let sums: [__m128; 4] = if n == 1 {
                    let z = _mm_setzero_ps();
                    [
                        reduce_1x4(&[acc[c][0], acc[c][1], acc[c][2], acc[c][3]]),
                        z,
                        z,
                        z,
                    ]
                } else {
                    // Missing batch rows are filled with copies of the last one and not stored.
                    let mut rows4 = [[_mm512_setzero_ps(); 4]; 4];
                    for (b, row) in rows4.iter_mut().enumerate() {
                        for (r, v) in row.iter_mut().enumerate() {
                            *v = acc[c + b.min(n - 1)][r];
                        }
                    }
                    let all = reduce_4x4(&rows4);
                    [
                        _mm512_castps512_ps128(all),
                        _mm512_extractf32x4_ps::<1>(all),
                        _mm512_extractf32x4_ps::<2>(all),
                        _mm512_extractf32x4_ps::<3>(all),
                    ]
                };
                for (b, v) in sums.iter().enumerate().take(n) {
                    // Without a bias the sums are stored as they are (+0 would turn -0 into +0).
                    let v = if a.bias.is_null() {
                        *v
                    } else {
                        _mm_add_ps(*v, bias)
                    };
                    _mm_storeu_ps(out.add((c + b) * a.rows), v);
                }
                c += n;
            }
        } else {
            for (b, acc_b) in acc.iter().enumerate() {
                for (r, acc_br) in acc_b.iter().enumerate() {
                    let mut v = hsum(*acc_br);
                    if !a.bias.is_null() {
                        v += *a.bias.add(r0 + r);
                    }
                    *out.add(b * a.rows + r) = v;
                }
            }
        }
    }
}
