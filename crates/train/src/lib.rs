//! jielong-train: the one trainer. It takes token sequences from any dataset and the nn
//! transformer; it knows no modality.
//!
//! AdamW with warm-up and cosine decay, global gradient-norm clipping, held-out evaluation,
//! atomic checkpoints every N steps and on request (Ctrl-C), and an exact resume: the batch of
//! step `s` is a pure function of `(seed, s)`, and the model and optimiser state are restored
//! bit for bit, so a resumed run ends with the same weights as an uninterrupted one.

mod average;
mod checkpoint;
mod clip;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::{Module, ParamGroup};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use jielong_core::{Batch, Sequences, Window, score};
use jielong_nn::{Dropout, Transformer, TransformerConfig, burn, save_native};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use checkpoint::Checkpoint;

/// Training hyper-parameters (the `train` section of a `--config` file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    /// Tokens per training window (at most the model's context).
    pub seq_len: usize,
    pub learning_rate: f64,
    /// The cosine schedule decays to this.
    pub min_learning_rate: f64,
    pub warmup_steps: usize,
    pub weight_decay: f32,
    pub beta2: f32,
    /// Clip the global gradient norm to this (0: no clipping).
    pub grad_clip: f32,
    pub eval_every: usize,
    /// Held-out tokens scored at each periodic evaluation, in windows spread over the whole
    /// held-out part (the final evaluation, and every one with `keep_best`, scores all).
    pub eval_tokens: usize,
    pub checkpoint_every: usize,
    pub seed: u64,
    /// Share of the embeddings and of each block's output zeroed during training (0: none).
    pub dropout: f64,
    /// Also keep the weights of the evaluation with the lowest held-out score, as a model
    /// folder in `best/` (early stopping, as nanoGPT keeps its best checkpoint). The periodic
    /// evaluations then score the whole held-out part, so that the choice compares like with
    /// like.
    pub keep_best: bool,
    /// Evaluate, keep and save an exponential moving average of the weights with this decay
    /// per step (0.998: about the last 500 steps; lower in the first steps, see
    /// [`average::decay_at`]) instead of the weights themselves (0: no average).
    pub ema_decay: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 32,
            seq_len: 256,
            learning_rate: 1e-3,
            min_learning_rate: 1e-4,
            warmup_steps: 100,
            weight_decay: 0.1,
            beta2: 0.99,
            grad_clip: 1.0,
            eval_every: 250,
            eval_tokens: 32_768,
            checkpoint_every: 250,
            seed: 1337,
            dropout: 0.0,
            keep_best: false,
            ema_decay: 0.0,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self, context_len: usize) -> Result<()> {
        if self.steps == 0 || self.batch_size == 0 || self.seq_len < 2 {
            bail!("train: steps and batch_size must be positive and seq_len at least 2");
        }
        if self.seq_len > context_len {
            bail!(
                "train: seq_len ({}) is longer than the model's context ({context_len})",
                self.seq_len
            );
        }
        if !(self.learning_rate > 0.0
            && self.learning_rate.is_finite()
            && self.min_learning_rate >= 0.0
            && self.min_learning_rate <= self.learning_rate)
        {
            bail!(
                "train: need 0 <= min_learning_rate <= learning_rate and learning_rate finite \
                 and > 0"
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("train: dropout must be at least 0 and below 1");
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            bail!("train: ema_decay must be at least 0 and below 1");
        }
        if self.eval_every == 0 || self.checkpoint_every == 0 {
            bail!("train: eval_every and checkpoint_every must be positive");
        }
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            bail!("train: grad_clip must be a number of at least 0");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!("train: weight_decay must be a number of at least 0");
        }
        if !(self.beta2 > 0.0 && self.beta2 < 1.0) {
            bail!("train: beta2 must be above 0 and below 1");
        }
        Ok(())
    }

    /// Refuses a run whose training state cannot fit in the memory available, before anything
    /// is allocated (a run that could not fit was killed by the system, or aborted, minutes
    /// in). The estimate is a lower bound, so it never refuses a run that fits: the weights,
    /// their gradients and the two AdamW moments (and the moving average), and the inputs of
    /// every product of every layer that the backward pass keeps for each token of a batch.
    pub fn check_memory(&self, arch: &TransformerConfig, available: u64) -> Result<()> {
        const GIB: f64 = (1u64 << 30) as f64;
        let copies = if self.ema_decay > 0.0 { 5.0 } else { 4.0 };
        let state = arch.num_params() as f64 * 4.0 * copies;
        let (h, i) = (arch.hidden_size as f64, arch.intermediate_size as f64);
        let per_token = arch.num_layers as f64 * (4.0 * h + 2.0 * i) * 4.0;
        let activations = self.batch_size as f64 * self.seq_len as f64 * per_token;
        if state + activations > available as f64 {
            bail!(
                "train: this run needs at least {:.1} GiB ({:.1} GiB of weights, gradients and \
                 optimiser state; {:.1} GiB of activations for batch_size {} x seq_len {}), \
                 but {:.1} GiB of memory is available: lower batch_size or seq_len, or the \
                 model's size",
                (state + activations) / GIB,
                state / GIB,
                activations / GIB,
                self.batch_size,
                self.seq_len,
                available as f64 / GIB
            );
        }
        Ok(())
    }

    /// Linear warm-up, then cosine decay to `min_learning_rate` at the last step.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = (self.steps - self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.min_learning_rate + (self.learning_rate - self.min_learning_rate) * cosine
    }
}

