//! Patch tokens: a k-means codebook over p x p patches, one token per patch (a 28x28 digit in
//! 4x4 patches is 49 tokens instead of 784). Lossy: decoding pastes each token's codebook patch,
//! and [`crate::codec::ImageCodec::reconstruction_error`] says how much is lost.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use image::{Rgb, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::pixels::luma;
use jielong_core::kmeans::{self, Points};

/// Patch sides a codebook may use (a patch of 8x8 colour pixels is already 192 numbers).
pub const PATCH_SIDES: std::ops::RangeInclusive<u32> = 1..=8;
/// Codebook sizes a model may use.
pub const CODEBOOK_SIZES: std::ops::RangeInclusive<usize> = 2..=4096;
/// At most this many patches (drawn at random with the fit's seed) go into k-means.
const MAX_SAMPLES: usize = 100_000;

/// `k` patches of `patch` x `patch` pixels, each `channels` values (1 grey, 3 RGB) per pixel
/// in raster order.
#[derive(Clone, Debug, PartialEq)]
pub struct Codebook {
    patch: u32,
    channels: u32,
    /// All entries one after another, `dim()` values each.
    values: Vec<u8>,
}

/// `codebook.json` in a model folder.
#[derive(Serialize, Deserialize)]
struct CodebookFile {
    patch: u32,
    channels: u32,
    /// One list per token: the patch's values in raster order, channels interleaved.
    entries: Vec<Vec<u8>>,
}

impl Codebook {
    pub fn new(patch: u32, channels: u32, entries: Vec<Vec<u8>>) -> Result<Self> {
        if !PATCH_SIDES.contains(&patch) {
            bail!(
                "a patch side is {} to {} pixels, not {patch}",
                PATCH_SIDES.start(),
                PATCH_SIDES.end()
            );
        }
        if channels != 1 && channels != 3 {
            bail!("a codebook has 1 (grey) or 3 (colour) channels, not {channels}");
        }
        if entries.is_empty() || entries.len() > *CODEBOOK_SIZES.end() {
            bail!(
                "a codebook has 1 to {} entries, not {}",
                CODEBOOK_SIZES.end(),
                entries.len()
            );
        }
        let dim = (patch * patch * channels) as usize;
        if let Some((i, e)) = entries.iter().enumerate().find(|(_, e)| e.len() != dim) {
            bail!(
                "codebook entry {i} has {} values, a {patch}x{patch} patch with {channels} channel(s) has {dim}",
                e.len()
            );
        }
        Ok(Self {
            patch,
            channels,
            values: entries.concat(),
        })
    }

