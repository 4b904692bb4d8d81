//! [`ImageCodec`]: an image as a raster of tokens, played like 接龍 one token at a time.
//!
//! Content is always an [`RgbImage`] at the model's size; greyscale models keep their images
//! grey in RGB (R = G = B), so every decoded image can be shown or saved the same way. A codec
//! cuts the image into cells in raster order (left to right, top to bottom) and gives each
//! cell one token:
//!
//! | tokenisation | cell | tokens |
//! |---|---|---|
//! | [`Tokenisation::Grey`] | 1 pixel | `levels` grey levels (2 = binarised) |
//! | [`Tokenisation::BinaryBlocks`] | b x b pixels | 2^(b·b) bit patterns |
//! | [`Tokenisation::Palette`] | 1 pixel | the nearest of k palette colours |
//! | [`Tokenisation::Patches`] | p x p pixels | the nearest of k codebook patches |
//!
//! The vocabulary is the content tokens, then (see [`jielong_core::Vocab`]) either a BOS token
//! when the model has no classes, or an unconditional token and one token per class. Every
//! image sequence starts with one of those: `vocab().start_token(class)` gives it.

use std::path::Path;

use anyhow::{Context, Result, bail};
use image::{DynamicImage, Rgb, RgbImage};
use jielong_core::{Codec, FolderCodec, Specials, Vocab};
use serde_json::{Value, json};

use crate::palette::Palette;
use crate::patches::{Codebook, read_patch, write_patch};
use crate::pixels::{self, NEUTRAL, luma};

/// Largest width or height a model's images may have.
pub const MAX_SIDE: u32 = 4096;
/// Binary block sides: 4x4 already makes 65,536 tokens.
pub const BLOCK_SIDES: std::ops::RangeInclusive<u32> = 1..=4;
/// Grey level counts.
pub const GREY_LEVELS: std::ops::RangeInclusive<u32> = 2..=256;

/// File names of the side files in a model folder.
pub const PALETTE_FILE: &str = "palette.json";
pub const CODEBOOK_FILE: &str = "codebook.json";

/// How an image becomes tokens.
#[derive(Clone, Debug, PartialEq)]
pub enum Tokenisation {
    /// One token per pixel: `level = round(luma * (levels - 1) / 255)`, decoded to evenly
    /// spaced greys. With 2 levels a pixel is 1 when its luma is 128 or more.
    Grey { levels: u32 },
    /// One token per `block` x `block` square of binarised pixels (luma >= 128 is 1). The bits
    /// are read in raster order inside the block, the top-left pixel being the most significant
    /// bit: in a 2x2 block `0b1011` is top-left 1, top-right 0, bottom-left 1, bottom-right 1.
    /// Exact like `Grey { levels: 2 }`, with a sequence `block²` times shorter.
    BinaryBlocks { block: u32 },
    /// One token per pixel: the index of the nearest palette colour (Image GPT).
    Palette(Palette),
    /// One token per patch: the index of the nearest codebook patch.
    Patches(Codebook),
}

impl Tokenisation {
    /// The `"kind"` written in `config.json`.
    pub fn kind(&self) -> &'static str {
        match self {
            Tokenisation::Grey { .. } => "grey",
            Tokenisation::BinaryBlocks { .. } => "binary_blocks",
            Tokenisation::Palette(_) => "palette",
            Tokenisation::Patches(_) => "patches",
        }
    }

    /// Side of the square of pixels one token stands for.
    fn cell(&self) -> u32 {
        match self {
            Tokenisation::Grey { .. } | Tokenisation::Palette(_) => 1,
            Tokenisation::BinaryBlocks { block } => *block,
            Tokenisation::Patches(book) => book.patch(),
        }
    }

    fn content_size(&self) -> usize {
        match self {
            Tokenisation::Grey { levels } => *levels as usize,
            Tokenisation::BinaryBlocks { block } => 1 << (block * block),
            Tokenisation::Palette(p) => p.len(),
            Tokenisation::Patches(book) => book.len(),
        }
    }
}

/// How far a tokenised image is from the original: mean squared error per pixel and channel
/// (on the 0..255 scale, over the codec's channels) and the PSNR in dB (infinite when exact).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reconstruction {
    pub mse: f64,
    pub psnr: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ImageCodec {
    width: u32,
    height: u32,
    tokens: Tokenisation,
    vocab: Vocab,
}

