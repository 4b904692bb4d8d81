//! An Image-GPT-style colour palette: k-means over the training pixels, each pixel then the index
//! of its nearest palette colour. One token per pixel keeps the sequence as long as the image
//! has pixels, with a vocabulary of k instead of 256^3.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use jielong_core::kmeans::{self, Points};

/// The range of palette sizes a model may use.
pub const PALETTE_SIZES: std::ops::RangeInclusive<usize> = 8..=512;

/// At most this many distinct colours go into k-means; beyond it similar colours are merged
/// first (keeping their weighted mean), so fitting a photo collection stays quick.
const MAX_DISTINCT: usize = 65_536;

#[derive(Clone, Debug, PartialEq)]
pub struct Palette {
    colours: Vec<[u8; 3]>,
}

/// `palette.json` in a model folder: the colours as `#rrggbb`, token `i` is colour `i`.
#[derive(Serialize, Deserialize)]
struct PaletteFile {
    colours: Vec<String>,
}

impl Palette {
    pub fn new(colours: Vec<[u8; 3]>) -> Result<Self> {
        if colours.is_empty() {
            bail!("a palette needs at least one colour");
        }
        if colours.len() > 65_536 {
            bail!(
                "a palette of {} colours is too large (65,536 at most)",
                colours.len()
            );
        }
        Ok(Self { colours })
    }

    /// Fits `k` colours to the pixels of `images` with k-means (k-means++ seeding from `seed`).
    /// Images with fewer than `k` distinct colours give a palette of just those colours.
    pub fn fit<'a>(
        images: impl IntoIterator<Item = &'a RgbImage>,
        k: usize,
        seed: u64,
    ) -> Result<Self> {
        if !PALETTE_SIZES.contains(&k) {
            bail!(
                "a palette has {} to {} colours, not {k}",
                PALETTE_SIZES.start(),
                PALETTE_SIZES.end()
            );
        }
        let points = distinct_colours(images);
        if points.is_empty() {
            bail!("cannot fit a palette: there are no training pixels");
        }
        let centres = kmeans::fit(&points, k, seed);
        let mut colours: Vec<[u8; 3]> = centres
            .chunks_exact(3)
            .map(|c| [to_u8(c[0]), to_u8(c[1]), to_u8(c[2])])
            .collect();
        // Dark to light (by luma, then RGB) so that neighbouring token ids look alike.
        colours.sort_by_key(|&c| (crate::pixels::luma(Rgb(c)), c));
        colours.dedup();
        Self::new(colours)
    }

    pub fn colours(&self) -> &[[u8; 3]] {
        &self.colours
    }

    pub fn len(&self) -> usize {
        self.colours.len()
    }

    pub fn is_empty(&self) -> bool {
        self.colours.is_empty()
    }

    /// The index of the palette colour nearest to `px` (squared RGB distance).
    pub fn nearest(&self, px: Rgb<u8>) -> u32 {
        let [r, g, b] = px.0.map(i32::from);
        let mut best = (0u32, i32::MAX);
        for (i, c) in self.colours.iter().enumerate() {
            let (dr, dg, db) = (r - c[0] as i32, g - c[1] as i32, b - c[2] as i32);
            let d = dr * dr + dg * dg + db * db;
            if d < best.1 {
                best = (i as u32, d);
            }
        }
        best.0
    }

    /// The colour of token `index` (None past the end).
    pub fn colour(&self, index: u32) -> Option<Rgb<u8>> {
        self.colours.get(index as usize).map(|&c| Rgb(c))
    }

    /// `#rrggbb` of colour `index`.
    pub fn hex(&self, index: u32) -> Option<String> {
        self.colour(index)
            .map(|Rgb([r, g, b])| format!("#{r:02x}{g:02x}{b:02x}"))
    }

    /// The contents of `palette.json`.
    pub fn to_file_json(&self) -> Result<Vec<u8>> {
        let file = PaletteFile {
            colours: (0..self.len() as u32).filter_map(|i| self.hex(i)).collect(),
        };
        Ok(serde_json::to_vec_pretty(&file)?)
    }

    /// Writes `palette.json` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        jielong_core::write_atomic(path, &self.to_file_json()?)
    }

    /// Reads a palette written by [`Palette::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read the palette file {}: the model folder is incomplete",
                path.display()
            )
        })?;
        let file: PaletteFile = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a palette file (expected {{\"colours\": [\"#rrggbb\", ...]}})",
                path.display()
            )
        })?;
        let colours = file
            .colours
            .iter()
            .map(|s| parse_hex(s))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("bad colour in {}", path.display()))?;
        Self::new(colours).with_context(|| format!("bad palette in {}", path.display()))
    }
}

