//! The 8x8 digits that ship with scikit-learn: one CSV line per image, 64 intensities 0..16
//! then the label. The last 10% of the lines are held out.

use std::path::Path;

use anyhow::{Context, Result, bail};
use image::{Rgb, RgbImage};

use super::{ImageDataset, LabelledImage, read_maybe_gzipped};

const SIDE: u32 = 8;
const MAX_INTENSITY: u32 = 16;

/// Reads `sklearn_digits.csv.gz` (or the plain CSV). Intensities are scaled to 0..255.
pub fn read_digits_csv(path: &Path) -> Result<ImageDataset> {
    let bytes = read_maybe_gzipped(path)?;
    let text = std::str::from_utf8(&bytes)
        .with_context(|| format!("{} is not a text CSV file", path.display()))?;
    let mut images = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        images
            .push(parse_line(line).with_context(|| format!("{} line {}", path.display(), n + 1))?);
    }
    let heldout = images.split_off(images.len() - images.len().div_ceil(10));
    let classes = (0..10).map(|d| d.to_string()).collect();
    ImageDataset::new(
        images,
        heldout,
        classes,
        format!("8x8 digits ({})", path.display()),
    )
}

fn parse_line(line: &str) -> Result<LabelledImage> {
    let fields: Vec<&str> = line.trim().split(',').collect();
    let wanted = (SIDE * SIDE) as usize + 1;
    if fields.len() != wanted {
        bail!(
            "expected {wanted} comma-separated numbers (64 intensities and a label), found {}",
            fields.len()
        );
    }
    let numbers = fields
        .iter()
        .map(|f| {
            f.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.fract() == 0.0 && *v >= 0.0)
                .map(|v| v as u32)
        })
        .collect::<Option<Vec<u32>>>()
        .context("every field must be a whole number")?;
    let (pixels, label) = numbers.split_at(wanted - 1);
    if let Some(bad) = pixels.iter().find(|&&v| v > MAX_INTENSITY) {
        bail!("intensity {bad} is outside 0..{MAX_INTENSITY}");
    }
    if label[0] > 9 {
        bail!("label {} is not a digit", label[0]);
    }
    let image = RgbImage::from_fn(SIDE, SIDE, |x, y| {
        let v = pixels[(y * SIDE + x) as usize];
        Rgb([((v * 255 + MAX_INTENSITY / 2) / MAX_INTENSITY) as u8; 3])
    });
    Ok(LabelledImage {
        image,
        label: Some(label[0] as usize),
    })
}
