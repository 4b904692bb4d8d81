//! A tokenisation as a person writes it on the command line (`grey:16`, `blocks:2`,
//! `palette:64`, `patches:4:256`), and fitting it to a dataset.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, bail};

use crate::codec::{ImageCodec, Tokenisation};
use crate::datasets::ImageDataset;
use crate::palette::Palette;
use crate::patches::Codebook;

/// What to build, before anything is fitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSpec {
    /// `grey:L` (`grey` alone is 256 levels, `binary` is `grey:2`).
    Grey { levels: u32 },
    /// `blocks:B`: B x B binary blocks.
    BinaryBlocks { block: u32 },
    /// `palette:K`: K colours fitted with k-means.
    Palette { colours: usize },
    /// `patches:P:K` (or `patches:PxP:K`): a codebook of K patches of P x P pixels, grey for a
    /// grey dataset, colour otherwise.
    Patches { patch: u32, entries: usize },
}

/// What `--tokens` accepts, for error messages and help text.
pub const TOKEN_SPEC_HELP: &str = "grey, grey:L (L = 2..256), binary, blocks:B (B = 1..4), palette:K (K = 8..512), patches:P:K (e.g. patches:4:256)";

impl FromStr for TokenSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let number = |text: &str| -> Result<u32> {
            text.parse::<u32>()
                .with_context(|| format!("{text:?} in {s:?} is not a whole number"))
        };
        let spec = match parts.as_slice() {
            ["grey" | "gray"] => TokenSpec::Grey { levels: 256 },
            ["binary"] => TokenSpec::Grey { levels: 2 },
            ["grey" | "gray", l] => TokenSpec::Grey { levels: number(l)? },
            ["blocks", b] => TokenSpec::BinaryBlocks { block: number(b)? },
            ["palette", k] => TokenSpec::Palette {
                colours: number(k)? as usize,
            },
            ["patches", p, k] => {
                let side = match p.split_once('x') {
                    Some((a, b)) if a == b => a,
                    Some(_) => bail!(
                        "patches are square: write {s:?} as patches:PxP:K with the same P twice"
                    ),
                    None => p,
                };
                TokenSpec::Patches {
                    patch: number(side)?,
                    entries: number(k)? as usize,
                }
            }
            _ => bail!("unknown tokenisation {s:?}: expected {TOKEN_SPEC_HELP}"),
        };
        Ok(spec)
    }
}

impl fmt::Display for TokenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSpec::Grey { levels } => write!(f, "grey:{levels}"),
            TokenSpec::BinaryBlocks { block } => write!(f, "blocks:{block}"),
            TokenSpec::Palette { colours } => write!(f, "palette:{colours}"),
            TokenSpec::Patches { patch, entries } => write!(f, "patches:{patch}:{entries}"),
        }
    }
}

impl TokenSpec {
    /// Builds the codec for `data`, fitting the palette or codebook on its training images
    /// (seeded, deterministic). `conditional` gives the codec the dataset's classes.
    pub fn fit(&self, data: &ImageDataset, conditional: bool, seed: u64) -> Result<ImageCodec> {
        let classes = if conditional {
            if data.classes.is_empty() {
                bail!("this dataset has no class labels, so a model of it cannot be conditional");
            }
            data.classes.clone()
        } else {
            Vec::new()
        };
        let images = data.train.iter().map(|l| &l.image);
        let tokens = match *self {
            TokenSpec::Grey { levels } => Tokenisation::Grey { levels },
            TokenSpec::BinaryBlocks { block } => Tokenisation::BinaryBlocks { block },
            TokenSpec::Palette { colours } => {
                Tokenisation::Palette(Palette::fit(images, colours, seed)?)
            }
            TokenSpec::Patches { patch, entries } => {
                let channels = if data.grey { 1 } else { 3 };
                Tokenisation::Patches(Codebook::fit(images, patch, channels, entries, seed)?)
            }
        };
        ImageCodec::new(data.width, data.height, tokens, classes)
    }
}
