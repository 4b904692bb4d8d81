//! `jielong train text|image|audio`: one trainer for every modality. Each modality only turns
//! its data into token sequences and fits its codec (train_text.rs, train_image.rs,
//! train_audio.rs); this file runs the trainer and writes the model card.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use jielong_core::FolderCodec;
use jielong_nn::burn::tensor::Device;
use jielong_nn::{Transformer, TransformerConfig};
use jielong_train::{Event, Metrics, Run, TrainConfig};
use serde_json::json;

use crate::args::{Modality, TrainArgs};
use crate::training::{Prepared, RunFile};
use crate::{plots, settings};

pub fn run(a: TrainArgs) -> Result<()> {
    let mut file = match &a.config {
        Some(path) => RunFile {
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            ..serde_json::from_value::<RunFile>(settings::read_json(path)?)
                .with_context(|| format!("{} is not a valid training config", path.display()))?
        },
        None => RunFile::default(),
    };
    if let Some(steps) = a.steps {
        file.train.steps = steps;
    }
    if a.resume && !a.out.join("checkpoint").join("state.json").exists() {
        bail!(
            "nothing to resume in {}: it has no checkpoint/state.json",
            a.out.display()
        );
    }
    let device = settings::device(&a.device)?;
    eprintln!("reading {} ...", a.data.display());
    let (data, out) = (&a.data, &a.out);
    match a.modality {
        Modality::Text => {
            let prepared = crate::train_text::prepare(data, &file, out, a.resume)?;
            train(&a, file, &device, prepared, crate::train_text::sample)
        }
        Modality::Image => {
            let prepared = crate::train_image::prepare(data, &file, out, a.resume)?;
            train(&a, file, &device, prepared, crate::train_image::sample)
        }
        Modality::Audio => {
            let prepared = crate::train_audio::prepare(data, &file, out, a.resume)?;
            train(&a, file, &device, prepared, crate::train_audio::sample)
        }
    }
}

/// A modality's sample for the model card: its text, with any pictures written beside it.
type Sample<C> = fn(&Path, &Transformer, &Prepared<C>) -> Result<String>;

/// Trains on what a modality prepared, then writes its sample and the model card.
fn train<C: FolderCodec>(
    a: &TrainArgs,
    mut file: RunFile,
    device: &Device,
    prepared: Prepared<C>,
    sample: Sample<C>,
) -> Result<()> {
    let arch = file
        .model
        .architecture(prepared.codec.vocab().size(), prepared.context)?;
    if arch.first_token_condition && prepared.train.prefix == 0 {
        bail!(
            "model: first_token_condition needs a conditional codec, whose class token starts \
             every window"
        );
    }
    if file.train.seq_len > arch.context_len {
        file.train.seq_len = arch.context_len;
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    prepared.codec.save_files(&a.out)?;

    // Recorded as `jielong ...` whatever the binary was called, so the card reads as a recipe.
    let command = std::iter::once("jielong".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let extra = json!({
        "training": {"command": command, "data": a.data.display().to_string(), "train": file.train},
        "data": prepared.data_json,
    });
    let codec_json = prepared.codec.to_json();
    let run = Run {
        out: &a.out,
        modality: a.modality.name(),
        codec: &codec_json,
        extra: &extra,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupted: finishing this step and writing a checkpoint (Ctrl-C again to quit now)"
        );
    })
    .context("cannot install the Ctrl-C handler")?;

    eprintln!(
        "training {} parameters on {} tokens ({} held out), {} steps of {} x {}",
        arch.num_params(),
        prepared.train.content_tokens(),
        prepared
            .heldout
            .iter()
            .map(jielong_core::Window::predicted)
            .sum::<usize>(),
        file.train.steps,
        file.train.batch_size,
        file.train.seq_len
    );
    let started = Instant::now();
    let mut progress = Progress::new(file.train.steps as u64);
    let outcome = jielong_train::train(
        &arch,
        &file.train,
        &prepared.train,
        &prepared.heldout,
        device,
        &run,
        a.resume,
        &stop,
        &mut |e| progress.event(e, &a.out),
    )?;
    progress.bar.finish_and_clear();
    if outcome.interrupted {
        eprintln!(
            "stopped at step {}; continue with the same command and --resume",
            outcome.metrics.last().map_or(0, |m| m.step)
        );
        return Ok(());
    }
    let last = outcome.metrics.last().context("no training step ran")?;
    let eval = last.eval_loss.unwrap_or(f64::NAN);
    eprintln!(
        "done in {:.0} s: train loss {:.4}, held-out {:.4} nats/token ({:.4} bits/token)",
        started.elapsed().as_secs_f64(),
        last.train_loss,
        eval,
        eval / std::f64::consts::LN_2
    );
    if let Some(best) = best_note(&file.train, &outcome.metrics, &a.out) {
        eprintln!("{best}");
    }
    let sample = sample(&a.out, &outcome.model, &prepared)?;
    let card = Card {
        command: &command,
        arch: &arch,
        train: &file.train,
        data_note: &prepared.data_note,
        metrics: &outcome.metrics,
        sample: &sample,
    };
    card.write(a)
}

/// The progress bar, plus a plain line per evaluation when stderr is not a terminal (logs).
struct Progress {
    bar: ProgressBar,
    tty: bool,
}

