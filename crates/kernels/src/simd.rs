//! Sixteen f32 lanes as one value, for kernels written once and compiled per instruction set.
//!
//! The compiler's auto-vectoriser is free to pick which loop to vectorise, and on the nested
//! loops of attention it chose gathers across the outer loop; kernels written with [`V16`] say
//! exactly which 16 values go together. [`Scalar`] is an array, [`Avx2`] two ymm registers and
//! [`Avx512`] one zmm register, and every operation rounds the same way in all three (each lane
//! is the scalar operation), so the three builds of a kernel give the same bits.
//!
//! The methods are `unsafe` because the SIMD types may only be used on CPUs with their
//! features: callers run them inside functions compiled for those features, after checking the
//! CPU ([`crate::isa::Isa::assert_available`]).

use crate::lanes;

/// Sixteen f32 lanes.
pub(crate) trait V16: Copy {
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    /// Loads 16 values from `p` (unaligned).
    unsafe fn load(p: *const f32) -> Self;
    /// Loads `n < 16` values from `p` (reading no others); the other lanes are +0.
    unsafe fn load_partial(p: *const f32, n: usize) -> Self;
    /// Stores the 16 lanes at `p` (unaligned).
    unsafe fn store(self, p: *mut f32);
    /// Stores the first `n < 16` lanes at `p` (writing no others).
    unsafe fn store_partial(self, p: *mut f32, n: usize);
    unsafe fn add(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
    unsafe fn sub(self, o: Self) -> Self;
    unsafe fn div(self, o: Self) -> Self;
    /// `self * b + c`, rounded once.
    unsafe fn fma(self, b: Self, c: Self) -> Self;
    /// Lane-wise `if self > o { self } else { o }`.
    unsafe fn max(self, o: Self) -> Self;
    /// Lanes `n..16` replaced by `fill`.
    unsafe fn keep_first(self, n: usize, fill: f32) -> Self;
    /// [`lanes::exp`] of each lane.
    unsafe fn exp(self) -> Self;
    /// The canonical sum of the lanes ([`lanes::hsum16`]).
    unsafe fn hsum(self) -> f32;
    /// The largest lane.
    unsafe fn hmax(self) -> f32;
}

/// The portable lanes.
#[derive(Clone, Copy)]
pub(crate) struct Scalar([f32; 16]);

impl Scalar {
    #[inline(always)]
    fn map(self, f: impl Fn(f32) -> f32) -> Self {
        Scalar(self.0.map(f))
    }
    #[inline(always)]
    fn zip(self, o: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        Scalar(std::array::from_fn(|l| f(self.0[l], o.0[l])))
    }
}

impl V16 for Scalar {
    #[inline(always)]
    unsafe fn zero() -> Self {
        Scalar([0.0; 16])
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Scalar([x; 16])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller passes 16 readable values.
        Scalar(unsafe { std::ptr::read_unaligned(p.cast::<[f32; 16]>()) })
    }
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> Self {
        let mut v = [0f32; 16];
        // SAFETY: the caller passes `n` readable values.
        unsafe { std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), n) };
        Scalar(v)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller passes room for 16 values.
        unsafe { std::ptr::write_unaligned(p.cast::<[f32; 16]>(), self.0) }
    }
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, n: usize) {
        // SAFETY: the caller passes room for `n` values.
        unsafe { std::ptr::copy_nonoverlapping(self.0.as_ptr(), p, n) }
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        self.zip(o, |a, b| a + b)
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        self.zip(o, |a, b| a * b)
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        self.zip(o, |a, b| a - b)
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        self.zip(o, |a, b| a / b)
    }
    #[inline(always)]
    unsafe fn fma(self, b: Self, c: Self) -> Self {
        Scalar(std::array::from_fn(|l| self.0[l].mul_add(b.0[l], c.0[l])))
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        self.zip(o, |a, b| if a > b { a } else { b })
    }
    #[inline(always)]
    unsafe fn keep_first(self, n: usize, fill: f32) -> Self {
        Scalar(std::array::from_fn(
            |l| if l < n { self.0[l] } else { fill },
        ))
    }
    #[inline(always)]
    unsafe fn exp(self) -> Self {
        self.map(lanes::exp)
    }
    #[inline(always)]
    unsafe fn hsum(self) -> f32 {
        lanes::hsum16(&self.0)
    }
    #[inline(always)]
    unsafe fn hmax(self) -> f32 {
        self.0
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::V16;

    // The constants of `lanes::exp`.
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0;
    const POLY: [f32; 6] = [
        1.987_569_1e-4,
        1.398_2e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];

    /// Two ymm registers: lanes 0-7 and 8-15.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2([__m256; 2]);

    impl Avx2 {
        /// Lane masks (all ones where the lane index is below `n`) of both halves.
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        fn masks(n: usize) -> (__m256i, __m256i) {
            let n = _mm256_set1_epi32(n.min(16) as i32);
            let lo = _mm256_cmpgt_epi32(n, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            let hi = _mm256_cmpgt_epi32(n, _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15));
            (lo, hi)
        }

        #[target_feature(enable = "avx2,fma")]
        #[inline]
        fn exp8(x: __m256) -> __m256 {
            let underflow = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.0));
            // clamp keeping NaN: max(lo, x) returns x when x is NaN, and so does min(hi, _).
            let xc = _mm256_min_ps(
                _mm256_set1_ps(88.0),
                _mm256_max_ps(_mm256_set1_ps(-87.0), x),
            );
            let t = _mm256_fmadd_ps(xc, _mm256_set1_ps(LOG2E), _mm256_set1_ps(ROUND));
            let n = _mm256_sub_ps(t, _mm256_set1_ps(ROUND));
            let ni = _mm256_sub_epi32(
                _mm256_castps_si256(t),
                _mm256_set1_epi32(ROUND.to_bits() as i32),
            );
            let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), xc);
            let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
            let mut p = _mm256_set1_ps(POLY[0]);
            for c in &POLY[1..] {
                p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
            }
            let y = _mm256_add_ps(
                _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r),
                _mm256_set1_ps(1.0),
            );
            let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                ni,
                _mm256_set1_epi32(127),
            )));
            _mm256_andnot_ps(underflow, _mm256_mul_ps(y, scale))
        }
    }

    impl V16 for Avx2 {
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn zero() -> Self {
            Avx2([_mm256_setzero_ps(); 2])
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn splat(x: f32) -> Self {
            Avx2([_mm256_set1_ps(x); 2])
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller passes 16 readable values.
            unsafe { Avx2([_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))]) }
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn load_partial(p: *const f32, n: usize) -> Self {
            let (lo, hi) = Avx2::masks(n);
            // SAFETY: masked-off lanes are not read.
            unsafe { Avx2([_mm256_maskload_ps(p, lo), _mm256_maskload_ps(p.add(8), hi)]) }
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller passes room for 16 values.
            unsafe {
                _mm256_storeu_ps(p, self.0[0]);
                _mm256_storeu_ps(p.add(8), self.0[1]);
            }
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn store_partial(self, p: *mut f32, n: usize) {
            let (lo, hi) = Avx2::masks(n);
            // SAFETY: masked-off lanes are not written.
            unsafe {
                _mm256_maskstore_ps(p, lo, self.0[0]);
                _mm256_maskstore_ps(p.add(8), hi, self.0[1]);
            }
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn add(self, o: Self) -> Self {
            Avx2([
                _mm256_add_ps(self.0[0], o.0[0]),
                _mm256_add_ps(self.0[1], o.0[1]),
            ])
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn mul(self, o: Self) -> Self {
            Avx2([
                _mm256_mul_ps(self.0[0], o.0[0]),
                _mm256_mul_ps(self.0[1], o.0[1]),
            ])
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn sub(self, o: Self) -> Self {
            Avx2([
                _mm256_sub_ps(self.0[0], o.0[0]),
                _mm256_sub_ps(self.0[1], o.0[1]),
            ])
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn div(self, o: Self) -> Self {
            Avx2([
                _mm256_div_ps(self.0[0], o.0[0]),
                _mm256_div_ps(self.0[1], o.0[1]),
            ])
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn fma(self, b: Self, c: Self) -> Self {
            Avx2([
                _mm256_fmadd_ps(self.0[0], b.0[0], c.0[0]),
                _mm256_fmadd_ps(self.0[1], b.0[1], c.0[1]),
            ])
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn max(self, o: Self) -> Self {
            // vmaxps(a, b) is `a > b ? a : b`.
            Avx2([
                _mm256_max_ps(self.0[0], o.0[0]),
                _mm256_max_ps(self.0[1], o.0[1]),
            ])
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn keep_first(self, n: usize, fill: f32) -> Self {
            let (lo, hi) = Avx2::masks(n);
            let f = _mm256_set1_ps(fill);
            Avx2([
                _mm256_blendv_ps(f, self.0[0], _mm256_castsi256_ps(lo)),
                _mm256_blendv_ps(f, self.0[1], _mm256_castsi256_ps(hi)),
            ])
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn exp(self) -> Self {
            Avx2([Avx2::exp8(self.0[0]), Avx2::exp8(self.0[1])])
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn hsum(self) -> f32 {
            let s1 = _mm256_add_ps(self.0[0], self.0[1]); // lanes l + (l + 8)
            let s2 = _mm_add_ps(_mm256_castps256_ps128(s1), _mm256_extractf128_ps::<1>(s1)); // + (l + 4)
            let s3 = _mm_add_ps(s2, _mm_movehl_ps(s2, s2)); // + (l + 2)
            _mm_cvtss_f32(_mm_add_ss(s3, _mm_movehdup_ps(s3))) // lane 0 + lane 1
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn hmax(self) -> f32 {
            let m = _mm256_max_ps(self.0[0], self.0[1]);
            let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
            let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
        }
    }

    /// One zmm register.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512(__m512);

    impl V16 for Avx512 {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn zero() -> Self {
            Avx512(_mm512_setzero_ps())
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn splat(x: f32) -> Self {
            Avx512(_mm512_set1_ps(x))
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller passes 16 readable values.
            unsafe { Avx512(_mm512_loadu_ps(p)) }
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn load_partial(p: *const f32, n: usize) -> Self {
            // SAFETY: masked-off lanes are not read.
            unsafe {
                Avx512(_mm512_maskz_loadu_ps(
                    ((1u32 << n.min(16)) - 1) as __mmask16,
                    p,
                ))
            }
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller passes room for 16 values.
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn store_partial(self, p: *mut f32, n: usize) {
            // SAFETY: masked-off lanes are not written.
            unsafe { _mm512_mask_storeu_ps(p, ((1u32 << n.min(16)) - 1) as __mmask16, self.0) }
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn add(self, o: Self) -> Self {
            Avx512(_mm512_add_ps(self.0, o.0))
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn mul(self, o: Self) -> Self {
            Avx512(_mm512_mul_ps(self.0, o.0))
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn sub(self, o: Self) -> Self {
            Avx512(_mm512_sub_ps(self.0, o.0))
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn div(self, o: Self) -> Self {
            Avx512(_mm512_div_ps(self.0, o.0))
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn fma(self, b: Self, c: Self) -> Self {
            Avx512(_mm512_fmadd_ps(self.0, b.0, c.0))
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn max(self, o: Self) -> Self {
            Avx512(_mm512_max_ps(self.0, o.0))
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn keep_first(self, n: usize, fill: f32) -> Self {
            let keep = ((1u32 << n.min(16)) - 1) as __mmask16;
            Avx512(_mm512_mask_blend_ps(keep, _mm512_set1_ps(fill), self.0))
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn exp(self) -> Self {
            let x = self.0;
            let underflow = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(-87.0));
            // clamp keeping NaN: max(lo, x) returns x when x is NaN, and so does min(hi, _).
            let xc = _mm512_min_ps(
                _mm512_set1_ps(88.0),
                _mm512_max_ps(_mm512_set1_ps(-87.0), x),
            );
            let t = _mm512_fmadd_ps(xc, _mm512_set1_ps(LOG2E), _mm512_set1_ps(ROUND));
            let n = _mm512_sub_ps(t, _mm512_set1_ps(ROUND));
            let ni = _mm512_sub_epi32(
                _mm512_castps_si512(t),
                _mm512_set1_epi32(ROUND.to_bits() as i32),
            );
            let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), xc);
            let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), r);
            let mut p = _mm512_set1_ps(POLY[0]);
            for c in &POLY[1..] {
                p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
            }
            let y = _mm512_add_ps(
                _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r),
                _mm512_set1_ps(1.0),
            );
            let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
                ni,
                _mm512_set1_epi32(127),
            )));
            Avx512(_mm512_maskz_mov_ps(!underflow, _mm512_mul_ps(y, scale)))
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn hsum(self) -> f32 {
            let a = self.0;
            let lo = _mm512_castps512_ps256(a);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
            let s1 = _mm256_add_ps(lo, hi); // lanes l + (l + 8)
            let s2 = _mm_add_ps(_mm256_castps256_ps128(s1), _mm256_extractf128_ps::<1>(s1)); // + (l + 4)
            let s3 = _mm_add_ps(s2, _mm_movehl_ps(s2, s2)); // + (l + 2)
            _mm_cvtss_f32(_mm_add_ss(s3, _mm_movehdup_ps(s3))) // lane 0 + lane 1
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        #[inline]
        unsafe fn hmax(self) -> f32 {
            let a = self.0;
            let lo = _mm512_castps512_ps256(a);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
            let m = _mm256_max_ps(lo, hi);
            let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
            let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
        }
    }
}
