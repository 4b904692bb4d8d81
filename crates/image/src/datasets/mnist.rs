//! MNIST in its original IDX format, gzipped or not: `train-*` is the training split and the
//! 10,000 `t10k-*` images are held out.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::RgbImage;

use super::{ImageDataset, LabelledImage, read_maybe_gzipped};

const IMAGES_MAGIC: u32 = 0x0000_0803; // unsigned bytes, 3 dimensions
const LABELS_MAGIC: u32 = 0x0000_0801; // unsigned bytes, 1 dimension

/// Whether `dir` holds MNIST's training images (gzipped or not).
pub(crate) fn is_mnist_folder(dir: &Path) -> bool {
    find(dir, "train-images-idx3-ubyte").is_ok()
}

/// `name` or `name.gz` in `dir`.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{} has no {name} (or {name}.gz): it is not a complete MNIST folder",
                dir.display()
            )
        })
}

/// Reads the four MNIST files from `dir`. Labels are the classes "0".."9".
pub fn read_mnist(dir: &Path) -> Result<ImageDataset> {
    let split = |prefix: &str| -> Result<Vec<LabelledImage>> {
        let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
        let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
        let images = read_idx_images(&images_path)?;
        let labels = read_idx_labels(&labels_path)?;
        if images.len() != labels.len() {
            bail!(
                "{} has {} images but {} has {} labels",
                images_path.display(),
                images.len(),
                labels_path.display(),
                labels.len()
            );
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l > 9) {
            bail!(
                "{}: label {i} is {l}, but MNIST labels are 0 to 9",
                labels_path.display()
            );
        }
        Ok(images
            .into_iter()
            .zip(labels)
            .map(|(image, l)| LabelledImage {
                image,
                label: Some(l as usize),
            })
            .collect())
    };
    // The two splits are independent: read them at the same time.
    let (train, heldout) = std::thread::scope(|s| {
        let heldout = s.spawn(|| split("t10k"));
        let train = split("train");
        (train, heldout.join())
    });
    let heldout = heldout.map_err(|_| anyhow::anyhow!("reading the MNIST test split failed"))??;
    let classes = (0..10).map(|d| d.to_string()).collect();
    ImageDataset::new(
        train?,
        heldout,
        classes,
        format!("MNIST ({})", dir.display()),
    )
}

/// Reads an IDX3 file of unsigned-byte images (gzipped or not) as grey RGB images.
pub fn read_idx_images(path: &Path) -> Result<Vec<RgbImage>> {
    let bytes = read_maybe_gzipped(path)?;
    let header = header(&bytes, path, IMAGES_MAGIC, 4, "images")?;
    let (count, rows, cols) = (header[0] as usize, header[1], header[2]);
    if rows == 0 || cols == 0 || rows > 4096 || cols > 4096 {
        bail!(
            "{}: images of {cols}x{rows} pixels are not plausible",
            path.display()
        );
    }
    let pixels = &bytes[16..];
    let size = (rows * cols) as usize;
    check_length(path, pixels.len(), count.checked_mul(size), "pixels")?;
    Ok(pixels
        .chunks_exact(size)
        .map(|p| {
            RgbImage::from_fn(cols, rows, |x, y| {
                image::Rgb([p[(y * cols + x) as usize]; 3])
            })
        })
        .collect())
}

/// Reads an IDX1 file of unsigned-byte labels (gzipped or not).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_maybe_gzipped(path)?;
    let count = header(&bytes, path, LABELS_MAGIC, 2, "labels")?[0] as usize;
    check_length(path, bytes.len() - 8, Some(count), "labels")?;
    Ok(bytes[8..].to_vec())
}

/// Checks the magic number and returns the `words - 1` dimension sizes after it.
fn header(bytes: &[u8], path: &Path, magic: u32, words: usize, what: &str) -> Result<Vec<u32>> {
    if bytes.len() < words * 4 {
        bail!(
            "{} is too short to be an IDX file of {what} ({} bytes)",
            path.display(),
            bytes.len()
        );
    }
    let word = |i: usize| {
        u32::from_be_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    };
    if word(0) != magic {
        bail!(
            "{} is not an IDX file of {what}: its magic number is {:#010x}, expected {magic:#010x}",
            path.display(),
            word(0)
        );
    }
    Ok((1..words).map(word).collect())
}

fn check_length(path: &Path, found: usize, expected: Option<usize>, what: &str) -> Result<()> {
    let Some(expected) = expected else {
        bail!("{}: the header's sizes overflow", path.display())
    };
    if found < expected {
        bail!(
            "{} is truncated: its header promises {expected} bytes of {what}, it has {found}",
            path.display()
        );
    }
    if found > expected {
        bail!(
            "{} has {} bytes after the {expected} bytes of {what} its header promises",
            path.display(),
            found - expected
        );
    }
    Ok(())
}
