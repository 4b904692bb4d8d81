//! Image datasets: labelled images with their held-out split kept apart, from MNIST, the sklearn
//! digits CSV, a folder of PNGs or a sprite sheet. [`open_dataset`] tells them apart.

mod digits_csv;
mod mnist;
mod png_folder;
mod sprite_sheet;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::RgbImage;

pub use digits_csv::read_digits_csv;
pub use mnist::{read_idx_images, read_idx_labels, read_mnist, read_mnist_splits};
pub use png_folder::read_png_folder;
pub use sprite_sheet::read_sprite_sheet;

use crate::pixels;

/// One image and the index of its class (`None` in an unlabelled dataset).
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledImage {
    pub image: RgbImage,
    pub label: Option<usize>,
}

/// A dataset, every image `width` x `height`, with the held-out images never in `train`.
#[derive(Clone, Debug, Default)]
pub struct ImageDataset {
    pub train: Vec<LabelledImage>,
    pub heldout: Vec<LabelledImage>,
    /// Class names; empty when unlabelled. Label `i` is `classes[i]`.
    pub classes: Vec<String>,
    pub width: u32,
    pub height: u32,
    /// Every pixel grey (R = G = B): a grey tokenisation loses no colour.
    pub grey: bool,
    /// What was read, for people: "MNIST (…/mnist)".
    pub source: String,
}

impl ImageDataset {
    /// Whether every image has a label.
    pub fn is_labelled(&self) -> bool {
        !self.classes.is_empty()
            && self
                .train
                .iter()
                .chain(&self.heldout)
                .all(|l| l.label.is_some())
    }

    /// All images resized to `width` x `height` (a triangle filter; no-op at the same size).
    pub fn resized(mut self, width: u32, height: u32) -> Result<Self> {
        if width == 0 || height == 0 {
            bail!("cannot resize images to {width}x{height}");
        }
        for l in self.train.iter_mut().chain(self.heldout.iter_mut()) {
            l.image = pixels::resize_to(&l.image, width, height);
        }
        (self.width, self.height) = (width, height);
        Ok(self)
    }

    /// Builds a dataset from images, checking sizes and labels and noting whether all are grey.
    fn new(
        train: Vec<LabelledImage>,
        heldout: Vec<LabelledImage>,
        classes: Vec<String>,
        source: String,
    ) -> Result<Self> {
        let Some(first) = train.first().or(heldout.first()) else {
            bail!("{source} holds no images")
        };
        let (width, height) = first.image.dimensions();
        for l in train.iter().chain(&heldout) {
            if l.image.dimensions() != (width, height) {
                bail!(
                    "{source}: images differ in size ({}x{} and {width}x{height})",
                    l.image.width(),
                    l.image.height()
                );
            }
            if let Some(label) = l.label.filter(|&label| label >= classes.len()) {
                bail!("{source}: label {label} but only {} classes", classes.len());
            }
        }
        let grey = train
            .iter()
            .chain(&heldout)
            .all(|l| pixels::is_grey(&l.image));
        Ok(Self {
            train,
            heldout,
            classes,
            width,
            height,
            grey,
            source,
        })
    }
}

/// Which of an MNIST folder's two pairs of files must be there. The other pair is read when it
/// is there; a split whose files are absent is empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MnistSplits {
    /// All four files ([`open_dataset`]).
    #[default]
    Both,
    /// The training pair `train-images-idx3-ubyte`, `train-labels-idx1-ubyte` (training; the
    /// t10k pair, when there, is its held-out split, otherwise every 10th training image).
    Training,
    /// The test pair `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte` (evaluation; the
    /// training pair, when there, gives a classifier's references).
    Test,
}

/// Choices [`open_dataset_with`] cannot guess.
#[derive(Clone, Debug, Default)]
pub struct DatasetOptions {
    /// Resize every image to this size (a folder of PNGs otherwise takes its most common size).
    pub size: Option<(u32, u32)>,
    /// The JSON index of a sprite sheet (otherwise found beside the sheet).
    pub index: Option<PathBuf>,
    /// The MNIST files that must be there (other datasets hold both splits in one place).
    pub mnist: MnistSplits,
}

/// Reads the dataset at `path`, telling from the path what it is: a folder with MNIST IDX files
/// (all four of them; see [`DatasetOptions::mnist`] for folders with one split),
/// a `.csv` / `.csv.gz` of 8x8 digits, a sprite-sheet PNG with its JSON index beside it, or a
/// folder of PNGs (labelled by sub-folder).
pub fn open_dataset(path: &Path) -> Result<ImageDataset> {
    open_dataset_with(path, &DatasetOptions::default())
}

/// [`open_dataset`] with a size to resize to and a sprite sheet's index given explicitly.
pub fn open_dataset_with(path: &Path, options: &DatasetOptions) -> Result<ImageDataset> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot open the dataset {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let data = if meta.is_dir() {
        if mnist::is_mnist_folder(path) {
            read_mnist_splits(path, options.mnist)?
        } else {
            return read_png_folder(path, options.size);
        }
    } else if name.ends_with(".csv") || name.ends_with(".csv.gz") {
        read_digits_csv(path)?
    } else if name.ends_with(".png") {
        let index = match &options.index {
            Some(index) => index.clone(),
            None => sprite_sheet::find_index(path)?,
        };
        read_sprite_sheet(path, &index)?
    } else {
        bail!(
            "cannot tell what dataset {} is: give a folder of MNIST IDX files, a digits .csv(.gz), \
             a sprite-sheet .png with its JSON index, or a folder of PNG images",
            path.display()
        );
    };
    match options.size {
        Some((w, h)) => data.resized(w, h),
        None => Ok(data),
    }
}

/// The bytes of a file, gunzipped when it starts with the gzip magic number.
pub(crate) fn read_maybe_gzipped(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .with_context(|| format!("{} is a damaged or truncated gzip file", path.display()))?;
    Ok(out)
}

/// Whether item `i` of a sorted list belongs to the held-out split: every 10th one, so the
/// split is deterministic and spread over the whole list.
pub(crate) fn is_heldout(i: usize) -> bool {
    i % 10 == 9
}