impl Progress {
    fn new(steps: u64) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = if tty {
            ProgressBar::new(steps)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .expect("a valid template"),
        );
        Self { bar, tty }
    }

    /// A line of the log: above the bar on a terminal, on stderr otherwise.
    fn line(&self, line: String) {
        if self.tty {
            self.bar.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    fn event(&mut self, e: Event, out: &Path) {
        match e {
            Event::Start { step, params } => {
                self.bar.set_position(step as u64);
                if step > 0 {
                    eprintln!("resuming at step {step} ({params} parameters)");
                }
            }
            Event::Step(m) => {
                self.bar.set_position(m.step as u64);
                self.bar.set_message(format!(
                    "loss {:.4} | {:.0} tok/s",
                    m.train_loss, m.tokens_per_second
                ));
                if let Some(e) = m.eval_loss {
                    let line = format!(
                        "step {:>6}  train {:.4}  held-out {:.4} nats/token ({:.3} bits)  lr {:.2e}  {:.0} tok/s  {:.0} s",
                        m.step,
                        m.train_loss,
                        e,
                        e / std::f64::consts::LN_2,
                        m.learning_rate,
                        m.tokens_per_second,
                        m.elapsed
                    );
                    self.line(line);
                }
            }
            Event::Checkpoint { metrics, .. } => {
                if let Err(err) = plots::loss_curve(&out.join("loss.png"), metrics) {
                    eprintln!("warning: cannot draw the loss curve: {err:#}");
                }
            }
            Event::Best { step, eval_loss } => {
                self.line(format!(
                    "step {step:>6}  best held-out so far ({eval_loss:.4} nats/token): kept in {}",
                    jielong_train::best_dir(out).display()
                ));
            }
            Event::Interrupted { .. } => {}
        }
    }
}

/// With `keep_best`: which evaluation `best/` holds.
fn best_note(train: &TrainConfig, metrics: &[Metrics], out: &Path) -> Option<String> {
    let (step, eval) = jielong_train::best_step(metrics).filter(|_| train.keep_best)?;
    Some(format!(
        "The lowest held-out score, {eval:.4} nats/token ({:.4} bits/token) at step {step}, is \
         kept in `{}` (`keep_best`; every evaluation scored the whole held-out part).",
        eval / std::f64::consts::LN_2,
        jielong_train::best_dir(out).display()
    ))
}

/// What the model card says.
struct Card<'a> {
    command: &'a str,
    arch: &'a TransformerConfig,
    train: &'a TrainConfig,
    data_note: &'a str,
    metrics: &'a [Metrics],
    sample: &'a str,
}

impl Card<'_> {
    /// Writes `MODEL.md` into the model folder.
    fn write(&self, a: &TrainArgs) -> Result<()> {
        let Card {
            command,
            arch,
            train,
            data_note,
            metrics,
            sample,
        } = self;
        let last = metrics.last().context("no metrics")?;
        let eval = last.eval_loss.unwrap_or(f64::NAN);
        let tokens_seen = train.steps * train.batch_size * train.seq_len;
        let name = a
            .out
            .file_name()
            .map_or("model".into(), |n| n.to_string_lossy().to_string());
        let card = format!(
            "# {name}\n\n\
         A jielong {modality} model: {layers} layers, {hidden} wide, {heads} heads ({kv} key-value heads), \
         context {context}, vocabulary {vocab}, {params} parameters{condition}.\n\n\
         ## Data\n\n{data}\n\n\
         ## Command\n\n```\n{command}\n```\n\n\
         ## Training\n\n{steps} steps of {batch} windows x {seq} tokens ({tokens_seen} token positions), AdamW \
         (lr {lr:e} -> {min_lr:e}, warm-up {warmup}, weight decay {wd}), gradient clipping {clip}{dropout}, seed {seed}{average}. \
         Wall-clock time {time:.0} s on this machine's `{device}` device.\n\n\
         ![loss curve](loss.png)\n\n\
         ## Held-out score\n\n{eval:.4} nats/token ({bits:.4} bits/token), final training loss {train_loss:.4}.{best}\n\n\
         ## Sample\n\n{sample}\n",
            modality = a.modality.name(),
            layers = arch.num_layers,
            hidden = arch.hidden_size,
            heads = arch.num_heads,
            kv = arch.num_kv_heads,
            context = arch.context_len,
            vocab = arch.vocab_size,
            params = arch.num_params(),
            condition = if arch.first_token_condition {
                "; every position also adds the embedding of its window's first token (the class)"
            } else {
                ""
            },
            data = data_note,
            steps = train.steps,
            batch = train.batch_size,
            seq = train.seq_len,
            lr = train.learning_rate,
            min_lr = train.min_learning_rate,
            warmup = train.warmup_steps,
            wd = train.weight_decay,
            clip = train.grad_clip,
            dropout = if train.dropout > 0.0 {
                format!(", dropout {}", train.dropout)
            } else {
                String::new()
            },
            seed = train.seed,
            average = if train.ema_decay > 0.0 {
                format!(
                    "; the weights saved and scored are the moving average of the training weights \
                     (decay {} per step)",
                    train.ema_decay
                )
            } else {
                String::new()
            },
            time = last.elapsed,
            device = a.device.device,
            bits = eval / std::f64::consts::LN_2,
            train_loss = last.train_loss,
            best =
                best_note(train, metrics, Path::new("")).map_or(String::new(), |b| format!(" {b}")),
        );
        jielong_core::write_atomic(&a.out.join("MODEL.md"), card.as_bytes())
    }
}