/// One row of `metrics.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub step: usize,
    pub train_loss: f64,
    /// Held-out nats per token, on evaluation steps.
    pub eval_loss: Option<f64>,
    pub learning_rate: f64,
    pub grad_norm: f64,
    pub tokens_per_second: f64,
    /// Wall-clock seconds of training so far (across resumes).
    pub elapsed: f64,
}

/// What the trainer reports as it goes.
pub enum Event<'a> {
    Start {
        step: usize,
        params: usize,
    },
    Step(&'a Metrics),
    Checkpoint {
        step: usize,
        metrics: &'a [Metrics],
    },
    /// `best/` now holds the weights of this step, the lowest held-out score so far.
    Best {
        step: usize,
        eval_loss: f64,
    },
    Interrupted {
        step: usize,
    },
}

/// Where a run writes: the model folder itself (`config.json`, `model.safetensors`, kept
/// loadable at every checkpoint), `metrics.csv`, `checkpoint/` for `--resume`, and with
/// `keep_best` the model folder `best/`.
pub struct Run<'a> {
    pub out: &'a Path,
    pub modality: &'a str,
    /// The codec section of the folder's `config.json` (opaque here).
    pub codec: &'a Value,
    /// Other `config.json` sections to write (the command, the data).
    pub extra: &'a Value,
}

pub struct Outcome {
    pub model: Transformer,
    pub metrics: Vec<Metrics>,
    pub interrupted: bool,
}

