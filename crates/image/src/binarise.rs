//! Black-and-white images from grey ones, as the MNIST literature does it.
//!
//! Thresholding (a pixel is on when its intensity is at least 128) gives one fixed set;
//! stochastic binarisation turns each pixel on with probability intensity / 255, a harder and
//! noisier set on which published likelihoods (MADE, EoNADE, PixelCNN) are reported. Training
//! draws it afresh each time a digit is used ("dynamic"); evaluation draws it once, from a
//! seed written in the model card. Images that are already 0/255 come out unchanged.

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::pixels::luma;

/// How grey pixels become black or white.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binarise {
    /// On when the intensity is at least 128.
    Threshold,
    /// On with probability intensity / 255, drawn from this seed.
    Stochastic { seed: u64 },
}

impl Binarise {
    /// The binarised image (0 or 255 in every channel). `index` picks a stochastic image's own
    /// draw, so the result depends only on (seed, index), never on the order of the work.
    pub fn apply(self, img: &RgbImage, index: u64) -> RgbImage {
        match self {
            Binarise::Threshold => map(img, |v| v >= 128),
            Binarise::Stochastic { seed } => {
                let mut rng =
                    ChaCha8Rng::seed_from_u64(seed ^ index.wrapping_mul(0xA076_1D64_78BD_642F));
                map(img, |v| rng.gen_range(0..255u32) < v as u32)
            }
        }
    }
}

fn map(img: &RgbImage, mut on: impl FnMut(u8) -> bool) -> RgbImage {
    let mut out = RgbImage::new(img.width(), img.height());
    for (o, px) in out.pixels_mut().zip(img.pixels()) {
        let v = if on(luma(*px)) { 255 } else { 0 };
        *o = Rgb([v, v, v]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(values: &[u8]) -> RgbImage {
        RgbImage::from_fn(values.len() as u32, 1, |x, _| {
            let v = values[x as usize];
            Rgb([v, v, v])
        })
    }

    #[test]
    fn binary_images_are_unchanged_and_draws_follow_the_intensity() {
        let binary = grey(&[0, 255, 255, 0]);
        assert_eq!(Binarise::Stochastic { seed: 3 }.apply(&binary, 0), binary);
        assert_eq!(
            Binarise::Threshold.apply(&grey(&[127, 128]), 0),
            grey(&[0, 255])
        );
        let mid = grey(&[64; 4000]);
        let drawn = Binarise::Stochastic { seed: 1 }.apply(&mid, 7);
        let on = drawn.pixels().filter(|p| p[0] == 255).count() as f64 / 4000.0;
        assert!((on - 64.0 / 255.0).abs() < 0.03, "{on}");
        assert_eq!(drawn, Binarise::Stochastic { seed: 1 }.apply(&mid, 7));
        assert_ne!(drawn, Binarise::Stochastic { seed: 1 }.apply(&mid, 8));
    }
}