fn to_u8(x: f32) -> u8 {
    x.round().clamp(0.0, 255.0) as u8
}

fn parse_hex(s: &str) -> Result<[u8; 3]> {
    let hex = s.strip_prefix('#').unwrap_or(s);
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{s:?} is not a colour written #rrggbb");
    }
    let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16);
    Ok([channel(0)?, channel(2)?, channel(4)?])
}

/// The distinct colours of all pixels, weighted by how often they occur, in colour order (so
/// the result does not depend on the order of the images).
fn distinct_colours<'a>(images: impl IntoIterator<Item = &'a RgbImage>) -> Points {
    // A dense table of every 24-bit colour: one pass, no hashing, 64 MB for the fit only.
    let mut counts = vec![0u32; 1 << 24];
    for img in images {
        for px in img.pixels() {
            let [r, g, b] = px.0;
            let slot = &mut counts[(r as usize) << 16 | (g as usize) << 8 | b as usize];
            *slot = slot.saturating_add(1);
        }
    }
    let colours: Vec<(u32, u32)> = counts
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n > 0)
        .map(|(c, &n)| (c as u32, n))
        .collect();
    let weights = |n: u32| n as f64;
    if colours.len() <= MAX_DISTINCT {
        let coords = colours
            .iter()
            .flat_map(|&(c, _)| split(c).map(|v| v as f32))
            .collect();
        return Points {
            dim: 3,
            coords,
            weights: colours.iter().map(|&(_, n)| weights(n)).collect(),
        };
    }
    // Too many to cluster quickly: merge colours that agree in their high bits, one bit more
    // each time, keeping each group's weighted mean. At 7 bits dropped at most 512 groups remain.
    let mut shift = 1;
    loop {
        let mut groups: BTreeMap<u32, ([f64; 3], f64)> = BTreeMap::new();
        for &(c, n) in &colours {
            let [r, g, b] = split(c);
            let key = (r >> shift) << 16 | (g >> shift) << 8 | (b >> shift);
            let group = groups.entry(key).or_default();
            for (sum, v) in group.0.iter_mut().zip(split(c)) {
                *sum += v as f64 * weights(n);
            }
            group.1 += weights(n);
        }
        if groups.len() <= MAX_DISTINCT || shift == 7 {
            let coords = groups
                .values()
                .flat_map(|(sum, w)| sum.map(|v| (v / w) as f32))
                .collect();
            return Points {
                dim: 3,
                coords,
                weights: groups.values().map(|&(_, w)| w).collect(),
            };
        }
        shift += 1;
    }
}

/// A packed `0xrrggbb` colour as its three channels.
fn split(c: u32) -> [u32; 3] {
    [(c >> 16) & 255, (c >> 8) & 255, c & 255]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        assert_eq!(parse_hex("#0a1B2c").unwrap(), [10, 27, 44]);
        assert!(parse_hex("#12345").is_err());
        assert!(parse_hex("#12345g").is_err());
    }

    #[test]
    fn few_colours_are_kept_exactly() {
        let img = RgbImage::from_fn(4, 4, |x, _| {
            if x < 2 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let p = Palette::fit([&img], 8, 1).unwrap();
        assert_eq!(p.colours(), &[[0, 0, 255], [255, 0, 0]]);
        assert_eq!(p.nearest(Rgb([200, 10, 10])), 1);
    }
}