impl ImageCodec {
    /// A codec for `width` x `height` images. `classes` empty: an unconditional model whose
    /// sequences start with BOS; otherwise sequences start with a class token or the
    /// unconditional token.
    pub fn new(
        width: u32,
        height: u32,
        tokens: Tokenisation,
        classes: Vec<String>,
    ) -> Result<Self> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            bail!(
                "images of {width}x{height} are not supported (each side 1 to {MAX_SIDE} pixels)"
            );
        }
        match &tokens {
            Tokenisation::Grey { levels } if !GREY_LEVELS.contains(levels) => {
                bail!(
                    "grey tokens have {} to {} levels, not {levels}",
                    GREY_LEVELS.start(),
                    GREY_LEVELS.end()
                )
            }
            Tokenisation::BinaryBlocks { block } if !BLOCK_SIDES.contains(block) => {
                bail!(
                    "binary blocks are {} to {} pixels wide, not {block}",
                    BLOCK_SIDES.start(),
                    BLOCK_SIDES.end()
                )
            }
            _ => {}
        }
        let cell = tokens.cell();
        if !width.is_multiple_of(cell) || !height.is_multiple_of(cell) {
            bail!(
                "{cell}x{cell} {} do not tile {width}x{height} images: choose a size that divides both sides",
                if matches!(tokens, Tokenisation::Patches(_)) {
                    "patches"
                } else {
                    "blocks"
                }
            );
        }
        if let Some(dup) = classes
            .iter()
            .enumerate()
            .find(|(i, c)| classes[..*i].contains(c))
        {
            bail!("class {:?} is listed twice", dup.1);
        }
        let vocab = Vocab::new(
            tokens.content_size(),
            Specials {
                bos: classes.is_empty(),
                end: false,
                pad: false,
                classes,
            },
        );
        Ok(Self {
            width,
            height,
            tokens,
            vocab,
        })
    }

    pub fn grey(width: u32, height: u32, levels: u32, classes: Vec<String>) -> Result<Self> {
        Self::new(width, height, Tokenisation::Grey { levels }, classes)
    }

    pub fn binary_blocks(
        width: u32,
        height: u32,
        block: u32,
        classes: Vec<String>,
    ) -> Result<Self> {
        Self::new(width, height, Tokenisation::BinaryBlocks { block }, classes)
    }

    pub fn palette(
        width: u32,
        height: u32,
        palette: Palette,
        classes: Vec<String>,
    ) -> Result<Self> {
        Self::new(width, height, Tokenisation::Palette(palette), classes)
    }

    pub fn patches(
        width: u32,
        height: u32,
        codebook: Codebook,
        classes: Vec<String>,
    ) -> Result<Self> {
        Self::new(width, height, Tokenisation::Patches(codebook), classes)
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// 1 for grey tokenisations, 3 for colour ones.
    pub fn channels(&self) -> u32 {
        match &self.tokens {
            Tokenisation::Grey { .. } | Tokenisation::BinaryBlocks { .. } => 1,
            Tokenisation::Palette(_) => 3,
            Tokenisation::Patches(book) => book.channels(),
        }
    }

    pub fn tokenisation(&self) -> &Tokenisation {
        &self.tokens
    }

    pub fn kind(&self) -> &'static str {
        self.tokens.kind()
    }

    pub fn classes(&self) -> &[String] {
        &self.vocab.classes
    }

    /// Tokens across and down: the raster the tokens are generated in.
    pub fn token_grid(&self) -> (u32, u32) {
        let cell = self.tokens.cell();
        (self.width / cell, self.height / cell)
    }

    /// Content tokens in one image (the sequence is this plus its one start token).
    pub fn tokens_per_image(&self) -> usize {
        let (cols, rows) = self.token_grid();
        (cols * rows) as usize
    }

    /// Pixel rows one row of tokens covers (1, or the block / patch side).
    pub fn rows_per_token_row(&self) -> u32 {
        self.tokens.cell()
    }

    /// Tokens that cover the top `rows` pixel rows, rounded down to whole rows of tokens: the
    /// prompt to keep for an Image-GPT-style completion of the top of an image.
    pub fn tokens_for_rows(&self, rows: u32) -> usize {
        let (cols, token_rows) = self.token_grid();
        ((rows / self.tokens.cell()).min(token_rows) * cols) as usize
    }

    /// Pixel rows fully decoded from the first `tokens` tokens.
    pub fn rows_for_tokens(&self, tokens: usize) -> u32 {
        let (cols, _) = self.token_grid();
        ((tokens.min(self.tokens_per_image()) / cols as usize) as u32) * self.tokens.cell()
    }

    /// Any image made ready for this model: transparency composited onto white, resized to the
    /// model's size, and turned grey (still RGB) when the model is grey. Used for PNG folders
    /// and for prompt images.
    pub fn fit_image(&self, img: &DynamicImage) -> RgbImage {
        let rgb = pixels::resize_to(&pixels::on_white(img), self.width, self.height);
        if self.channels() == 1 {
            pixels::to_grey(&rgb)
        } else {
            rgb
        }
    }

    /// Reads an image file (PNG or GIF) and fits it to this model with [`Self::fit_image`]:
    /// a prompt image given by a person.
    pub fn open_image(&self, path: &Path) -> Result<RgbImage> {
        let img = image::ImageReader::open(path)
            .with_context(|| format!("cannot open {}", path.display()))?
            .with_guessed_format()
            .with_context(|| format!("cannot read {}", path.display()))?
            .decode()
            .with_context(|| format!("{} is not a readable PNG or GIF image", path.display()))?;
        Ok(self.fit_image(&img))
    }

    /// Decodes the first tokens of an image (at most [`Self::tokens_per_image`]); the cells not
    /// generated yet are painted [`NEUTRAL`] grey. Frames of an image filling in.
    pub fn decode_partial(&self, ids: &[u32]) -> Result<RgbImage> {
        if ids.len() > self.tokens_per_image() {
            bail!(
                "{} tokens are more than one image holds ({})",
                ids.len(),
                self.tokens_per_image()
            );
        }
        let mut img = RgbImage::from_pixel(self.width, self.height, NEUTRAL);
        for (cell, &id) in ids.iter().enumerate() {
            if !self.vocab.is_content(id) {
                bail!(
                    "token {id} at position {cell} is {}, not part of an image",
                    self.token_label(id)
                );
            }
            self.paint(&mut img, cell, id);
        }
        Ok(img)
    }

    /// Bits per dimension of `images` images whose tokens cost `total_nats` in all: the usual
    /// image-model measure, per height x width x channels. For the lossy tokenisations (palette,
    /// patches) it measures the tokenised images, not the originals.
    pub fn bits_per_dim(&self, total_nats: f64, images: usize) -> f64 {
        let dims = images as f64 * self.width as f64 * self.height as f64 * self.channels() as f64;
        total_nats / std::f64::consts::LN_2 / dims
    }

    /// What encoding then decoding loses on `images` (each at the model's size), compared on the
    /// codec's channels (luma for grey codecs).
    pub fn reconstruction_error<'a>(
        &self,
        images: impl IntoIterator<Item = &'a RgbImage>,
    ) -> Result<Reconstruction> {
        let (mut sum, mut count) = (0f64, 0u64);
        for (i, img) in images.into_iter().enumerate() {
            let back = self.decode(&self.encode(img).with_context(|| format!("image {i}"))?)?;
            for (a, b) in img.pixels().zip(back.pixels()) {
                if self.channels() == 1 {
                    sum += (luma(*a) as f64 - luma(*b) as f64).powi(2);
                    count += 1;
                } else {
                    sum +=
                        a.0.iter()
                            .zip(b.0)
                            .map(|(&x, y)| (x as f64 - y as f64).powi(2))
                            .sum::<f64>();
                    count += 3;
                }
            }
        }
        if count == 0 {
            bail!("no images to measure the reconstruction error on");
        }
        let mse = sum / count as f64;
        let psnr = if mse == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (255.0f64 * 255.0 / mse).log10()
        };
        Ok(Reconstruction { mse, psnr })
    }

    /// Side files this codec keeps in the model folder.
    pub fn side_files(&self) -> Vec<&'static str> {
        match &self.tokens {
            Tokenisation::Palette(_) => vec![PALETTE_FILE],
            Tokenisation::Patches(_) => vec![CODEBOOK_FILE],
            _ => vec![],
        }
    }

    /// Checks the size of an image before encoding.
    fn check_size(&self, img: &RgbImage) -> Result<()> {
        if img.dimensions() != (self.width, self.height) {
            bail!(
                "image is {}x{}, this model's images are {}x{}",
                img.width(),
                img.height(),
                self.width,
                self.height
            );
        }
        Ok(())
    }

    /// Top-left pixel of token cell `cell` (raster order).
    fn cell_origin(&self, cell: usize) -> (u32, u32) {
        let side = self.tokens.cell();
        let cols = (self.width / side) as usize;
        ((cell % cols) as u32 * side, (cell / cols) as u32 * side)
    }

    /// The token of cell `cell`.
    fn read(&self, img: &RgbImage, cell: usize, buf: &mut Vec<u8>) -> u32 {
        let (x0, y0) = self.cell_origin(cell);
        match &self.tokens {
            Tokenisation::Grey { levels } => grey_level(luma(*img.get_pixel(x0, y0)), *levels),
            Tokenisation::BinaryBlocks { block } => {
                let mut bits = 0u32;
                for y in y0..y0 + block {
                    for x in x0..x0 + block {
                        bits = bits << 1 | (luma(*img.get_pixel(x, y)) >= 128) as u32;
                    }
                }
                bits
            }
            Tokenisation::Palette(p) => p.nearest(*img.get_pixel(x0, y0)),
            Tokenisation::Patches(book) => {
                read_patch(img, x0, y0, book.patch(), book.channels(), buf);
                book.nearest(buf)
            }
        }
    }

    /// Paints content token `id` (already checked) into cell `cell`.
    fn paint(&self, img: &mut RgbImage, cell: usize, id: u32) {
        let (x0, y0) = self.cell_origin(cell);
        match &self.tokens {
            Tokenisation::Grey { levels } => {
                let v = grey_value(id, *levels);
                img.put_pixel(x0, y0, Rgb([v, v, v]));
            }
            Tokenisation::BinaryBlocks { block } => {
                let n = block * block;
                for i in 0..n {
                    let on = id >> (n - 1 - i) & 1 == 1;
                    img.put_pixel(
                        x0 + i % block,
                        y0 + i / block,
                        Rgb([if on { 255 } else { 0 }; 3]),
                    );
                }
            }
            Tokenisation::Palette(p) => img.put_pixel(x0, y0, p.colour(id).unwrap_or(NEUTRAL)),
            Tokenisation::Patches(book) => {
                if let Some(values) = book.entry(id) {
                    write_patch(img, x0, y0, book.patch(), book.channels(), values);
                }
            }
        }
    }
}

