//! Drawing images token by token: the recipe behind `jielong generate image`, training's
//! samples, `eval --check-classes` and `/v1/images/generations`.

use anyhow::Result;
use image::RgbImage;
use jielong_core::{
    ClassDraw, Codec, Decoder, Event, Flow, GenerateConfig, Generation, InvalidSetting,
    PromptError, generate,
};

use crate::ImageCodec;

/// What to draw: a class (or none), how many, the tokens of an image's first rows to keep
/// (Image GPT's completions), guidance and the dice.
pub type DrawRequest = ClassDraw;

/// A drawing in pieces: the prompt and settings for the loop, and the images at the end.
pub struct DrawJob<'c> {
    codec: &'c ImageCodec,
    request: DrawRequest,
    prompt: Vec<u32>,
    config: GenerateConfig,
}

impl<'c> DrawJob<'c> {
    /// Checks the request against the codec and the decoder's context.
    pub fn new(codec: &'c ImageCodec, context: usize, request: DrawRequest) -> Result<Self> {
        let per_image = codec.tokens_per_image();
        if per_image + 1 > context {
            return Err(PromptError::TooLong {
                tokens: per_image + 1,
                context,
            }
            .into());
        }
        if request.kept.len() >= per_image {
            return Err(InvalidSetting::new(
                "kept",
                format!("must be shorter than an image ({per_image} tokens)"),
            )
            .into());
        }
        let vocab = codec.vocab();
        let (prompt, mut config) = request.prepare(vocab, per_image - request.kept.len())?;
        // Only pixel tokens may be drawn: never a class, start or END token.
        config.banned = (vocab.content_size as u32..vocab.size() as u32).collect();
        Ok(Self {
            codec,
            request,
            prompt,
            config,
        })
    }

    pub fn prompt(&self) -> &[u32] {
        &self.prompt
    }

    /// The settings of image 0; image `i` adds `i` to the seed.
    pub fn config(&self) -> &GenerateConfig {
        &self.config
    }

    pub fn request(&self) -> &DrawRequest {
        &self.request
    }

    /// Every image's tokens (the kept ones first).
    pub fn tokens(&self, generations: Vec<Generation>) -> Vec<Vec<u32>> {
        generations
            .into_iter()
            .map(|g| {
                let mut ids = self.request.kept.clone();
                ids.extend(g.ids);
                ids
            })
            .collect()
    }

    /// The images of those tokens.
    pub fn images(&self, tokens: &[Vec<u32>]) -> Result<Vec<RgbImage>> {
        tokens.iter().map(|ids| self.codec.decode(ids)).collect()
    }
}

/// Draws `request.count` images with any decoder, as one batch; `on_event` sees each token.
/// Returns each image's tokens (decode them with the codec, or use [`draw_images`]).
pub fn draw<D: Decoder>(
    decoder: &D,
    codec: &ImageCodec,
    request: &DrawRequest,
    on_event: &mut dyn FnMut(&Event) -> Flow,
) -> Result<Vec<Vec<u32>>> {
    let job = DrawJob::new(codec, decoder.context_len(), request.clone())?;
    let prompts = vec![job.prompt().to_vec(); request.count];
    let generations = generate(decoder, &prompts, job.config(), on_event)?;
    Ok(job.tokens(generations))
}

/// [`draw`], decoded to images.
pub fn draw_images<D: Decoder>(
    decoder: &D,
    codec: &ImageCodec,
    request: &DrawRequest,
) -> Result<Vec<RgbImage>> {
    let job = DrawJob::new(codec, decoder.context_len(), request.clone())?;
    let tokens = draw(decoder, codec, request, &mut |_| Flow::Continue)?;
    job.images(&tokens)
}
