//! A k-nearest-neighbour digit classifier, to measure whether generated digits are the class
//! that was asked for. Pixels are binarised (luma >= 128) and packed 64 to a word, so the
//! distance between two images is a Hamming distance: XOR and popcount over 13 words for a
//! 28x28 digit, which makes comparing against all 60,000 MNIST training digits cheap.

use anyhow::{Result, bail};
use image::RgbImage;
use jielong_core::{Accuracy, par_map};

use crate::datasets::{ImageDataset, LabelledImage};
use crate::pixels::luma;

/// Neighbours that vote.
pub const K: usize = 5;

pub struct DigitClassifier {
    width: u32,
    height: u32,
    /// Words per image.
    words: usize,
    /// The reference images' bits, `words` words each.
    bits: Vec<u64>,
    labels: Vec<usize>,
    classes: Vec<String>,
}

impl DigitClassifier {
    /// Keeps `images` (all labelled, all the same size) as the references.
    pub fn train(images: &[LabelledImage], classes: &[String]) -> Result<Self> {
        let Some(first) = images.first() else {
            bail!("the classifier needs reference images")
        };
        if classes.is_empty() {
            bail!("the classifier needs class names");
        }
        let (width, height) = first.image.dimensions();
        let words = ((width * height) as usize).div_ceil(64);
        let mut out = Self {
            width,
            height,
            words,
            bits: Vec::with_capacity(images.len() * words),
            labels: Vec::with_capacity(images.len()),
            classes: classes.to_vec(),
        };
        for (i, l) in images.iter().enumerate() {
            let label = match l.label {
                Some(c) if c < classes.len() => c,
                Some(c) => bail!(
                    "reference image {i} has label {c}, but there are {} classes",
                    classes.len()
                ),
                None => bail!(
                    "reference image {i} has no label: the classifier needs a labelled dataset"
                ),
            };
            let packed = out.pack(&l.image)?;
            out.bits.extend(packed);
            out.labels.push(label);
        }
        Ok(out)
    }

    /// Uses a dataset's training split as the references, or its held-out split where it has
    /// no training images (an MNIST folder with only its t10k files).
    pub fn from_dataset(data: &ImageDataset) -> Result<Self> {
        let references = if data.train.is_empty() {
            &data.heldout
        } else {
            &data.train
        };
        Self::train(references, &data.classes)
    }

    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Size of the images it compares.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The class index of one image: a majority vote of its 5 nearest references, a tie going
    /// to the tied class with the nearest reference.
    pub fn classify(&self, img: &RgbImage) -> Result<usize> {
        let query = self.pack(img)?;
        let mut best: Vec<(u32, usize)> = Vec::with_capacity(K + 1); // (distance, reference), sorted
        for (r, reference) in self.bits.chunks_exact(self.words).enumerate() {
            let d: u32 = reference
                .iter()
                .zip(&query)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            if best.len() < K || d < best[best.len() - 1].0 {
                let at = best.partition_point(|&(bd, _)| bd <= d);
                best.insert(at, (d, r));
                best.truncate(K);
            }
        }
        let mut votes = vec![0usize; self.classes.len()];
        for &(_, r) in &best {
            votes[self.labels[r]] += 1;
        }
        let top = votes.iter().copied().max().unwrap_or(0);
        // `best` is nearest first, so the first tied class met is the one with the nearest image.
        let winner = best
            .iter()
            .map(|&(_, r)| self.labels[r])
            .find(|&c| votes[c] == top);
        winner.ok_or_else(|| anyhow::anyhow!("the classifier has no reference images"))
    }

    /// Classifies many images, on all cores.
    pub fn classify_many(&self, images: &[RgbImage]) -> Result<Vec<usize>> {
        par_map(images, |_, img| self.classify(img))
    }

    /// How many of `images` are recognised as their `wanted` class, per class and overall.
    pub fn evaluate(&self, images: &[RgbImage], wanted: &[usize]) -> Result<Accuracy> {
        if images.len() != wanted.len() {
            bail!(
                "{} images but {} wanted classes",
                images.len(),
                wanted.len()
            );
        }
        let got: Vec<Option<usize>> = self.classify_many(images)?.into_iter().map(Some).collect();
        Accuracy::tally(&self.classes, wanted, &got)
    }

    /// The image's binarised pixels, 64 to a word, in raster order.
    fn pack(&self, img: &RgbImage) -> Result<Vec<u64>> {
        if img.dimensions() != (self.width, self.height) {
            bail!(
                "the classifier compares {}x{} images, this one is {}x{}",
                self.width,
                self.height,
                img.width(),
                img.height()
            );
        }
        let mut words = vec![0u64; self.words];
        for (i, px) in img.pixels().enumerate() {
            if luma(*px) >= 128 {
                words[i / 64] |= 1 << (i % 64);
            }
        }
        Ok(words)
    }
}
