//! A folder of PNG images of any size. PNGs in sub-folders are labelled by the sub-folder's name
//! (`cats/1.png`, `dogs/7.png`); with one sub-folder or none they are unlabelled. Every 10th
//! file, by sorted path, is held out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::{ImageReader, RgbImage};

use super::{ImageDataset, LabelledImage, is_heldout};
use crate::pixels;

/// Reads every PNG under `dir` (recursively; hidden files and folders skipped), composites
/// transparency onto white and resizes to `size`, or else to the most common size among them.
pub fn read_png_folder(dir: &Path, size: Option<(u32, u32)>) -> Result<ImageDataset> {
    let mut files = Vec::new();
    collect_pngs(dir, &mut files)?;
    files.sort();
    if files.is_empty() {
        bail!(
            "{} holds no MNIST files and no PNG images: nothing to read",
            dir.display()
        );
    }
    // The class of a file is the first folder of its path below `dir`, if any.
    let folders: Vec<Option<String>> = files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(dir).unwrap_or(f);
            let mut parts = rel.components();
            let first = parts.next()?.as_os_str().to_string_lossy().into_owned();
            parts.next().map(|_| first)
        })
        .collect();
    let names: BTreeSet<&String> = folders.iter().flatten().collect();
    let labelled = names.len() >= 2;
    if labelled && folders.iter().any(Option::is_none) {
        bail!(
            "{} has PNGs both in sub-folders (read as classes) and directly inside it: move the loose ones into a class folder",
            dir.display()
        );
    }
    let classes: Vec<String> = if labelled {
        names.into_iter().cloned().collect()
    } else {
        Vec::new()
    };

    let mut images = Vec::with_capacity(files.len());
    for file in &files {
        let img = ImageReader::open(file)
            .with_context(|| format!("cannot open {}", file.display()))?
            .with_guessed_format()
            .with_context(|| format!("cannot read {}", file.display()))?
            .decode()
            .with_context(|| format!("{} is not a readable PNG image", file.display()))?;
        images.push(pixels::on_white(&img));
    }
    let (width, height) = match size {
        Some(s) => s,
        None => most_common_size(&images),
    };
    if width == 0 || height == 0 {
        bail!("cannot resize images to {width}x{height}");
    }
    let (mut train, mut heldout) = (Vec::new(), Vec::new());
    for (i, (img, folder)) in images.iter().zip(&folders).enumerate() {
        let label = if labelled {
            folder
                .as_ref()
                .and_then(|f| classes.iter().position(|c| c == f))
        } else {
            None
        };
        let item = LabelledImage {
            image: pixels::resize_to(img, width, height),
            label,
        };
        if is_heldout(i) {
            heldout.push(item)
        } else {
            train.push(item)
        }
    }
    ImageDataset::new(
        train,
        heldout,
        classes,
        format!("PNG folder ({})", dir.display()),
    )
}

fn collect_pngs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_pngs(&path, out)?;
        } else if name.to_lowercase().ends_with(".png") {
            out.push(path);
        }
    }
    Ok(())
}

/// The size most images have (the smallest such size on a tie, so the choice is stable).
fn most_common_size(images: &[RgbImage]) -> (u32, u32) {
    let mut counts: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    for img in images {
        *counts.entry(img.dimensions()).or_default() += 1;
    }
    let best = counts.values().copied().max().unwrap_or(0);
    counts
        .into_iter()
        .find(|&(_, n)| n == best)
        .map_or((0, 0), |(size, _)| size)
}
