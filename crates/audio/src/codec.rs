//! One audio sample <-> one token: 8-bit mu-law (as in WaveNet) or plain linear 8-bit.
//!
//! Mu-law spends its 256 levels where speech spends its time: near zero the steps are about 250
//! times finer than linear ones, at full scale about 5 times coarser. That is why 8 bits of mu-law
//! sound like telephone speech while 8 bits of linear sound hissy.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use jielong_core::{Codec, FolderCodec, Specials, Vocab};
use serde_json::{Value, json};

use crate::frames::FrameCodebook;

/// The side file of a frame codec in a model folder.
pub const CODEBOOK_FILE: &str = "codebook.json";

/// Number of sample levels, the content part of the vocabulary.
pub const LEVELS: usize = 256;
/// The mu of G.711 / WaveNet companding.
pub const MU: f32 = 255.0;
/// The model's sample rate unless told otherwise: telephone quality, cheap to generate.
pub const DEFAULT_RATE: u32 = 8000;
/// Sample rates a codec accepts (a model of a lower rate would not be speech; a higher one
/// would be far too slow to generate one sample at a time).
pub const RATE_RANGE: std::ops::RangeInclusive<u32> = 1000..=96_000;

/// How a sample in [-1, 1] is mapped to 256 levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantisation {
    /// Continuous mu-law companding (mu = 255), then uniform 8-bit quantisation.
    MuLaw,
    /// Uniform 8-bit quantisation of the sample itself (for comparison).
    Linear,
}

impl Quantisation {
    /// The name written in config.json and accepted on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Quantisation::MuLaw => "mu-law",
            Quantisation::Linear => "linear",
        }
    }

    /// Companding: the sample mapped to the [-1, 1] domain that is quantised uniformly.
    fn compress(self, x: f32) -> f32 {
        match self {
            Quantisation::MuLaw => x.signum() * (MU * x.abs()).ln_1p() / MU.ln_1p(),
            Quantisation::Linear => x,
        }
    }

    /// The inverse of [`Self::compress`].
    fn expand(self, y: f32) -> f32 {
        match self {
            Quantisation::MuLaw => y.signum() * ((MU.ln_1p() * y.abs()).exp() - 1.0) / MU,
            Quantisation::Linear => y,
        }
    }
}

impl fmt::Display for Quantisation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Quantisation {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "mu-law" | "mulaw" | "mu_law" | "mu" | "ulaw" => Ok(Quantisation::MuLaw),
            "linear" | "lin" | "pcm8" => Ok(Quantisation::Linear),
            _ => bail!("unknown audio quantisation {s:?}: use \"mu-law\" or \"linear\""),
        }
    }
}

/// What one token stands for.
#[derive(Clone, Debug, PartialEq)]
pub enum AudioTokens {
    /// One sample, at one of 256 levels.
    Samples(Quantisation),
    /// The spectrum of one hop of samples, an entry of a frame codebook ([`crate::frames`]).
    Frames(Arc<FrameCodebook>),
}

/// Clips of samples in [-1, 1] at `rate` Hz <-> tokens: one per sample, or one per frame of a
/// frame codebook.
///
/// Vocabulary: the content tokens (the 256 sample levels, token `k` is level `k` from the most
/// negative up; or the codebook's entries, quietest first), END (a clip ends), then, for
/// class-labelled data, the unconditional token and one token per class. A codec without classes
/// has a BOS token instead, so that every sequence (and every generation) can start from one token.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioCodec {
    tokens: AudioTokens,
    rate: u32,
    vocab: Vocab,
}

impl Default for AudioCodec {
    fn default() -> Self {
        Self {
            tokens: AudioTokens::Samples(Quantisation::MuLaw),
            rate: DEFAULT_RATE,
            vocab: Vocab::new(LEVELS, specials(Vec::new())),
        }
    }
}

fn specials(classes: Vec<String>) -> Specials {
    Specials {
        bos: classes.is_empty(),
        end: true,
        pad: false,
        classes,
    }
}

fn check(rate: u32, classes: &[String]) -> Result<()> {
    if !RATE_RANGE.contains(&rate) {
        bail!(
            "an audio model's sample rate must be between {} and {} Hz, not {rate}",
            RATE_RANGE.start(),
            RATE_RANGE.end()
        );
    }
    for (i, name) in classes.iter().enumerate() {
        if name.is_empty() {
            bail!("class {i} has an empty name");
        }
        if classes[..i].contains(name) {
            bail!("class {name:?} is listed twice");
        }
    }
    Ok(())
}

impl AudioCodec {
    /// A codec of one token per sample at `rate` Hz with the given class names (empty for
    /// unlabelled data).
    pub fn new(quantisation: Quantisation, rate: u32, classes: Vec<String>) -> Result<Self> {
        check(rate, &classes)?;
        Ok(Self {
            tokens: AudioTokens::Samples(quantisation),
            rate,
            vocab: Vocab::new(LEVELS, specials(classes)),
        })
    }