/// `round(v * (levels - 1) / 255)` in integers.
fn grey_level(v: u8, levels: u32) -> u32 {
    (v as u32 * (levels - 1) + 127) / 255
}

/// `round(level * 255 / (levels - 1))` in integers: evenly spaced greys from black to white.
fn grey_value(level: u32, levels: u32) -> u8 {
    ((2 * level * 255 + (levels - 1)) / (2 * (levels - 1))).min(255) as u8
}

impl FolderCodec for ImageCodec {
    /// The `"codec"` section of a model folder's `config.json`.
    fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": self.kind(),
            "width": self.width,
            "height": self.height,
            "channels": self.channels(),
            "classes": self.vocab.classes,
            "tokens_per_image": self.tokens_per_image(),
            "vocab_size": self.vocab.size(),
            "files": self.side_files(),
        });
        let extra = match &self.tokens {
            Tokenisation::Grey { levels } => json!({ "levels": levels }),
            Tokenisation::BinaryBlocks { block } => json!({ "block": block }),
            Tokenisation::Palette(p) => json!({ "colours": p.len(), "palette_file": PALETTE_FILE }),
            Tokenisation::Patches(book) => {
                json!({ "patch": book.patch(), "codebook_size": book.len(), "codebook_file": CODEBOOK_FILE })
            }
        };
        if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        v
    }

    /// Writes the side files (palette, codebook) into the model folder `dir`, atomically.
    fn save_files(&self, dir: &Path) -> Result<()> {
        match &self.tokens {
            Tokenisation::Palette(p) => p.save(&dir.join(PALETTE_FILE)),
            Tokenisation::Patches(book) => book.save(&dir.join(CODEBOOK_FILE)),
            _ => Ok(()),
        }
    }

    /// Reads a codec back from its `config.json` section and the side files in `dir`.
    fn from_json(v: &Value, dir: &Path) -> Result<Self> {
        let section = Section(v);
        let kind = section.str("kind")?;
        let width = section.u32("width")?;
        let height = section.u32("height")?;
        let classes: Vec<String> = match v.get("classes") {
            None | Some(Value::Null) => Vec::new(),
            Some(c) => serde_json::from_value(c.clone())
                .context("the image codec section's \"classes\" must be a list of names")?,
        };
        let tokens = match kind {
            "grey" => Tokenisation::Grey {
                levels: section.u32("levels")?,
            },
            "binary_blocks" => Tokenisation::BinaryBlocks {
                block: section.u32("block")?,
            },
            "palette" => {
                let palette = Palette::load(&dir.join(section.file("palette_file")?))?;
                section.expect_count("colours", palette.len(), "the palette file")?;
                Tokenisation::Palette(palette)
            }
            "patches" => {
                let book = Codebook::load(&dir.join(section.file("codebook_file")?))?;
                section.expect_count("codebook_size", book.len(), "the codebook file")?;
                section.expect_count(
                    "patch",
                    book.patch() as usize,
                    "the codebook file's patch side",
                )?;
                Tokenisation::Patches(book)
            }
            other => bail!(
                "unknown image codec kind {other:?} in config.json (expected grey, binary_blocks, palette or patches)"
            ),
        };
        let codec = Self::new(width, height, tokens, classes)
            .context("bad image codec section in config.json")?;
        section.expect_count("channels", codec.channels() as usize, "this codec")?;
        section.expect_count("tokens_per_image", codec.tokens_per_image(), "this codec")?;
        section.expect_count("vocab_size", codec.vocab.size(), "this codec")?;
        Ok(codec)
    }
}

