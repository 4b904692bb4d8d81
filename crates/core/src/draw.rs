//! What image and audio drawings share: a class (or none) to draw, how many, the tokens of a
//! prompt kept as they are, guidance and the dice. Each modality's recipe adds what it draws
//! (an image's tokens, a clip's samples) and how a drawing ends.

use anyhow::Result;

use crate::codec::Vocab;
use crate::error::InvalidSetting;
use crate::generate::GenerateConfig;
use crate::guided::Guidance;
use crate::sampler::SamplerConfig;

/// A drawing from a class-conditional (or unconditional) model.
#[derive(Clone, Debug)]
pub struct ClassDraw {
    /// The class to draw (a label or its index); unconditional when `None`.
    pub class: Option<String>,
    /// Drawings made together; drawing `i` uses the seed `seed + i`.
    pub count: usize,
    /// Tokens of a prompt's beginning, kept as they are (Image GPT's completions, a clip's
    /// continuation).
    pub kept: Vec<u32>,
    /// Classifier-free guidance towards the class.
    pub guidance: Option<f32>,
    /// How each token is drawn.
    pub sampler: SamplerConfig,
    /// The seed of drawing 0.
    pub seed: u64,
    /// How many of the most likely tokens each event carries.
    pub show_top: usize,
}

impl ClassDraw {
    /// `count` drawings of `class` at temperature 1.
    pub fn new(class: Option<&str>, count: usize) -> Self {
        Self {
            class: class.map(str::to_string),
            count,
            kept: Vec::new(),
            guidance: None,
            sampler: SamplerConfig::default(),
            seed: 0,
            show_top: 0,
        }
    }

    /// Checks the request against `vocab` and returns the prompt (the start token, then the
    /// kept tokens) and the settings for drawing `new_tokens` tokens after it.
    pub fn prepare(&self, vocab: &Vocab, new_tokens: usize) -> Result<(Vec<u32>, GenerateConfig)> {
        self.sampler.validate()?;
        if self.count == 0 {
            return Err(InvalidSetting::new("count", "must be at least 1").into());
        }
        vocab.check_ids(&self.kept)?;
        let start = vocab
            .start_token(self.class.as_deref())?
            .ok_or_else(|| anyhow::anyhow!("this model has no start token"))?;
        let mut prompt = vec![start];
        prompt.extend_from_slice(&self.kept);
        let mut config = GenerateConfig::new(self.sampler.clone(), self.seed, new_tokens);
        config.show_top = self.show_top;
        config.guidance = Guidance::for_vocab(vocab, self.class.is_some(), self.guidance)?;
        Ok((prompt, config))
    }
}
