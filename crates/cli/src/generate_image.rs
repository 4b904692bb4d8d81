//! `jielong generate image`: images drawn token by token through the shared loop — a batch of
//! samples, or Image GPT-style completions of the top rows of a given image.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use image::RgbImage;
use jielong_core::{Codec, Event, Flow};
use jielong_image::{
    CompletionRow, DrawRequest, ImageCodec, animate, completion_grid, draw, grid, save_png,
};

use crate::args::{GenerateImage, Modality};
use crate::show::{self, Step, record_steps};
use crate::{open, settings};

pub fn run(a: GenerateImage) -> Result<()> {
    let mut sampler = settings::sampler_config(&a.sampling)?;
    settings::check_count(a.count)?;
    if a.scale == 0 || a.scale > 64 {
        bail!("--scale must be between 1 and 64");
    }
    let (folder, model) = open::open_model(&a.model, Modality::Image, &a.device)?;
    sampler.temperature = open::temperature(&folder, a.sampling.temperature)?;
    let codec: ImageCodec = open::codec(&folder)?;

    // A completion keeps the top rows of a given image.
    let (original, kept) = match (&a.prompt_image, a.keep_rows) {
        (Some(path), Some(rows)) => {
            if rows == 0 || rows >= codec.height() {
                bail!(
                    "--keep-rows must be between 1 and {} (the image is {} rows high)",
                    codec.height() - 1,
                    codec.height()
                );
            }
            let img = codec.open_image(path)?;
            let tokens = codec.encode(&img)?;
            let keep = codec.tokens_for_rows(rows);
            if keep == 0 {
                bail!(
                    "--keep-rows {rows} is less than one row of tokens ({} pixel rows)",
                    codec.rows_per_token_row()
                );
            }
            (Some(img), tokens[..keep].to_vec())
        }
        _ => (None, Vec::new()),
    };

    let show = a.sampling.show_probs.unwrap_or(0);
    let mut steps: Vec<Vec<Step>> = vec![Vec::new(); a.count];
    let label = |id: u32| codec.token_label(id);
    let started = Instant::now();
    let request = DrawRequest {
        kept: kept.clone(),
        guidance: open::guidance(&folder, a.guidance, a.class.is_some())?,
        sampler,
        seed: a.sampling.seed,
        show_top: show,
        ..DrawRequest::new(a.class.as_deref(), a.count)
    };
    let tokens = draw(&model, &codec, &request, &mut |e| {
        record_steps(&mut steps, e);
        if let (Event::Token { seq: 0, step, .. }, true) = (e, show > 0) {
            println!(
                "{}",
                show::render(*step, steps[0].last().expect("just recorded"), &label)
            );
        }
        Flow::Continue
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let images: Vec<RgbImage> = tokens
        .iter()
        .map(|ids| codec.decode(ids))
        .collect::<Result<_>>()?;

    let picture = match &original {
        Some(orig) => {
            let kept_rows = codec.rows_for_tokens(kept.len());
            completion_grid(
                &[CompletionRow {
                    original: orig.clone(),
                    kept_rows,
                    completions: images.clone(),
                }],
                a.scale,
                true,
            )?
        }
        None => grid(&images, (a.count as f64).sqrt().ceil() as usize, a.scale)?,
    };
    save_png(&picture, &a.out)?;
    if let Some(dir) = &a.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (i, img) in images.iter().enumerate() {
            save_png(img, &dir.join(format!("{i:03}.png")))?;
        }
    }
    if let Some(path) = &a.animate {
        animate(&fill_in_frames(&codec, &tokens[0])?, path, 40)?;
    }
    let drawn = (codec.tokens_per_image() - kept.len()) * a.count;
    eprintln!(
        "wrote {} ({} image{}{}, {} tokens each, {:.0} tokens/s)",
        a.out.display(),
        a.count,
        if a.count == 1 { "" } else { "s" },
        a.class
            .as_ref()
            .map_or(String::new(), |c| format!(" of class {c}")),
        codec.tokens_per_image(),
        drawn as f64 / seconds
    );
    Ok(())
}

/// About 60 frames of one image filling in, token by token, then the finished image held.
fn fill_in_frames(codec: &ImageCodec, ids: &[u32]) -> Result<Vec<RgbImage>> {
    let n = ids.len();
    let every = n.div_ceil(60).max(1);
    let mut frames: Vec<RgbImage> = (0..n)
        .step_by(every)
        .map(|k| codec.decode_partial(&ids[..k]))
        .collect::<Result<_>>()?;
    let done = codec.decode_partial(ids)?;
    frames.extend(std::iter::repeat_n(done, 15));
    // Upscale so the animation is visible.
    let scale = (128 / codec.width().max(codec.height())).max(1);
    Ok(frames
        .into_iter()
        .map(|f| {
            image::imageops::resize(
                &f,
                f.width() * scale,
                f.height() * scale,
                image::imageops::FilterType::Nearest,
            )
        })
        .collect())
}
