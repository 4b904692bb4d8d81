//! The trainer on a tiny real sample: it learns, and an interrupted run resumes to exactly the
//! weights of an uninterrupted one.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use jielong_core::{Sequences, Window, windows};
use jielong_nn::burn::tensor::Device;
use jielong_nn::{Transformer, TransformerConfig};
use jielong_train::{
    Event, Outcome, Run, TrainConfig, best_dir, best_step, evaluate, spread_windows, train,
};

/// The first 60 kB of tiny Shakespeare as bytes: 54 kB to train on, 6 kB held out.
fn shakespeare() -> (Sequences, Vec<Window>) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/text/tinyshakespeare.txt");
    let bytes = std::fs::read(path).expect("tiny shakespeare");
    let ids: Vec<u32> = bytes[..60_000].iter().map(|&b| b as u32).collect();
    let train = Sequences {
        seqs: vec![ids[..54_000].to_vec()],
        ..Default::default()
    };
    (train, windows(&ids[54_000..], 0, 32).unwrap())
}

fn arch() -> TransformerConfig {
    TransformerConfig::small(256, 32, 2, 4, 32)
}

fn config(steps: usize) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 8,
        seq_len: 32,
        learning_rate: 3e-3,
        warmup_steps: 3,
        eval_every: 1000,
        eval_tokens: 2048,
        checkpoint_every: 4,
        ..Default::default()
    }
}

fn run_training(out: &Path, cfg: &TrainConfig, resume: bool, stop_after: Option<usize>) -> Outcome {
    let (data, heldout) = shakespeare();
    let codec = serde_json::json!({"kind": "bytes"});
    let extra = serde_json::json!({});
    let run = Run {
        out,
        modality: "text",
        codec: &codec,
        extra: &extra,
    };
    let stop = AtomicBool::new(false);
    train(
        &arch(),
        cfg,
        &data,
        &heldout,
        &Device::flex(),
        &run,
        resume,
        &stop,
        &mut |e| {
            if let (Event::Step(m), Some(n)) = (e, stop_after) {
                if m.step == n {
                    stop.store(true, Ordering::SeqCst);
                }
            }
        },
    )
    .unwrap()
}

fn weights(model: &Transformer) -> Vec<(String, Vec<f32>)> {
    model
        .named_tensors()
        .into_iter()
        .map(|(n, d)| (n, d.try_to_vec::<f32>().unwrap()))
        .collect()
}