    /// A codec of one token per frame of `codebook` at `rate` Hz.
    pub fn frames(codebook: FrameCodebook, rate: u32, classes: Vec<String>) -> Result<Self> {
        check(rate, &classes)?;
        Ok(Self {
            vocab: Vocab::new(codebook.len(), specials(classes)),
            tokens: AudioTokens::Frames(Arc::new(codebook)),
            rate,
        })
    }

    pub fn tokens(&self) -> &AudioTokens {
        &self.tokens
    }

    /// Samples per second of the content.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Samples each content token stands for (1, or a frame codebook's hop).
    pub fn samples_per_token(&self) -> usize {
        match &self.tokens {
            AudioTokens::Samples(_) => 1,
            AudioTokens::Frames(codebook) => codebook.hop(),
        }
    }

    /// Content tokens per second of audio.
    pub fn tokens_per_second(&self) -> f64 {
        self.rate as f64 / self.samples_per_token() as f64
    }

    /// Class names (empty for an unconditional model).
    pub fn classes(&self) -> &[String] {
        &self.vocab.classes
    }

    /// The token of one sample (values outside [-1, 1] are clipped); `None` for a frame codec.
    pub fn sample_to_token(&self, x: f32) -> Option<u32> {
        let AudioTokens::Samples(quantisation) = self.tokens else {
            return None;
        };
        let y = quantisation.compress(x.clamp(-1.0, 1.0));
        // Mid-rise quantiser: level k covers [-1 + k/128, -1 + (k+1)/128).
        Some(
            ((y + 1.0) * (LEVELS as f32 / 2.0))
                .floor()
                .clamp(0.0, (LEVELS - 1) as f32) as u32,
        )
    }

    /// The sample a content token stands for (the centre of its level); `None` for a special
    /// token and for a frame codec (whose tokens stand for spectra, see [`Codec::decode`]).
    pub fn token_to_sample(&self, id: u32) -> Option<f32> {
        let AudioTokens::Samples(quantisation) = self.tokens else {
            return None;
        };
        self.vocab.is_content(id).then(|| {
            let y = (id as f32 + 0.5) / (LEVELS as f32 / 2.0) - 1.0;
            quantisation.expand(y)
        })
    }

    /// The exact class token of `label` (no index fallback: a label is a name).
    pub fn class_of(&self, label: &str) -> Result<u32> {
        match self.vocab.classes.iter().position(|c| c == label) {
            Some(i) => Ok(self.vocab.first_class + i as u32),
            None if self.vocab.classes.is_empty() => {
                bail!("the clip is labelled {label:?} but this codec has no classes")
            }
            None => bail!(
                "the label {label:?} is not one of this codec's classes ({})",
                self.vocab.classes.join(", ")
            ),
        }
    }

    /// The token that starts an unlabelled sequence: the unconditional token, or BOS for a codec
    /// without classes.
    pub fn unlabelled_start(&self) -> u32 {
        // `specials` always gives one or the other.
        self.vocab
            .unconditional
            .or(self.vocab.bos)
            .expect("an audio vocabulary has an unconditional or a BOS token")
    }

    /// The END token.
    pub fn end(&self) -> u32 {
        self.vocab.end.expect("an audio vocabulary has END")
    }
}

impl FolderCodec for AudioCodec {
    /// A frame codec writes its codebook; a sample codec has no side files.
    fn save_files(&self, dir: &Path) -> Result<()> {
        match &self.tokens {
            AudioTokens::Samples(_) => Ok(()),
            AudioTokens::Frames(codebook) => codebook.save(&dir.join(CODEBOOK_FILE)),
        }
    }

