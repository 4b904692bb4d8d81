//! MNIST in its original IDX format, gzipped or not: `train-*` is the training split and the
//! 10,000 `t10k-*` images are held out. A folder may hold only the pair of files its user needs
//! (see [`MnistSplits`]): the t10k pair to evaluate, the training pair to train (every 10th
//! training image is then held out, as in the other datasets without a split of their own).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use image::RgbImage;

use super::{ImageDataset, LabelledImage, MnistSplits, is_heldout, read_maybe_gzipped};

const IMAGES_MAGIC: u32 = 0x0000_0803; // unsigned bytes, 3 dimensions
const LABELS_MAGIC: u32 = 0x0000_0801; // unsigned bytes, 1 dimension

/// The four files, by split: (split, images, labels).
const TRAIN: (&str, &str, &str) = (
    "training",
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
);
const TEST: (&str, &str, &str) = ("test", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");

/// Whether `dir` holds any of MNIST's four files (gzipped or not).
pub(crate) fn is_mnist_folder(dir: &Path) -> bool {
    [TRAIN, TEST]
        .iter()
        .flat_map(|&(_, images, labels)| [images, labels])
        .any(|name| existing(dir, name).is_some())
}

/// `name` or `name.gz` in `dir`, if either is a file.
fn existing(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

/// The paths of a split's images and labels: `None` when neither file is there, an error naming
/// the missing one when only one is, or when `needed` and neither is.
fn pair(
    dir: &Path,
    (split, images, labels): (&str, &str, &str),
    needed: bool,
    purpose: Option<&str>,
) -> Result<Option<(PathBuf, PathBuf)>> {
    let missing = |name: &str| {
        let why = match purpose {
            Some(purpose) => format!("{purpose} needs MNIST's {split} files {images} and {labels}"),
            None => format!("MNIST's {split} files are {images} and {labels}"),
        };
        anyhow::anyhow!(
            "{} has no {name} (or {name}.gz): it is not a complete MNIST folder ({why}, gzipped or not)",
            dir.display()
        )
    };
    match (existing(dir, images), existing(dir, labels)) {
        (Some(i), Some(l)) => Ok(Some((i, l))),
        (None, None) if !needed => Ok(None),
        (None, _) => Err(missing(images)),
        (_, None) => Err(missing(labels)),
    }
}

/// Reads the four MNIST files from `dir`. Labels are the classes "0".."9".
pub fn read_mnist(dir: &Path) -> Result<ImageDataset> {
    read_mnist_splits(dir, MnistSplits::Both)
}

/// Reads the MNIST files of `dir` that `splits` asks for: the needed pair must be complete, the
/// other pair is read when it is there (and must then be complete too). Without the t10k pair,
/// every 10th training image is held out; without the training pair, there are no training
/// images. Labels are the classes "0".."9".
pub fn read_mnist_splits(dir: &Path, splits: MnistSplits) -> Result<ImageDataset> {
    let (train_files, test_files) = match splits {
        MnistSplits::Both => (pair(dir, TRAIN, true, None)?, pair(dir, TEST, true, None)?),
        MnistSplits::Training => (
            pair(dir, TRAIN, true, Some("training"))?,
            pair(dir, TEST, false, None)?,
        ),
        MnistSplits::Test => (
            pair(dir, TRAIN, false, None)?,
            pair(dir, TEST, true, Some("evaluation"))?,
        ),
    };
    let split = |files: Option<(PathBuf, PathBuf)>| -> Result<Vec<LabelledImage>> {
        let Some((images_path, labels_path)) = files else {
            return Ok(Vec::new());
        };
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
        let heldout = s.spawn(|| split(test_files));
        let train = split(train_files);
        (train, heldout.join())
    });
    let (mut train, mut heldout) = (
        train?,
        heldout.map_err(|_| anyhow::anyhow!("reading the MNIST test split failed"))??,
    );
    if heldout.is_empty() {
        let all = std::mem::take(&mut train);
        for (i, image) in all.into_iter().enumerate() {
            if is_heldout(i) {
                heldout.push(image);
            } else {
                train.push(image);
            }
        }
    }
    let classes = (0..10).map(|d| d.to_string()).collect();
    ImageDataset::new(
        train,
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