#[test]
fn a_few_steps_lower_the_held_out_loss() {
    let (_, heldout) = shakespeare();
    let device = Device::flex();
    let before = evaluate(
        &Transformer::init(&arch(), &device, 1337).unwrap(),
        &heldout,
        usize::MAX,
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let outcome = run_training(out.path(), &config(40), false, None);
    let after = outcome.metrics.last().unwrap().eval_loss.unwrap();
    assert!(
        before.nats_per_token() > 5.0,
        "an untrained byte model is near ln 256 = 5.55"
    );
    assert!(
        after < before.nats_per_token() - 1.0,
        "held-out {} -> {after}",
        before.nats_per_token()
    );
    // The folder written along the way loads and scores the same.
    let loaded = jielong_nn::ModelFolder::open(out.path())
        .unwrap()
        .load(&device)
        .unwrap();
    let again = evaluate(&loaded, &heldout, usize::MAX)
        .unwrap()
        .nats_per_token();
    assert!((again - after).abs() < 1e-4, "{again} vs {after}");
    assert!(out.path().join("metrics.csv").exists());
}

#[test]
fn resume_after_interruption_gives_the_same_weights() {
    // With dropout: its masks too must be drawn again exactly after a resume.
    resume_gives_the_same_weights(TrainConfig {
        dropout: 0.1,
        ..config(12)
    });
}

#[test]
fn resume_restores_the_moving_average_of_the_weights() {
    resume_gives_the_same_weights(TrainConfig {
        ema_decay: 0.9,
        ..config(12)
    });
}

fn resume_gives_the_same_weights(cfg: TrainConfig) {
    let straight = tempfile::tempdir().unwrap();
    let full = run_training(straight.path(), &cfg, false, None);

    let broken = tempfile::tempdir().unwrap();
    let first = run_training(broken.path(), &cfg, false, Some(6));
    assert!(first.interrupted);
    assert_eq!(first.metrics.len(), 6);
    // A second start without --resume must refuse to overwrite the checkpoint.
    let (data, heldout) = shakespeare();
    let codec = serde_json::json!({});
    let run = Run {
        out: broken.path(),
        modality: "text",
        codec: &codec,
        extra: &codec,
    };
    let err = train(
        &arch(),
        &cfg,
        &data,
        &heldout,
        &Device::flex(),
        &run,
        false,
        &AtomicBool::new(false),
        &mut |_| {},
    );
    assert!(err.err().unwrap().to_string().contains("--resume"));

    let resumed = run_training(broken.path(), &cfg, true, None);
    assert!(!resumed.interrupted);
    assert_eq!(resumed.metrics.len(), 12);
    for (a, b) in full.metrics.iter().zip(&resumed.metrics) {
        assert_eq!(a.train_loss, b.train_loss, "step {}", a.step);
    }
    assert_eq!(
        weights(&full.model),
        weights(&resumed.model),
        "weights differ after resume"
    );

    // Resuming with other settings is refused.
    let err = train(
        &arch(),
        &config(20),
        &data,
        &heldout,
        &Device::flex(),
        &run,
        true,
        &AtomicBool::new(false),
        &mut |_| {},
    );
    assert!(
        err.err()
            .unwrap()
            .to_string()
            .contains("different settings")
    );
}

/// The running evaluation's budget takes windows from the whole held-out part, evenly spaced,
/// not only its first ones.
#[test]
fn a_budgeted_evaluation_spreads_its_windows_over_the_held_out_part() {
    let ids: Vec<u32> = (0..=9_600).collect(); // 9,600 targets: 300 windows of 32
    let all = windows(&ids, 0, 32).unwrap();
    let index = |w: &Window| all.iter().position(|a| a == w).unwrap();

    let take = spread_windows(&all, 640);
    let at: Vec<usize> = take.iter().map(index).collect();
    assert_eq!(at.len(), 20, "640 tokens are 20 windows of 32");
    assert_eq!(at[0], 0);
    assert!(
        at[19] >= all.len() * 19 / 20,
        "the last window taken ({}) lies in the last twentieth of {}",
        at[19],
        all.len()
    );
    let step = all.len() as f64 / 20.0;
    for pair in at.windows(2) {
        let gap = (pair[1] - pair[0]) as f64;
        assert!((gap - step).abs() < 1.0, "gaps even: {at:?}");
    }

    assert_eq!(
        spread_windows(&all, usize::MAX),
        all,
        "everything when it fits"
    );
    assert_eq!(spread_windows(&all, 1).len(), 1, "at least one window");
}

/// With `keep_best`, `best/` holds the weights of the evaluation with the lowest held-out
/// score, scored on the whole held-out part (not the `eval_tokens` sample), even when later
/// steps score worse.
#[test]
fn keep_best_keeps_the_weights_of_the_lowest_held_out_score() {
    // 200 bytes to train on, seen again and again: the model learns them by heart and the
    // held-out score gets worse again.
    let (mut data, heldout) = shakespeare();
    data.seqs[0].truncate(200);
    let cfg = TrainConfig {
        keep_best: true,
        eval_every: 20,
        eval_tokens: 256,
        ..config(300)
    };
    let out = tempfile::tempdir().unwrap();
    let codec = serde_json::json!({"kind": "bytes"});
    let run = Run {
        out: out.path(),
        modality: "text",
        codec: &codec,
        extra: &codec,
    };
    let device = Device::flex();
    let outcome = train(
        &arch(),
        &cfg,
        &data,
        &heldout,
        &device,
        &run,
        false,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    let (step, best) = best_step(&outcome.metrics).unwrap();
    let last = outcome.metrics.last().unwrap().eval_loss.unwrap();
    assert!(
        best < last - 0.05,
        "the test needs a run that gets worse: best {best} at step {step}, last {last}"
    );

    let kept = jielong_nn::ModelFolder::open(&best_dir(out.path()))
        .unwrap()
        .load(&device)
        .unwrap();
    let again = evaluate(&kept, &heldout, usize::MAX)
        .unwrap()
        .nats_per_token();
    assert!(
        (again - best).abs() < 1e-4,
        "best/ scores {again}, the run's best evaluation {best} at step {step}"
    );
}

/// With `ema_decay` the run evaluates and saves the moving average of its weights, not the
/// weights of the last step (which the checkpoint keeps for a resume).
#[test]
fn ema_decay_saves_and_scores_the_average_of_the_weights() {
    let (_, heldout) = shakespeare();
    let device = Device::flex();
    let cfg = TrainConfig {
        ema_decay: 0.9,
        ..config(20)
    };
    let out = tempfile::tempdir().unwrap();
    let outcome = run_training(out.path(), &cfg, false, None);
    let saved = jielong_nn::ModelFolder::open(out.path())
        .unwrap()
        .load(&device)
        .unwrap();
    assert_eq!(weights(&saved), weights(&outcome.model));
    let scored = evaluate(&saved, &heldout, usize::MAX)
        .unwrap()
        .nats_per_token();
    let recorded = outcome.metrics.last().unwrap().eval_loss.unwrap();
    assert!((scored - recorded).abs() < 1e-4, "{scored} vs {recorded}");

    // The same run without the average ends on other weights: those of the last step.
    let plain = tempfile::tempdir().unwrap();
    let last_step = run_training(plain.path(), &config(20), false, None);
    let (a, b) = (weights(&outcome.model), weights(&last_step.model));
    let differ = a
        .iter()
        .zip(&b)
        .filter(|((_, x), (_, y))| x.iter().zip(y).any(|(x, y)| (x - y).abs() > 1e-5))
        .count();
    assert!(
        differ > a.len() / 2,
        "{differ} of {} tensors differ",
        a.len()
    );
    // ... and close to them: the average follows the training (an untrained model scores
    // about 5.5 here).
    let plain_eval = last_step.metrics.last().unwrap().eval_loss.unwrap();
    assert!(
        (recorded - plain_eval).abs() < 0.3 && plain_eval < 4.5,
        "average {recorded}, last step {plain_eval}"
    );
    assert_eq!(
        outcome
            .metrics
            .iter()
            .map(|m| m.train_loss)
            .collect::<Vec<_>>(),
        last_step
            .metrics
            .iter()
            .map(|m| m.train_loss)
            .collect::<Vec<_>>(),
        "the average does not change the training itself"
    );

    let bad = TrainConfig {
        ema_decay: 1.0,
        ..config(20)
    };
    assert!(
        bad.validate(32)
            .unwrap_err()
            .to_string()
            .contains("ema_decay")
    );
}

#[test]
fn nonsense_settings_and_runs_that_cannot_fit_are_refused() {
    for (bad, field) in [
        (
            TrainConfig {
                grad_clip: -1.0,
                ..config(5)
            },
            "grad_clip",
        ),
        (
            TrainConfig {
                learning_rate: f64::INFINITY,
                ..config(5)
            },
            "learning_rate",
        ),
        (
            TrainConfig {
                weight_decay: f32::NAN,
                ..config(5)
            },
            "weight_decay",
        ),
        (
            TrainConfig {
                beta2: 1.0,
                ..config(5)
            },
            "beta2",
        ),
    ] {
        let e = bad.validate(32).unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }

    // The lower bound at this shape: 4 copies of the parameters (no moving average), and per
    // token of the batch each layer's product inputs (4 x hidden + 2 x intermediate floats).
    let arch = arch();
    let cfg = config(5);
    let state = arch.num_params() as u64 * 16;
    let per_token =
        (arch.num_layers * (4 * arch.hidden_size + 2 * arch.intermediate_size) * 4) as u64;
    let need = state + (cfg.batch_size * cfg.seq_len) as u64 * per_token;
    cfg.check_memory(&arch, need).unwrap();
    let e = cfg.check_memory(&arch, need - 1).unwrap_err().to_string();
    assert!(e.contains("lower batch_size or seq_len"), "{e}");
    // A batch of a hundred million windows: refused on any machine, before allocating.
    let huge = TrainConfig {
        batch_size: 100_000_000,
        ..config(5)
    };
    assert!(huge.check_memory(&arch, 1 << 40).is_err());
    // The moving average adds a fifth copy.
    let averaged = TrainConfig {
        ema_decay: 0.99,
        ..config(5)
    };
    assert!(averaged.check_memory(&arch, need).is_err());
}
