//! The fixed arithmetic every path shares: 16 lanes of fused multiply-adds, one reduction tree,
//! one exp. ([`crate::simd::V16`] holds 16 lanes in registers for each instruction set.)
//!
//! A dot product over `i` keeps 16 partial sums; element `i` always goes to lane `i % 16`
//! (a missing tail element counts as `0 * 0`, which leaves a partial sum unchanged: partial sums
//! start at +0 and an FMA never turns +0 into -0). The 16 partial sums are combined by
//! [`hsum16`]'s tree. AVX-512 keeps the 16 lanes in one register, AVX2 in two, the portable
//! code in an array; the bits are the same everywhere, and they do not depend on which other
//! rows or outputs are computed alongside.

/// Lanes of every dot product.
pub(crate) const LANES: usize = 16;

/// The one reduction tree: lanes l and l+8, then l and l+4, then l and l+2, then 0 and 1.
#[inline(always)]
pub(crate) fn hsum16(a: &[f32; LANES]) -> f32 {
    let mut s1 = [0f32; 8];
    for l in 0..8 {
        s1[l] = a[l] + a[l + 8];
    }
    let s2 = [s1[0] + s1[4], s1[1] + s1[5], s1[2] + s1[6], s1[3] + s1[7]];
    let s3 = [s2[0] + s2[2], s2[1] + s2[3]];
    s3[0] + s3[1]
}

/// e^x to about 2 ulp, written so that a loop of it vectorises (no table, no libm call) and
/// gives the same bits on every path. Returns 0 below -87 (the softmax of a masked score) and
/// saturates at e^88 above 88; NaN stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two (Cody-Waite), so that x - n ln 2 is exact enough.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let underflow = x < -87.0;
    let xc = x.clamp(-87.0, 88.0);
    let t = xc.mul_add(LOG2E, ROUND);
    let n = t - ROUND;
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = n.mul_add(-LN2_HI, xc);
    let r = n.mul_add(-LN2_LO, r);
    // Cephes' minimax polynomial for e^r on [-ln2/2, ln2/2].
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_2e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 5e-1);
    let y = p.mul_add(r * r, r) + 1.0;
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    if underflow { 0.0 } else { y * scale }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_close_to_libm() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn hsum_tree_is_the_documented_one() {
        // Values whose sum depends on the order: the tree pairs lane l with l + 8 first.
        let mut a = [0f32; 16];
        a[0] = 1e8;
        a[8] = -1e8;
        a[1] = 1.0;
        assert_eq!(hsum16(&a), 1.0);
        let mut b = [0f32; 16];
        b[0] = 1e8;
        b[1] = -1e8;
        b[8] = 1.0;
        // (1e8 + 1) rounds to 1e8, then cancels with -1e8 at the last level: 0, not 1.
        assert_eq!(hsum16(&b), 0.0);
    }
}
