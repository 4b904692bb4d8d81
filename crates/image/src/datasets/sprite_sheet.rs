//! A sprite sheet with a JSON index, in the layout of the `emoji-datasource` sheets: a square
//! grid of cells, each an image with 1 px of padding on every side, and a JSON list of entries
//! giving each image's `sheet_x` / `sheet_y` cell (skin-tone variants in `skin_variations`) and
//! its `category`, which becomes the label. Every 10th image, in index order, is held out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::{DynamicImage, GenericImageView, ImageReader};
use serde_json::Value;

use super::{ImageDataset, LabelledImage, is_heldout};
use crate::pixels;

/// Padding around each image inside its cell.
const PADDING: u32 = 1;

/// The JSON index beside a sheet: `<sheet name>.json`, or else the only `.json` in its folder.
pub(crate) fn find_index(sheet: &Path) -> Result<PathBuf> {
    let same_name = sheet.with_extension("json");
    if same_name.is_file() {
        return Ok(same_name);
    }
    let dir = sheet
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let jsons: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
                && p.is_file()
        })
        .collect();
    match jsons.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "{} looks like a sprite sheet but no JSON index is beside it: give the index explicitly",
            sheet.display()
        ),
        _ => bail!(
            "{} looks like a sprite sheet but {} JSON files are beside it: give the index explicitly",
            sheet.display(),
            jsons.len()
        ),
    }
}

/// One image's cell and category, from the index.
struct Sprite {
    x: u32,
    y: u32,
    category: Option<String>,
}

/// Reads the images of `sheet` listed in `index`, composited onto white.
pub fn read_sprite_sheet(sheet: &Path, index: &Path) -> Result<ImageDataset> {
    let text = std::fs::read(index)
        .with_context(|| format!("cannot read the sprite index {}", index.display()))?;
    let json: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not valid JSON", index.display()))?;
    let sprites = sprites(&json)
        .with_context(|| format!("{} is not a sprite-sheet index", index.display()))?;
    if sprites.is_empty() {
        bail!("{} lists no images", index.display());
    }
    let img = ImageReader::open(sheet)
        .with_context(|| format!("cannot open {}", sheet.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", sheet.display()))?
        .decode()
        .with_context(|| format!("{} is not a readable PNG image", sheet.display()))?;

    // A square grid: as many cells across as the largest index says.
    let grid = sprites.iter().map(|s| s.x.max(s.y)).max().unwrap_or(0) + 1;
    let (w, h) = img.dimensions();
    let cell = w / grid;
    if !w.is_multiple_of(grid) || cell <= 2 * PADDING || grid * cell > h {
        bail!(
            "{} is {w}x{h}: that is not a grid of {grid}x{grid} padded cells as {} describes",
            sheet.display(),
            index.display()
        );
    }
    let side = cell - 2 * PADDING;

    let labelled = sprites.iter().all(|s| s.category.is_some());
    let classes: Vec<String> = if labelled {
        sprites
            .iter()
            .filter_map(|s| s.category.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    let (mut train, mut heldout) = (Vec::new(), Vec::new());
    let mut kept = 0;
    for s in &sprites {
        let tile = DynamicImage::from(
            img.view(s.x * cell + PADDING, s.y * cell + PADDING, side, side)
                .to_image(),
        );
        if tile.to_rgba8().pixels().all(|p| p[3] == 0) {
            continue; // an empty cell: nothing was drawn there
        }
        let label = s
            .category
            .as_ref()
            .filter(|_| labelled)
            .and_then(|c| classes.iter().position(|k| k == c));
        let item = LabelledImage {
            image: pixels::on_white(&tile),
            label,
        };
        if is_heldout(kept) {
            heldout.push(item)
        } else {
            train.push(item)
        }
        kept += 1;
    }
    ImageDataset::new(
        train,
        heldout,
        classes,
        format!("sprite sheet ({})", sheet.display()),
    )
}

/// Every image the index lists: each entry, then its skin variations (with its category).
fn sprites(json: &Value) -> Result<Vec<Sprite>> {
    let entries = json.as_array().context("expected a JSON list of entries")?;
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let category = e.get("category").and_then(Value::as_str).map(str::to_owned);
        if let Some(s) = sprite(e, &category).with_context(|| format!("entry {i}"))? {
            out.push(s);
        }
        if let Some(variations) = e.get("skin_variations").and_then(Value::as_object) {
            for (name, v) in variations {
                if let Some(s) =
                    sprite(v, &category).with_context(|| format!("entry {i}, variation {name}"))?
                {
                    out.push(s);
                }
            }
        }
    }
    Ok(out)
}

/// An entry's cell; `None` when the entry says the sheet has no image for it.
fn sprite(e: &Value, category: &Option<String>) -> Result<Option<Sprite>> {
    if e.get("has_img_twitter").and_then(Value::as_bool) == Some(false) {
        return Ok(None);
    }
    let coord = |key: &str| -> Result<u32> {
        e.get(key)
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .filter(|&v| v < 4096)
            .with_context(|| format!("no valid {key:?}"))
    };
    Ok(Some(Sprite {
        x: coord("sheet_x")?,
        y: coord("sheet_y")?,
        category: category.clone(),
    }))
}