/// Trains (or resumes) a model. `stop` is checked after every step: when set, a checkpoint is
/// written and the run ends early.
pub fn train(
    arch: &TransformerConfig,
    config: &TrainConfig,
    train_data: &Sequences,
    heldout: &[Window],
    device: &Device,
    run: &Run,
    resume: bool,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<Outcome> {
    config.validate(arch.context_len)?;
    if let Some(available) = jielong_core::available_memory() {
        config.check_memory(arch, available)?;
    }
    train_data.check(arch.vocab_size)?;
    let device = device.clone().autodiff();
    let ckpt_dir = run.out.join("checkpoint");

    let mut stepper = Stepper::new(arch, config, &device)?;
    let (mut step, mut metrics) = (0, Vec::new());
    if resume {
        let ck = Checkpoint::read(&ckpt_dir)?;
        if &ck.architecture != arch || &ck.train != config {
            bail!(
                "cannot resume: {} was written with different settings; pass the same --config and --steps",
                ckpt_dir.display()
            );
        }
        (stepper.model, stepper.optim, stepper.average) =
            ck.restore(&ckpt_dir, stepper.model, stepper.optim, stepper.average)?;
        step = ck.step;
        metrics = ck.metrics;
    } else if ckpt_dir.join("state.json").exists() {
        bail!(
            "{} holds a checkpoint: pass --resume to continue it, or choose another --out",
            run.out.display()
        );
    }
    on_event(Event::Start {
        step,
        params: arch.num_params(),
    });

    let elapsed_before = metrics.last().map_or(0.0, |m: &Metrics| m.elapsed);
    let started = Instant::now();
    let mut interrupted = false;
    while step < config.steps {
        let tick = Instant::now();
        let lr = config.learning_rate_at(step);
        let batch = train_data.batch(config.seed, step as u64, config.batch_size, config.seq_len);
        let (loss_value, grad_norm) = stepper.step(&batch, lr, step as u64)?;
        if !loss_value.is_finite() {
            bail!("the training loss became {loss_value} at step {step}: lower the learning rate");
        }
        step += 1;

        let tokens = batch.mask.iter().filter(|&&m| m > 0.0).count();
        let mut row = Metrics {
            step,
            train_loss: loss_value,
            eval_loss: None,
            learning_rate: lr,
            grad_norm,
            tokens_per_second: tokens as f64 / tick.elapsed().as_secs_f64(),
            elapsed: elapsed_before + started.elapsed().as_secs_f64(),
        };
        let last = step == config.steps;
        if step % config.eval_every == 0 || last {
            let budget = if last || config.keep_best {
                usize::MAX
            } else {
                config.eval_tokens
            };
            let eval = evaluate(&stepper.weights(), heldout, budget)?.nats_per_token();
            // Written before the checkpoint of this step: a run interrupted in between redoes
            // the step on resume and writes the same weights again.
            if config.keep_best && best_step(&metrics).is_none_or(|(_, b)| eval < b) {
                save_native(
                    &best_dir(run.out),
                    run.modality,
                    &stepper.weights(),
                    run.codec,
                    run.extra,
                )?;
                on_event(Event::Best {
                    step,
                    eval_loss: eval,
                });
            }
            row.eval_loss = Some(eval);
        }
        metrics.push(row);
        on_event(Event::Step(metrics.last().expect("just pushed")));

        interrupted = stop.load(Ordering::SeqCst) && !last;
        if step % config.checkpoint_every == 0 || last || interrupted {
            save_native(
                run.out,
                run.modality,
                &stepper.weights(),
                run.codec,
                run.extra,
            )?;
            write_metrics_csv(&run.out.join("metrics.csv"), &metrics)?;
            Checkpoint {
                step,
                architecture: arch.clone(),
                train: config.clone(),
                metrics: metrics.clone(),
            }
            .write(
                &ckpt_dir,
                &stepper.model,
                &stepper.optim,
                stepper.average.as_ref(),
            )?;
            on_event(Event::Checkpoint {
                step,
                metrics: &metrics,
            });
        }
        if interrupted {
            on_event(Event::Interrupted { step });
            break;
        }
    }
    Ok(Outcome {
        model: stepper.weights(),
        metrics,
        interrupted,
    })
}

/// A model and its optimiser, taking one step at a time (used by [`train`] and by benchmarks).
pub struct Stepper {
    pub model: Transformer,
    pub optim: ModuleOptimizer,
    /// The moving average of the weights, with `ema_decay` (on the inner backend).
    pub average: Option<Transformer>,
    ema_decay: f64,
    grad_clip: f32,
    dropout: f64,
    seed: u64,
    device: Device,
}

impl Stepper {
    /// A fresh model (seeded by `config.seed`) on the autodiff version of `device`.
    pub fn new(arch: &TransformerConfig, config: &TrainConfig, device: &Device) -> Result<Self> {
        let device = device.clone().autodiff();
        let model = Transformer::init(arch, &device, config.seed)?;
        Ok(Self {
            average: (config.ema_decay > 0.0).then(|| model.valid()),
            ema_decay: config.ema_decay,
            model,
            optim: optimizer(config)?,
            grad_clip: config.grad_clip,
            dropout: config.dropout,
            seed: config.seed,
            device,
        })
    }

    /// Optimisation step number `step` on `batch` at learning rate `lr` (the step number seeds
    /// its dropout masks); returns the loss before the step and the gradient norm before
    /// clipping.
    pub fn step(&mut self, batch: &Batch, lr: f64, step: u64) -> Result<(f64, f64)> {
        // Run the step on one of rayon's threads (burn's pool): each of its hundreds of
        // parallel operations then starts from inside the pool instead of waking it from
        // outside and sleeping until it finishes.
        rayon::scope(|_| self.step_in_pool(batch, lr, step))
    }

    fn step_in_pool(&mut self, batch: &Batch, lr: f64, step: u64) -> Result<(f64, f64)> {
        let shape = [batch.batch, batch.len];
        let device = &self.device;
        let ids = |v: &[u32]| {
            Tensor::<2, Int>::from_data(
                TensorData::new(v.iter().map(|&x| x as i64).collect::<Vec<_>>(), shape),
                device,
            )
        };
        let mask = Tensor::from_data(TensorData::new(batch.mask.clone(), shape), device);
        let dropout = Dropout {
            rate: self.dropout,
            seed: self.seed ^ step.wrapping_mul(0xD6E8_FEB8_6659_FD93),
        };
        let loss = self.model.loss(
            ids(&batch.inputs),
            ids(&batch.targets),
            mask,
            Some(&dropout),
        );
        // A failure on the device (out of memory on a GPU) comes back as an error here.
        let loss_value = loss
            .clone()
            .try_into_scalar::<f32>()
            .map_err(|e| anyhow::anyhow!("the training step failed on the device: {e:?}"))?
            as f64;
        let mut grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let grad_norm = clip::clip_global_norm(&self.model, &mut grads, self.grad_clip)?;
        // Parameters are shared handles: the clone costs nothing and the old ones go at once.
        self.model = self.optim.step(lr, self.model.clone(), grads);
        if let Some(average) = self.average.take() {
            let decay = average::decay_at(self.ema_decay, step);
            self.average = Some(average::update(average, &self.model.valid(), decay));
        }
        Ok((loss_value, grad_norm))
    }

    /// The weights to evaluate and save: the moving average with `ema_decay`, else the
    /// weights themselves (on the inner backend either way).
    pub fn weights(&self) -> Transformer {
        self.average.clone().unwrap_or_else(|| self.model.valid())
    }
}

fn optimizer(config: &TrainConfig) -> Result<ModuleOptimizer> {
    let adamw = AdamWConfig::new()
        .with_beta_2(config.beta2)
        .with_epsilon(1e-8);
    // Norm gains and biases are not decayed (as in GPT-2 / nanoGPT).
    let no_decay = ParamGroup::from_regex(r"norm|bias").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(
        ModuleOptimizer::from(adamw.clone().with_weight_decay(config.weight_decay).build())
            .with_group(no_decay, adamw.with_weight_decay(0.0).build(), None),
    )
}

/// Held-out nats per token on about `max_tokens` scored tokens (all windows when they fit):
/// the windows of [`spread_windows`].
pub fn evaluate(
    model: &Transformer,
    heldout: &[Window],
    max_tokens: usize,
) -> Result<jielong_core::Score> {
    let model = model.valid();
    let take = spread_windows(heldout, max_tokens);
    // Inside rayon's pool, as a training step (see [`Stepper::step`]).
    rayon::scope(|_| score(&model, &take, &|_| true))
}

/// The windows that score about `max_tokens` tokens: all of them when they fit, else evenly
/// spaced ones over the whole held-out part, in order. The first windows alone are not a fair
/// sample: a text's first scenes, a set's first speaker or class.
pub fn spread_windows(heldout: &[Window], max_tokens: usize) -> Vec<Window> {
    let total: usize = heldout.iter().map(Window::predicted).sum();
    if total <= max_tokens {
        return heldout.to_vec();
    }
    // Windows hold about the same number of targets, so the share of windows is the share of
    // tokens; at least one window.
    let n = (heldout.len() as u128 * max_tokens as u128).div_ceil(total as u128) as usize;
    let n = n.clamp(1, heldout.len());
    (0..n)
        .map(|i| heldout[i * heldout.len() / n].clone())
        .collect()
}

pub fn write_metrics_csv(path: &Path, metrics: &[Metrics]) -> Result<()> {
    let mut csv = String::from(
        "step,train_loss,eval_loss,learning_rate,grad_norm,tokens_per_second,elapsed_seconds\n",
    );
    for m in metrics {
        csv += &format!(
            "{},{:.6},{},{:.3e},{:.4},{:.1},{:.1}\n",
            m.step,
            m.train_loss,
            m.eval_loss.map_or(String::new(), |e| format!("{e:.6}")),
            m.learning_rate,
            m.grad_norm,
            m.tokens_per_second,
            m.elapsed
        );
    }
    jielong_core::write_atomic(path, csv.as_bytes())
}

/// The step with the lowest held-out score among `metrics` (the first of equal ones), and
/// the score.
pub fn best_step(metrics: &[Metrics]) -> Option<(usize, f64)> {
    metrics
        .iter()
        .filter_map(|m| Some((m.step, m.eval_loss?)))
        .fold(None, |best, (s, e)| match best {
            Some((_, b)) if b <= e => best,
            _ => Some((s, e)),
        })
}

/// The model folder of a run's best evaluation (`keep_best`).
pub fn best_dir(out: &Path) -> PathBuf {
    out.join("best")
}

/// The checkpoint folder of a run.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}
