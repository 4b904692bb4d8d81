//! Which instruction set the kernels use, chosen once at run time.
//!
//! Every kernel exists in up to three builds of the same arithmetic: AVX-512 (F, BW, VL with
//! FMA and F16C), AVX2 with FMA and F16C, and portable Rust. All three perform the same
//! sequence of IEEE operations per output (fused multiply-adds in a fixed lane order, a fixed
//! reduction tree), so they give the same bits; the plain entry points use [`Isa::best`] and
//! the `*_with` variants let tests and benchmarks force a path.

use std::sync::OnceLock;

/// An instruction-set path of the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust (what runs on other architectures).
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 F + BW + VL (+ FMA, F16C).
    Avx512,
}

impl Isa {
    /// All paths, slowest first.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    /// The fastest path this CPU supports (detected once, then cached).
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            if Isa::Avx512.is_available() {
                Isa::Avx512
            } else if Isa::Avx2.is_available() {
                Isa::Avx2
            } else {
                Isa::Scalar
            }
        })
    }

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.is_available()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The paths this CPU can run, slowest first.
    pub fn available() -> impl Iterator<Item = Isa> {
        Isa::ALL.into_iter().filter(|isa| isa.is_available())
    }

    /// Panics unless the path can run here: forcing an unsupported path would execute illegal
    /// instructions, so the `*_with` entry points check this first.
    pub(crate) fn assert_available(self) {
        assert!(
            self.is_available(),
            "{self:?} kernels are not supported by this CPU"
        );
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// Defines `fn $name(isa: Isa, args…)` running the `#[inline(always)] unsafe fn $body<V: V16>`
/// compiled three times: with AVX-512 vectors, with AVX2 vectors and portably. Each lane of a
/// [`crate::simd::V16`] operation rounds like the scalar operation, so the three builds give
/// the same bits.
macro_rules! isa_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$meta])*
        $vis fn $name(isa: $crate::isa::Isa, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                unsafe { $body::<$crate::simd::Avx512>($($arg),*) }
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                unsafe { $body::<$crate::simd::Avx2>($($arg),*) }
            }
            isa.assert_available();
            // SAFETY: `assert_available` checked that the CPU has the path's features.
            unsafe {
                match isa {
                    $crate::isa::Isa::Scalar => $body::<$crate::simd::Scalar>($($arg),*),
                    #[cfg(target_arch = "x86_64")]
                    $crate::isa::Isa::Avx2 => avx2($($arg),*),
                    #[cfg(target_arch = "x86_64")]
                    $crate::isa::Isa::Avx512 => avx512($($arg),*),
                    #[cfg(not(target_arch = "x86_64"))]
                    _ => unreachable!("only the portable path exists on this architecture"),
                }
            }
        }
    };
}
pub(crate) use isa_dispatch;
