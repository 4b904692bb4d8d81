//! Buffers that start on a cache line.
//!
//! The kernels load 64 bytes at a time (16 f32 lanes). A load from an address that is not a
//! multiple of 64 touches two cache lines, and a heap `Vec` is only 16-byte aligned: in cache, a
//! batch-16 product with its activations 16 bytes off a line was 15% slower, with its weights off
//! 21%, with both 29% (BENCHMARKS.md). Activations, KV blocks and the weights converted at load
//! live in an [`Aligned`] instead; weights mapped from a file stay where the file puts them (GGUF
//! aligns tensors to 32 bytes or more).

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

/// One cache line of storage.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

const LINE: usize = std::mem::size_of::<Line>();

/// Element types an [`Aligned`] may hold: plain numbers for which every bit pattern, zero
/// included, is a valid value.
pub trait Plain: Copy + Default + 'static + private::Sealed {}
impl Plain for f32 {}
impl Plain for u8 {}

mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u8 {}
}

/// A growable buffer of `T` whose first element is 64-byte aligned. It derefs to `[T]`.
pub struct Aligned<T: Plain> {
    lines: Vec<Line>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Plain> Aligned<T> {
    const PER_LINE: usize = LINE / std::mem::size_of::<T>();

    /// An empty buffer; allocates nothing.
    pub const fn new() -> Self {
        Aligned {
            lines: Vec::new(),
            len: 0,
            _t: PhantomData,
        }
    }

    /// `len` zeros (fresh lines are zero already: nothing is written twice).
    pub fn zeroed(len: usize) -> Self {
        Aligned {
            lines: vec![Line([0; LINE]); len.div_ceil(Self::PER_LINE)],
            len,
            _t: PhantomData,
        }
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[T]) -> Self {
        let mut a = Self::zeroed(values.len());
        a.copy_from_slice(values);
        a
    }

    /// Shortens to `len` or grows to it with copies of `value`, keeping the values before.
    pub fn resize(&mut self, len: usize, value: T) {
        let old = self.len;
        self.lines
            .resize(len.div_ceil(Self::PER_LINE), Line([0; LINE]));
        self.len = len;
        if len > old {
            self[old..].fill(value);
        }
    }
}

impl<T: Plain> Default for Aligned<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Plain> Clone for Aligned<T> {
    fn clone(&self) -> Self {
        Aligned {
            lines: self.lines.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Plain + std::fmt::Debug> std::fmt::Debug for Aligned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Plain> Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the lines hold at least `len` values of `T` (whose size divides 64 and whose
        // alignment is at most 64); every bit pattern is a valid `T` (`Plain`).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.len) }
    }
}

impl<T: Plain> DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the view unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_line_and_keeps_values_when_resized() {
        let mut a = Aligned::<f32>::new();
        assert!(a.is_empty());
        for (len, fill) in [(1, 1.0), (17, 2.0), (40, 3.0), (5, 4.0), (33, 5.0)] {
            let before: Vec<f32> = a.to_vec();
            a.resize(len, fill);
            assert_eq!(a.len(), len);
            assert_eq!(a.as_ptr() as usize % 64, 0);
            let kept = before.len().min(len);
            assert_eq!(&a[..kept], &before[..kept]);
            assert!(a[kept..].iter().all(|&v| v == fill));
        }
        let z = Aligned::<f32>::zeroed(33);
        assert_eq!((z.len(), z.as_ptr() as usize % 64), (33, 0));
        assert!(z.iter().all(|&v| v.to_bits() == 0));
        let b = Aligned::from_slice(&[7u8; 100]);
        assert_eq!((b.len(), b.as_ptr() as usize % 64), (100, 0));
        assert!(b.iter().all(|&v| v == 7));
        assert_eq!(&b.clone()[..], &b[..]);
    }
}