impl Codec for ImageCodec {
    type Content = RgbImage;

    fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The image's tokens in raster order; an image of another size is an error (see
    /// [`ImageCodec::fit_image`]).
    fn encode(&self, img: &RgbImage) -> Result<Vec<u32>> {
        self.check_size(img)?;
        let mut buf = Vec::new();
        Ok((0..self.tokens_per_image())
            .map(|cell| self.read(img, cell, &mut buf))
            .collect())
    }

    fn decode(&self, ids: &[u32]) -> Result<RgbImage> {
        if ids.len() != self.tokens_per_image() {
            bail!(
                "an image is {} tokens, not {} (use decode_partial for an unfinished one)",
                self.tokens_per_image(),
                ids.len()
            );
        }
        self.decode_partial(ids)
    }

    fn token_label(&self, id: u32) -> String {
        if let Some(special) = self.vocab.special_label(id) {
            return special;
        }
        if !self.vocab.is_content(id) {
            return format!("token {id} (outside the vocabulary)");
        }
        match &self.tokens {
            Tokenisation::Grey { levels } => {
                format!("level {id} (grey {})", grey_value(id, *levels))
            }
            Tokenisation::BinaryBlocks { block } => {
                let n = (block * block) as usize;
                format!("block {id:0n$b}")
            }
            Tokenisation::Palette(p) => format!("palette {id} {}", p.hex(id).unwrap_or_default()),
            Tokenisation::Patches(_) => format!("patch {id}"),
        }
    }
}

