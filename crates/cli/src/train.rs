//! `jielong train text|image|audio`: one trainer for every modality. Each modality only turns
//! its data into token sequences and its codec into a config section.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use jielong_core::{Sequences, Window};
use jielong_nn::TransformerConfig;
use jielong_train::{Event, Metrics, Run, TrainConfig};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::args::{Modality, TrainArgs};
use crate::{loaded, plots};

/// The `model` section of a `--config` file: the shape of the transformer.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    /// Key-value heads (grouped-query attention); defaults to `heads`.
    pub kv_heads: Option<usize>,
    /// MLP width; defaults to about 8/3 of `hidden`.
    pub intermediate: Option<usize>,
    /// Longest sequence attended over; each modality has a default (an image model's is one
    /// image plus its start token).
    pub context: Option<usize>,
    pub tie_embeddings: bool,
    pub rope_theta: f64,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            hidden: 192,
            layers: 4,
            heads: 6,
            kv_heads: None,
            intermediate: None,
            context: None,
            tie_embeddings: false,
            rope_theta: 10000.0,
        }
    }
}

impl ModelSpec {
    pub fn architecture(&self, vocab_size: usize, context: usize) -> Result<TransformerConfig> {
        if self.heads == 0 || self.hidden % self.heads != 0 {
            bail!(
                "model: hidden ({}) must be a multiple of heads ({})",
                self.hidden,
                self.heads
            );
        }
        let mut a =
            TransformerConfig::small(vocab_size, self.hidden, self.layers, self.heads, context)
                .with_tie_embeddings(self.tie_embeddings)
                .with_rope_theta(self.rope_theta);
        a.num_kv_heads = self.kv_heads.unwrap_or(self.heads);
        if let Some(i) = self.intermediate {
            a.intermediate_size = i;
        }
        a.validate()?;
        Ok(a)
    }
}

/// A whole `--config` file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunFile {
    pub model: ModelSpec,
    pub train: TrainConfig,
    /// Modality-specific codec choices (e.g. `{"kind": "chars"}` or `{"kind": "bpe", "vocab_size": 1024}`).
    pub codec: Value,
    /// Modality-specific data choices (e.g. `{"heldout": 0.1}`).
    pub data: Value,
    /// The folder of the config file: relative paths inside it are relative to this.
    #[serde(skip)]
    pub base: PathBuf,
}

impl RunFile {
    /// A path written in the config file, relative to the file's folder.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }
}

/// Reads a modality's `codec` or `data` section into its typed form: unknown keys are errors,
/// missing keys take their defaults.
pub fn section<T: serde::de::DeserializeOwned + Default>(value: &Value, name: &str) -> Result<T> {
    match value {
        Value::Null => Ok(T::default()),
        v => serde_json::from_value(v.clone())
            .with_context(|| format!("bad {name} section in the config")),
    }
}

/// What a modality hands the trainer.
pub struct Prepared {
    pub vocab_size: usize,
    /// The model's context (the config's, or the modality's default).
    pub context: usize,
    pub codec_json: Value,
    /// Writes the codec's side files (tokenizer, palette...) into the model folder.
    pub save_files: Box<dyn Fn(&Path) -> Result<()>>,
    pub train: Sequences,
    pub heldout: Vec<Window>,
    /// A line for MODEL.md describing the data and split.
    pub data_note: String,
    /// Extra settings recorded in config.json's "data" section (e.g. the held-out fraction).
    pub data_json: Value,
}

pub fn run(a: TrainArgs) -> Result<()> {
    let mut file = match &a.config {
        Some(path) => RunFile {
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            ..serde_json::from_value::<RunFile>(loaded::read_json(path)?)
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
    let device = loaded::device(&a.device)?;
    eprintln!("reading {} ...", a.data.display());
    let prepared = match a.modality {
        Modality::Text => crate::train_text::prepare(&a.data, &file, &a.out, a.resume)?,
        Modality::Image => crate::train_image::prepare(&a.data, &file, &a.out, a.resume)?,
        Modality::Audio => crate::train_audio::prepare(&a.data, &file, &a.out, a.resume)?,
    };
    let arch = file
        .model
        .architecture(prepared.vocab_size, prepared.context)?;
    if file.train.seq_len > arch.context_len {
        file.train.seq_len = arch.context_len;
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    (prepared.save_files)(&a.out)?;

    // Recorded as `jielong ...` whatever the binary was called, so the card reads as a recipe.
    let command = std::iter::once("jielong".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let extra = json!({
        "training": {"command": command, "data": a.data.display().to_string(), "train": file.train},
        "data": prepared.data_json,
    });
    let run = Run {
        out: &a.out,
        modality: a.modality.name(),
        codec: &prepared.codec_json,
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
            .map(|w| w.inputs.len() - w.scored_from)
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
        &device,
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
    let sample = match a.modality {
        Modality::Text => crate::train_text::sample(&a.out, &outcome.model)?,
        Modality::Image => crate::train_image::sample(&a.out, &outcome.model)?,
        Modality::Audio => crate::train_audio::sample(&a.out, &outcome.model)?,
    };
    write_model_card(
        &a,
        &command,
        &arch,
        &file.train,
        &prepared,
        &outcome.metrics,
        &sample,
    )
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
                    if self.tty {
                        self.bar.println(line);
                    } else {
                        eprintln!("{line}");
                    }
                }
            }
            Event::Checkpoint { metrics, .. } => {
                if let Err(err) = plots::loss_curve(&out.join("loss.png"), metrics) {
                    eprintln!("warning: cannot draw the loss curve: {err:#}");
                }
            }
            Event::Interrupted { .. } => {}
        }
    }
}

fn write_model_card(
    a: &TrainArgs,
    command: &str,
    arch: &TransformerConfig,
    train: &TrainConfig,
    prepared: &Prepared,
    metrics: &[Metrics],
    sample: &str,
) -> Result<()> {
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
         context {context}, vocabulary {vocab}, {params} parameters.\n\n\
         ## Data\n\n{data}\n\n\
         ## Command\n\n```\n{command}\n```\n\n\
         ## Training\n\n{steps} steps of {batch} windows x {seq} tokens ({tokens_seen} token positions), AdamW \
         (lr {lr:e} -> {min_lr:e}, warm-up {warmup}, weight decay {wd}), gradient clipping {clip}, seed {seed}. \
         Wall-clock time {time:.0} s on this machine's `{device}` device.\n\n\
         ![loss curve](loss.png)\n\n\
         ## Held-out score\n\n{eval:.4} nats/token ({bits:.4} bits/token), final training loss {train_loss:.4}.\n\n\
         ## Sample\n\n{sample}\n",
        modality = a.modality.name(),
        layers = arch.num_layers,
        hidden = arch.hidden_size,
        heads = arch.num_heads,
        kv = arch.num_kv_heads,
        context = arch.context_len,
        vocab = arch.vocab_size,
        params = arch.num_params(),
        data = prepared.data_note,
        steps = train.steps,
        batch = train.batch_size,
        seq = train.seq_len,
        lr = train.learning_rate,
        min_lr = train.min_learning_rate,
        warmup = train.warmup_steps,
        wd = train.weight_decay,
        clip = train.grad_clip,
        seed = train.seed,
        time = last.elapsed,
        device = a.device.device,
        bits = eval / std::f64::consts::LN_2,
        train_loss = last.train_loss,
    );
    jielong_core::write_atomic(&a.out.join("MODEL.md"), card.as_bytes())
}