    /// The "codec" section of a model folder's config.json.
    fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "audio",
            "rate": self.rate,
            "classes": self.vocab.classes,
        });
        match &self.tokens {
            AudioTokens::Samples(q) => {
                v["tokens"] = json!("samples");
                v["quantisation"] = json!(q.name());
                v["levels"] = json!(LEVELS);
                v["mu"] = if *q == Quantisation::MuLaw {
                    json!(MU)
                } else {
                    Value::Null
                };
            }
            AudioTokens::Frames(codebook) => {
                v["tokens"] = json!("frames");
                v["window"] = json!(codebook.window());
                v["hop"] = json!(codebook.hop());
                v["codebook"] = json!(codebook.len());
            }
        }
        v
    }

    /// Reads what [`Self::to_json`] wrote (a section without "tokens" is one of samples).
    fn from_json(value: &Value, dir: &Path) -> Result<Self> {
        let obj = value
            .as_object()
            .context("the audio codec section of config.json is not a JSON object")?;
        match obj.get("kind").and_then(Value::as_str) {
            Some("audio") => {}
            Some(other) => bail!("the codec section is of kind {other:?}, not \"audio\""),
            None => bail!("the codec section has no \"kind\" (expected \"audio\")"),
        }
        let rate = obj
            .get("rate")
            .and_then(Value::as_u64)
            .context("the audio codec section has no \"rate\" (samples per second, an integer)")?;
        let rate = u32::try_from(rate)
            .ok()
            .context("the audio codec's rate is too large")?;
        let classes = match obj.get("classes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|c| {
                    c.as_str()
                        .map(str::to_owned)
                        .context("the audio codec's classes must be strings")
                })
                .collect::<Result<_>>()?,
            Some(_) => bail!("the audio codec's \"classes\" must be a list of strings"),
        };
        match obj
            .get("tokens")
            .and_then(Value::as_str)
            .unwrap_or("samples")
        {
            "samples" => Self::new(samples_quantisation(obj)?, rate, classes),
            "frames" => {
                let codebook = FrameCodebook::load(&dir.join(CODEBOOK_FILE))?;
                for (key, want) in [
                    ("window", codebook.window()),
                    ("hop", codebook.hop()),
                    ("codebook", codebook.len()),
                ] {
                    if let Some(v) = obj.get(key).filter(|v| v.as_u64() != Some(want as u64)) {
                        bail!(
                            "config.json says the frame codec's {key} is {v}, but {CODEBOOK_FILE} has {want}"
                        );
                    }
                }
                Self::frames(codebook, rate, classes)
            }
            other => {
                bail!("the audio codec's \"tokens\" is {other:?}: use \"samples\" or \"frames\"")
            }
        }
    }
}

/// The quantisation of a sample codec's config section (only 256 levels and mu = 255 exist).
fn samples_quantisation(obj: &serde_json::Map<String, Value>) -> Result<Quantisation> {
    let quantisation: Quantisation = obj
        .get("quantisation")
        .and_then(Value::as_str)
        .context(
            "the audio codec section has no \"quantisation\" string (\"mu-law\" or \"linear\")",
        )?
        .parse()?;
    if let Some(levels) = obj
        .get("levels")
        .filter(|l| l.as_u64() != Some(LEVELS as u64))
    {
        bail!("the audio codec has {levels} levels; only {LEVELS} are supported");
    }
    if let Some(mu) = obj
        .get("mu")
        .filter(|m| !m.is_null() && m.as_f64() != Some(MU as f64))
    {
        bail!("the audio codec has mu = {mu}; only {MU} is supported");
    }
    Ok(quantisation)
}

impl Codec for AudioCodec {
    type Content = Vec<f32>;

    fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    fn encode(&self, samples: &Vec<f32>) -> Result<Vec<u32>> {
        if let Some(i) = samples.iter().position(|x| !x.is_finite()) {
            bail!(
                "sample {i} of the clip is {}: audio samples must be finite numbers",
                samples[i]
            );
        }
        Ok(match &self.tokens {
            AudioTokens::Samples(_) => samples
                .iter()
                .filter_map(|&x| self.sample_to_token(x))
                .collect(),
            AudioTokens::Frames(codebook) => codebook.encode(samples),
        })
    }

    fn decode(&self, ids: &[u32]) -> Result<Vec<f32>> {
        if let Some(i) = ids.iter().position(|&id| !self.vocab.is_content(id)) {
            bail!(
                "token {i} ({}) is not audio content",
                self.token_label(ids[i])
            );
        }
        Ok(match &self.tokens {
            AudioTokens::Samples(_) => ids
                .iter()
                .filter_map(|&id| self.token_to_sample(id))
                .collect(),
            AudioTokens::Frames(codebook) => codebook.decode(ids),
        })
    }

    fn token_label(&self, id: u32) -> String {
        if !self.vocab.is_content(id) {
            return self
                .vocab
                .special_label(id)
                .unwrap_or_else(|| format!("[? {id}]"));
        }
        match &self.tokens {
            AudioTokens::Samples(q) => {
                let short = match q {
                    Quantisation::MuLaw => "mu",
                    Quantisation::Linear => "lin",
                };
                let x = self.token_to_sample(id).unwrap_or_default();
                format!("{short} {id} ({x:+.4})")
            }
            AudioTokens::Frames(codebook) => {
                let db = codebook.level_db(id).unwrap_or(f32::NEG_INFINITY);
                format!("frame {id} ({db:.0} dB)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_layout() {
        let plain = AudioCodec::default();
        assert_eq!(plain.vocab().size(), 258);
        assert_eq!(plain.unlabelled_start(), 256); // BOS
        assert_eq!(plain.end(), 257);
        let digits = AudioCodec::new(
            Quantisation::MuLaw,
            8000,
            (0..10).map(|d| d.to_string()).collect(),
        )
        .unwrap();
        assert_eq!(digits.end(), 256);
        assert_eq!(digits.unlabelled_start(), 257);
        assert_eq!(digits.class_of("7").unwrap(), 265);
        assert_eq!(digits.vocab().size(), 268);
        assert!(digits.class_of("11").is_err());
    }
}
