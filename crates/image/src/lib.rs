//! jielong-image: images as token sequences, played like 接龍 one token at a time (Image GPT /
//! PixelCNN style, in raster order).
//!
//! - [`ImageCodec`] (a [`jielong_core::Codec`] whose content is an [`image::RgbImage`]) with four
//!   tokenisations: grey levels, binary blocks, a k-means colour palette, k-means patches.
//! - [`datasets`]: MNIST, the 8x8 sklearn digits, folders of PNGs and sprite sheets, behind
//!   [`open_dataset`]; [`to_sequences`] turns their images into training sequences.
//! - [`pictures`]: sample grids, completion grids, animated GIFs and PNGs.
//! - [`knn`]: a nearest-neighbour digit classifier that checks generated digits.
//!
//! No tensors here: the crate knows pixels and tokens only.

pub mod binarise;
pub mod codec;
pub mod datasets;
pub mod draw;
pub mod knn;
pub mod palette;
pub mod patches;
pub mod pictures;
pub mod pixels;
pub mod sequences;
pub mod spec;

pub use binarise::Binarise;
pub use codec::{ImageCodec, Reconstruction, Tokenisation};
pub use datasets::{
    DatasetOptions, ImageDataset, LabelledImage, MnistSplits, open_dataset, open_dataset_with,
};
pub use draw::{DrawJob, DrawRequest, draw, draw_images};
pub use knn::DigitClassifier;
pub use palette::Palette;
pub use patches::Codebook;
pub use pictures::{CompletionRow, animate, completion_grid, grid, save_png};
pub use sequences::{to_dynamic_sequences, to_sequences};
pub use spec::TokenSpec;