    /// Fits `k` patches with k-means over the patches of `images` (all the same size, a
    /// multiple of `patch` on each side). Fewer distinct patches than `k` give a smaller book.
    pub fn fit<'a>(
        images: impl IntoIterator<Item = &'a RgbImage>,
        patch: u32,
        channels: u32,
        k: usize,
        seed: u64,
    ) -> Result<Self> {
        let images: Vec<&RgbImage> = images.into_iter().collect();
        if !CODEBOOK_SIZES.contains(&k) {
            bail!(
                "a codebook has {} to {} entries, not {k}",
                CODEBOOK_SIZES.start(),
                CODEBOOK_SIZES.end()
            );
        }
        if !PATCH_SIDES.contains(&patch) {
            bail!(
                "a patch side is {} to {} pixels, not {patch}",
                PATCH_SIDES.start(),
                PATCH_SIDES.end()
            );
        }
        if channels != 1 && channels != 3 {
            bail!("a codebook has 1 (grey) or 3 (colour) channels, not {channels}");
        }
        let Some(first) = images.first() else {
            bail!("cannot fit a codebook: there are no training images")
        };
        let (w, h) = first.dimensions();
        if w == 0 || h == 0 || !w.is_multiple_of(patch) || !h.is_multiple_of(patch) {
            bail!(
                "{patch}x{patch} patches do not tile {w}x{h} images: choose a patch side that divides both"
            );
        }
        if let Some(bad) = images.iter().find(|img| img.dimensions() != (w, h)) {
            bail!(
                "training images differ in size ({}x{} and {w}x{h})",
                bad.width(),
                bad.height()
            );
        }
        let per_image = ((w / patch) * (h / patch)) as usize;
        let total = images.len() * per_image;
        // Which patches to learn from: all of them, or a seeded sample of a large dataset.
        let chosen: Vec<usize> = if total <= MAX_SAMPLES {
            (0..total).collect()
        } else {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0f9a_7c00);
            let mut s = rand::seq::index::sample(&mut rng, total, MAX_SAMPLES).into_vec();
            s.sort_unstable();
            s
        };
        let mut counts: HashMap<Vec<u8>, u32> = HashMap::new();
        let mut buf = Vec::new();
        let cols = w / patch;
        for i in chosen {
            let (img, cell) = (&images[i / per_image], (i % per_image) as u32);
            read_patch(
                img,
                (cell % cols) * patch,
                (cell / cols) * patch,
                patch,
                channels,
                &mut buf,
            );
            *counts.entry(buf.clone()).or_insert(0) += 1;
        }
        // Sorted, so that the fit does not depend on the hash map's order.
        let mut distinct: Vec<(Vec<u8>, u32)> = counts.into_iter().collect();
        distinct.sort_unstable();
        let dim = (patch * patch * channels) as usize;
        let points = Points {
            dim,
            coords: distinct
                .iter()
                .flat_map(|(p, _)| p.iter().map(|&v| v as f32))
                .collect(),
            weights: distinct.iter().map(|&(_, n)| n as f64).collect(),
        };
        let centres = kmeans::fit(&points, k, seed);
        let mut entries: Vec<Vec<u8>> = centres
            .chunks_exact(dim)
            .map(|c| {
                c.iter()
                    .map(|&v| v.round().clamp(0.0, 255.0) as u8)
                    .collect()
            })
            .collect();
        // Darkest first, so that the token order means something when read.
        entries.sort_by_key(|e| (e.iter().map(|&v| v as u32).sum::<u32>(), e.clone()));
        entries.dedup();
        Self::new(patch, channels, entries)
    }

    pub fn patch(&self) -> u32 {
        self.patch
    }

    pub fn channels(&self) -> u32 {
        self.channels
    }

    /// Values in one entry: patch x patch x channels.
    pub fn dim(&self) -> usize {
        (self.patch * self.patch * self.channels) as usize
    }

    pub fn len(&self) -> usize {
        self.values.len() / self.dim()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn entry(&self, index: u32) -> Option<&[u8]> {
        let dim = self.dim();
        self.values
            .get(index as usize * dim..(index as usize + 1) * dim)
    }

    /// The entry nearest to a patch's values (squared distance; the first of equals wins).
    pub fn nearest(&self, values: &[u8]) -> u32 {
        let mut best = (0u32, u32::MAX);
        for (i, e) in self.values.chunks_exact(self.dim()).enumerate() {
            let mut d = 0u32;
            for (&a, &b) in e.iter().zip(values) {
                let diff = a as i32 - b as i32;
                d += (diff * diff) as u32;
                if d >= best.1 {
                    break; // already worse than the best: skip the rest of this entry
                }
            }
            if d < best.1 {
                best = (i as u32, d);
            }
        }
        best.0
    }

    /// Writes `codebook.json` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let file = CodebookFile {
            patch: self.patch,
            channels: self.channels,
            entries: self
                .values
                .chunks_exact(self.dim())
                .map(<[u8]>::to_vec)
                .collect(),
        };
        jielong_core::write_atomic(path, &serde_json::to_vec(&file)?)
    }

    /// Reads a codebook written by [`Codebook::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read the codebook file {}: the model folder is incomplete",
                path.display()
            )
        })?;
        let file: CodebookFile = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a codebook file (expected {{\"patch\", \"channels\", \"entries\"}})",
                path.display()
            )
        })?;
        Self::new(file.patch, file.channels, file.entries)
            .with_context(|| format!("bad codebook in {}", path.display()))
    }
}

/// The values of the `patch` x `patch` square at (`x0`, `y0`) into `out`: grey (luma) or RGB.
pub(crate) fn read_patch(
    img: &RgbImage,
    x0: u32,
    y0: u32,
    patch: u32,
    channels: u32,
    out: &mut Vec<u8>,
) {
    out.clear();
    for y in y0..y0 + patch {
        for x in x0..x0 + patch {
            let px = *img.get_pixel(x, y);
            if channels == 1 {
                out.push(luma(px));
            } else {
                out.extend_from_slice(&px.0);
            }
        }
    }
}

/// Paints `values` (as read by [`read_patch`]) at (`x0`, `y0`).
pub(crate) fn write_patch(
    img: &mut RgbImage,
    x0: u32,
    y0: u32,
    patch: u32,
    channels: u32,
    values: &[u8],
) {
    let c = channels as usize;
    for dy in 0..patch {
        for dx in 0..patch {
            let i = (dy * patch + dx) as usize * c;
            let px = if c == 1 {
                Rgb([values[i]; 3])
            } else {
                Rgb([values[i], values[i + 1], values[i + 2]])
            };
            img.put_pixel(x0 + dx, y0 + dy, px);
        }
    }
}
