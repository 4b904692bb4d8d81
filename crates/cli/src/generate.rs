//! `jielong generate text|image|audio`: every modality through the same loop.

use std::io::Write;

use anyhow::{Result, bail};
use jielong_core::{Codec, Event, GenerateConfig, Generation, Overflow, generate};
use jielong_text::{TextStream, find_stop};
use serde_json::json;

use crate::args::{Format, GenerateArgs, GenerateText, GenerateWhat, Modality};
use crate::loaded;
use crate::probs::{self, Step};

pub fn run(args: GenerateArgs) -> Result<()> {
    match args.what {
        GenerateWhat::Text(a) => text(a),
        GenerateWhat::Image(a) => crate::generate_image::run(a),
        GenerateWhat::Audio(a) => crate::generate_audio::run(a),
    }
}

/// Collects the `--show-probs` steps of every sequence.
pub fn record_steps(steps: &mut [Vec<Step>], event: &Event) {
    if let Event::Token {
        seq, id, prob, top, ..
    } = event
    {
        steps[*seq].push(Step {
            id: *id,
            prob: *prob,
            top: top.to_vec(),
        });
    }
}

fn text(a: GenerateText) -> Result<()> {
    let sampler = loaded::sampler_config(&a.sampling)?;
    if a.count == 0 {
        bail!("--count must be at least 1");
    }
    let (folder, model) = loaded::open_model(&a.model, Modality::Text, &a.device)?;
    let codec = loaded::text_codec(&folder)?;
    let prompt_ids = match (&a.prompt, &a.prompt_ids) {
        (Some(text), _) => {
            if text.is_empty() {
                bail!("the prompt is empty: give some text to continue");
            }
            codec.encode_prompt(text)?
        }
        (None, Some(ids)) => ids.clone(),
        (None, None) => bail!("give a prompt: --prompt TEXT or --prompt-ids 1,2,3"),
    };
    if prompt_ids.is_empty() {
        bail!("the prompt is empty: give at least one token");
    }
    codec.vocab().check_ids(&prompt_ids)?;

    let mut config = GenerateConfig::new(sampler, a.sampling.seed, a.max_new_tokens);
    config.ends = loaded::text_end_ids(&folder, &codec);
    config.banned = loaded::text_banned(&codec, &config.ends);
    config.overflow = if a.slide {
        Overflow::Slide
    } else {
        Overflow::Stop
    };
    config.show_top = a.sampling.show_probs.unwrap_or(0);
    config.pad = prompt_ids[0];

    let label = |id: u32| codec.token_label(id);
    let streaming = a.format == Format::Text && a.count == 1 && a.sampling.show_probs.is_none();
    let mut stream = TextStream::new(&codec);
    let mut steps: Vec<Vec<Step>> = vec![Vec::new(); a.count];
    let mut stdout = std::io::stdout().lock();
    if streaming {
        write!(
            stdout,
            "{}",
            a.prompt
                .clone()
                .unwrap_or_else(|| codec.decode_text(&prompt_ids).unwrap_or_default())
        )?;
        stdout.flush()?;
    }
    let mut on_event = |e: Event| {
        record_steps(&mut steps, &e);
        match e {
            Event::Token { seq: 0, id, .. } if streaming && !config.ends.contains(&id) => {
                if let Ok(piece) = stream.push(id) {
                    let _ = write!(stdout, "{piece}");
                    let _ = stdout.flush();
                }
            }
            Event::Token { seq: 0, step, .. }
                if a.sampling.show_probs.is_some() && a.format == Format::Text =>
            {
                let _ = writeln!(
                    stdout,
                    "{}",
                    probs::render(step, steps[0].last().expect("just recorded"), &label)
                );
            }
            Event::Slide { kept } => {
                eprintln!("\n[context full: the window slid to the last {kept} tokens]")
            }
            _ => {}
        }
    };
    let mut stop = |_: usize, ids: &[u32]| {
        !a.stop.is_empty()
            && codec
                .decode_text(ids)
                .is_ok_and(|t| find_stop(&t, &a.stop).is_some())
    };
    let prompts = vec![prompt_ids.clone(); a.count];
    let mut cache = model.new_cache();
    let generations = generate(
        &model,
        &mut cache,
        &prompts,
        &config,
        &mut on_event,
        &mut stop,
    )?;

    for (i, g) in generations.iter().enumerate() {
        let mut text = codec.decode_text(&g.ids)?;
        if let Some(cut) = find_stop(&text, &a.stop) {
            text.truncate(cut);
        }
        match a.format {
            Format::Json => {
                let mut obj = json!({ "prompt_ids": prompt_ids, "ids": g.ids, "text": text, "finish": finish_name(g) });
                if a.sampling.show_probs.is_some() {
                    obj["steps"] = steps[i].iter().map(|s| probs::to_json(s, &label)).collect();
                }
                writeln!(stdout, "{obj}")?;
            }
            Format::Text if streaming => {
                write!(stdout, "{}", stream.finish()?)?;
                writeln!(stdout)?;
            }
            Format::Text => {
                if a.count > 1 {
                    writeln!(stdout, "--- sample {} ---", i + 1)?;
                }
                writeln!(stdout, "{}{}", a.prompt.clone().unwrap_or_default(), text)?;
            }
        }
        report_finish(g, model_context(&model));
    }
    Ok(())
}

fn model_context(model: &jielong_nn::Transformer) -> usize {
    model.config.context_len
}

pub fn finish_name(g: &Generation) -> &'static str {
    match g.finish {
        jielong_core::Finish::End => "end",
        jielong_core::Finish::MaxTokens => "max_tokens",
        jielong_core::Finish::Stopped => "stop",
        jielong_core::Finish::ContextFull => "context_full",
    }
}

/// Tells the user, on stderr, when generation stopped because the context was full.
pub fn report_finish(g: &Generation, context: usize) {
    if g.finish == jielong_core::Finish::ContextFull {
        eprintln!(
            "[stopped: the model's context of {context} tokens is full; pass --slide to keep going]"
        );
    }
}
