//! `jielong generate text`: continue a prompt, streaming the text as it is drawn.

use std::io::Write;

use anyhow::{Result, bail};
use jielong_core::{Codec, Finish, Flow};
use jielong_text::{CompletionRequest, TextEvent, TextPrompt, complete};
use serde_json::json;

use crate::args::{Format, GenerateText, Modality};
use crate::show::{self, Step};
use crate::{open, settings};

pub fn run(a: GenerateText) -> Result<()> {
    let sampler = settings::sampler_config(&a.sampling)?;
    let prompt = match (&a.prompt, &a.prompt_ids) {
        (Some(text), _) => TextPrompt::Text(text.clone()),
        (None, Some(ids)) => TextPrompt::Ids(ids.clone()),
        (None, None) => bail!("give a prompt: --prompt TEXT or --prompt-ids 1,2,3"),
    };
    let mut request = CompletionRequest::new(prompt, a.max_new_tokens);
    request.count = a.count;
    request.sampler = sampler;
    request.seed = a.sampling.seed;
    request.stop = a.stop.clone();
    request.slide = a.slide;
    request.show_top = a.sampling.show_probs.unwrap_or(0);
    settings::check_count(a.count)?;
    let (folder, model) = open::open_model(&a.model, Modality::Text, &a.device)?;
    request.sampler.temperature = open::temperature(&folder, a.sampling.temperature)?;
    let text_model = open::text_model(&folder)?;
    let codec = &text_model.codec;

    let label = |id: u32| codec.token_label(id);
    let show_probs = a.sampling.show_probs.is_some();
    let streaming = a.format == Format::Text && a.count == 1 && !show_probs;
    let mut stdout = std::io::stdout().lock();
    if streaming {
        match &a.prompt {
            Some(text) => write!(stdout, "{text}")?,
            None => write!(
                stdout,
                "{}",
                codec.decode_text(a.prompt_ids.as_deref().unwrap_or_default())?
            )?,
        }
        stdout.flush()?;
    }
    let mut steps: Vec<Vec<Step>> = vec![Vec::new(); a.count];
    let mut on_event = |e: &TextEvent| {
        let t = match e {
            TextEvent::Token(t) => t,
            TextEvent::Slide { kept, .. } => {
                eprintln!("\n[context full: the window slid to the last {kept} tokens]");
                return Flow::Continue;
            }
        };
        steps[t.seq].push(Step {
            id: t.id,
            prob: t.prob,
            top: t.top.to_vec(),
        });
        if t.seq == 0 && streaming {
            let _ = write!(stdout, "{}", t.text);
            let _ = stdout.flush();
        } else if t.seq == 0 && show_probs && a.format == Format::Text {
            let _ = writeln!(
                stdout,
                "{}",
                show::render(t.step, &steps[0][t.step], &label)
            );
        }
        Flow::Continue
    };
    let completions = complete(&model, &text_model, &request, &mut on_event)?;
    drop(on_event);

    let prompt_ids = match &request.prompt {
        TextPrompt::Text(text) => codec.encode_prompt(text)?,
        TextPrompt::Ids(ids) => ids.clone(),
    };
    for (i, c) in completions.iter().enumerate() {
        match a.format {
            Format::Json => {
                let mut obj = json!({ "prompt_ids": prompt_ids, "ids": c.ids, "text": c.text, "finish": finish_name(c.finish) });
                if show_probs {
                    obj["steps"] = steps[i].iter().map(|s| show::to_json(s, &label)).collect();
                }
                writeln!(stdout, "{obj}")?;
            }
            Format::Text if streaming => writeln!(stdout, "{}", c.unshown)?,
            Format::Text => {
                if a.count > 1 {
                    writeln!(stdout, "--- sample {} ---", i + 1)?;
                }
                writeln!(stdout, "{}{}", a.prompt.clone().unwrap_or_default(), c.text)?;
            }
        }
        if c.finish == Finish::ContextFull {
            eprintln!(
                "[stopped: the model's context of {} tokens is full; pass --slide to keep going]",
                folder.architecture.context_len
            );
        }
    }
    Ok(())
}

pub fn finish_name(finish: Finish) -> &'static str {
    match finish {
        Finish::End => "end",
        Finish::MaxTokens => "max_tokens",
        Finish::Stopped => "stop",
        Finish::ContextFull => "context_full",
    }
}
