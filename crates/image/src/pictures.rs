//! Pictures for people: grids of samples, Image-GPT-style completion grids, animated GIFs of an
//! image filling in, and PNGs, all written atomically.

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result, bail};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, ImageFormat, Rgb, RgbImage};

use crate::pixels::upscale;

/// The thin lines between tiles: a slate blue that shows on black digits and white icons alike,
/// and differs from the neutral grey of pixels not generated yet.
pub const SEPARATOR: Rgb<u8> = Rgb([70, 90, 120]);
/// The line marking where the kept part of a completion ends.
pub const MARKER: Rgb<u8> = Rgb([230, 40, 40]);
/// Largest upscaling factor (a bigger one is a typo, and a huge allocation).
pub const MAX_SCALE: u32 = 64;
/// Width of the separator lines, in pixels.
const GAP: u32 = 1;

/// Tiles `images` in rows of `cols`, each upscaled `scale` times with nearest neighbour, with a
/// thin separator between tiles. Tiles smaller than the largest sit at their cell's top left.
pub fn grid(images: &[RgbImage], cols: usize, scale: u32) -> Result<RgbImage> {
    if images.is_empty() {
        bail!("no images to put in a grid");
    }
    if cols == 0 {
        bail!("a grid needs at least one column");
    }
    check_scale(scale)?;
    let cols = cols.min(images.len());
    let rows = images.len().div_ceil(cols);
    if images
        .iter()
        .any(|img| img.width().max(img.height()) as u64 * scale as u64 > 1 << 16)
    {
        bail!("an image scaled {scale} times would be more than 65,536 pixels across");
    }
    let tiles: Vec<RgbImage> = images.iter().map(|img| upscale(img, scale)).collect();
    let tile_w = tiles.iter().map(RgbImage::width).max().unwrap_or(1);
    let tile_h = tiles.iter().map(RgbImage::height).max().unwrap_or(1);
    let (w, h) = (span(cols, tile_w)?, span(rows, tile_h)?);
    let mut out = RgbImage::from_pixel(w, h, SEPARATOR);
    for (i, tile) in tiles.iter().enumerate() {
        let x = (i % cols) as u32 * (tile_w + GAP);
        let y = (i / cols) as u32 * (tile_h + GAP);
        image::imageops::replace(&mut out, tile, x as i64, y as i64);
    }
    Ok(out)
}

/// One row of a completion grid: the original image, how many of its top pixel rows the model
/// was given, and the completions it drew.
#[derive(Clone, Debug)]
pub struct CompletionRow {
    pub original: RgbImage,
    pub kept_rows: u32,
    pub completions: Vec<RgbImage>,
}

/// Image GPT's picture: one row per prompt, the original first, then its completions. With
/// `marker`, a red line across every tile of a row shows where the kept part ends.
pub fn completion_grid(rows: &[CompletionRow], scale: u32, marker: bool) -> Result<RgbImage> {
    let cols = 1 + rows.iter().map(|r| r.completions.len()).max().unwrap_or(0);
    let mut tiles = Vec::with_capacity(rows.len() * cols);
    for (i, row) in rows.iter().enumerate() {
        let (w, h) = row.original.dimensions();
        if let Some(bad) = row.completions.iter().find(|c| c.dimensions() != (w, h)) {
            bail!(
                "row {i}: a completion is {}x{} but the original is {w}x{h}",
                bad.width(),
                bad.height()
            );
        }
        for c in 0..cols {
            let img = match c {
                0 => row.original.clone(),
                _ => row
                    .completions
                    .get(c - 1)
                    .cloned()
                    .unwrap_or_else(|| RgbImage::from_pixel(w, h, SEPARATOR)),
            };
            tiles.push((img, row.kept_rows));
        }
    }
    if tiles.is_empty() {
        bail!("no completions to show");
    }
    check_scale(scale)?;
    if tiles
        .iter()
        .any(|(img, _)| img.width().max(img.height()) as u64 * scale as u64 > 1 << 16)
    {
        bail!("an image scaled {scale} times would be more than 65,536 pixels across");
    }
    let marked: Vec<RgbImage> = tiles
        .into_iter()
        .map(|(img, kept)| {
            let mut big = upscale(&img, scale);
            if marker && kept > 0 && kept < img.height() {
                let y = kept * scale;
                for x in 0..big.width() {
                    big.put_pixel(x, y, MARKER);
                }
            }
            big
        })
        .collect();
    grid(&marked, cols, 1)
}

/// Writes `frames` as a looping animated GIF, `delay_ms` per frame (GIF counts in 10 ms steps).
pub fn animate(frames: &[RgbImage], path: &Path, delay_ms: u32) -> Result<()> {
    let Some(first) = frames.first() else {
        bail!("an animation needs at least one frame")
    };
    let (w, h) = first.dimensions();
    if w > u16::MAX as u32 || h > u16::MAX as u32 {
        bail!("a GIF is at most 65535 pixels a side, these frames are {w}x{h}");
    }
    if let Some(bad) = frames.iter().find(|f| f.dimensions() != (w, h)) {
        bail!(
            "animation frames differ in size ({}x{} and {w}x{h})",
            bad.width(),
            bad.height()
        );
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = GifEncoder::new_with_speed(&mut bytes, 10);
        encoder.set_repeat(Repeat::Infinite)?;
        let delay = Delay::from_numer_denom_ms(delay_ms, 1);
        for frame in frames {
            let rgba = image::DynamicImage::ImageRgb8(frame.clone()).to_rgba8();
            encoder
                .encode_frame(Frame::from_parts(rgba, 0, 0, delay))
                .context("cannot encode a GIF frame")?;
        }
    }
    jielong_core::write_atomic(path, &bytes)
}

/// The PNG bytes of an image.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>> {
    let mut bytes = Cursor::new(Vec::new());
    img.write_to(&mut bytes, ImageFormat::Png)
        .context("cannot encode a PNG")?;
    Ok(bytes.into_inner())
}

/// Writes an image as a PNG, atomically (a reader never sees half a file).
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    jielong_core::write_atomic(path, &encode_png(img)?)
}

fn check_scale(scale: u32) -> Result<()> {
    if !(1..=MAX_SCALE).contains(&scale) {
        bail!("the scale is 1 to {MAX_SCALE}, not {scale}");
    }
    Ok(())
}

/// Pixels taken by `n` tiles of `tile` pixels with a gap between each two.
fn span(n: usize, tile: u32) -> Result<u32> {
    let n = u32::try_from(n).ok().context("too many tiles")?;
    n.checked_mul(tile + GAP)
        .map(|v| v - GAP)
        .filter(|&v| v <= 1 << 16)
        .context("the grid would be more than 65,536 pixels across")
}