/// Field access on the codec section with errors that name the field.
struct Section<'a>(&'a Value);

impl Section<'_> {
    fn get(&self, key: &str) -> Result<&Value> {
        if !self.0.is_object() {
            bail!("the image codec section of config.json is not a JSON object");
        }
        self.0
            .get(key)
            .with_context(|| format!("the image codec section of config.json has no {key:?}"))
    }

    fn str(&self, key: &str) -> Result<&str> {
        self.get(key)?
            .as_str()
            .with_context(|| format!("the image codec's {key:?} must be a string"))
    }

    fn u32(&self, key: &str) -> Result<u32> {
        self.get(key)?
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .with_context(|| format!("the image codec's {key:?} must be a whole number"))
    }

    /// A side file name: a plain name inside the model folder, never a path out of it.
    fn file(&self, key: &str) -> Result<&str> {
        let name = self.str(key)?;
        if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
            bail!(
                "the image codec's {key:?} must be a file name inside the model folder, not {name:?}"
            );
        }
        Ok(name)
    }

    /// When `key` is present, it must agree with what the side files or the codec say.
    fn expect_count(&self, key: &str, actual: usize, what: &str) -> Result<()> {
        if self.0.get(key).is_none() {
            return Ok(());
        }
        let written = self.u32(key)? as usize;
        if written != actual {
            bail!(
                "config.json says the image codec's {key:?} is {written} but {what} has {actual}"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_levels_round_and_spread_evenly() {
        assert_eq!(grey_level(127, 2), 0);
        assert_eq!(grey_level(128, 2), 1);
        assert_eq!((grey_value(0, 2), grey_value(1, 2)), (0, 255));
        assert_eq!((grey_value(1, 4), grey_value(2, 4)), (85, 170));
        for levels in [2, 3, 7, 16, 255, 256] {
            for l in 0..levels {
                assert_eq!(grey_level(grey_value(l, levels), levels), l);
            }
        }
    }
}
