//! `jielong` on text, through the real binary: training, generation, evaluation, and a clear
//! error (never a panic) for every bad input.

mod common;

use common::*;
use serde_json::Value;

fn model() -> String {
    tiny_text_model().to_str().unwrap().to_string()
}

#[test]
fn training_writes_a_complete_model_folder() {
    let dir = tiny_text_model();
    for file in [
        "config.json",
        "model.safetensors",
        "MODEL.md",
        "metrics.csv",
        "loss.png",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 31, "a header and one row per step");
    let png = image::open(dir.join("loss.png")).unwrap();
    assert_eq!((png.width(), png.height()), (800, 480));
    let card = std::fs::read_to_string(dir.join("MODEL.md")).unwrap();
    assert!(
        card.contains("nats/token") && card.contains("jielong train text"),
        "{card}"
    );
}

#[test]
fn json_output_has_the_new_tokens_only_and_seeds_reproduce() {
    let m = model();
    let run = |seed: &str| -> Value {
        let o = ok(&[
            "generate",
            "text",
            "--model",
            &m,
            "--prompt",
            "ROMEO:",
            "--max-new-tokens",
            "20",
            "--seed",
            seed,
            "--format",
            "json",
        ]);
        serde_json::from_str(stdout(&o).trim()).unwrap()
    };
    let a = run("7");
    assert_eq!(a["prompt_ids"].as_array().unwrap().len(), 6);
    assert_eq!(a["ids"].as_array().unwrap().len(), 20);
    assert_eq!(a["text"].as_str().unwrap().chars().count(), 20);
    assert_eq!(a, run("7"), "the same seed must give the same output");
    assert_ne!(a["ids"], run("8")["ids"]);

    // --prompt-ids gives the same as the text it encodes.
    let ids: Vec<String> = a["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let o = ok(&[
        "generate",
        "text",
        "--model",
        &m,
        "--prompt-ids",
        &ids.join(","),
        "--max-new-tokens",
        "20",
        "--seed",
        "7",
        "--format",
        "json",
    ]);
    let b: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(a["ids"], b["ids"]);
}

#[test]
fn greedy_is_deterministic_and_show_probs_marks_each_draw() {
    let m = model();
    let o = ok(&[
        "generate",
        "text",
        "--model",
        &m,
        "--prompt",
        "KING",
        "--max-new-tokens",
        "6",
        "--greedy",
        "--show-probs",
        "3",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6);
    for s in steps {
        let top = s["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy draws the most likely token.
        assert_eq!(top[0]["id"], s["id"]);
        let p: Vec<f64> = top.iter().map(|t| t["prob"].as_f64().unwrap()).collect();
        assert!(p[0] >= p[1] && p[1] >= p[2]);
    }
    let o = ok(&[
        "generate",
        "text",
        "--model",
        &m,
        "--prompt",
        "KING",
        "--max-new-tokens",
        "4",
        "--show-probs",
        "2",
    ]);
    let out = stdout(&o);
    assert_eq!(out.lines().filter(|l| l.contains('%')).count(), 4, "{out}");
    assert!(out.contains('*') || out.contains("drawn"));
}

#[test]
fn stop_strings_and_context_overflow() {
    let m = model();
    let o = ok(&[
        "generate",
        "text",
        "--model",
        &m,
        "--prompt",
        "ROMEO:",
        "--max-new-tokens",
        "200",
        "--stop",
        "\n",
        "--format",
        "json",
        "--seed",
        "1",
    ]);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(!v["text"].as_str().unwrap().contains('\n'));
    // The tiny model's context is 48 tokens: without --slide generation stops there and says so.
    let o = ok(&[
        "generate",
        "text",
        "--model",
        &m,
        "--prompt",
        "ROMEO:",
        "--max-new-tokens",
        "100",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["finish"], "context_full");
    assert_eq!(v["ids"].as_array().unwrap().len(), 48 - 6 + 1);
    assert!(stderr(&o).contains("--slide"));
    let o = ok(&[
        "generate",
        "text",
        "--model",
        &m,
        "--prompt",
        "ROMEO:",
        "--max-new-tokens",
        "100",
        "--slide",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["ids"].as_array().unwrap().len(), 100);
}

#[test]
fn eval_reports_nats_and_bits() {
    let m = model();
    let data = scratch().join("shakespeare-100k.txt");
    let o = ok(&[
        "eval",
        "text",
        "--model",
        &m,
        "--data",
        data.to_str().unwrap(),
        "--part",
        "heldout",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let nats = v["nats_per_token"].as_f64().unwrap();
    assert!((v["bits_per_token"].as_f64().unwrap() - nats / std::f64::consts::LN_2).abs() < 1e-9);
    // 10% of 100,000 characters, less the first one (nothing predicts it).
    assert_eq!(v["tokens"], 9_999);
    assert!(
        nats < (65f64).ln(),
        "a trained model beats uniform over the alphabet: {nats}"
    );
}

#[test]
fn bad_inputs_get_clear_errors() {
    let m = model();
    let missing = scratch().join("no-such-model");
    let missing = p(&missing);
    let long_prompt = "x".repeat(60);
    let x_png = scratch().join("x.png");

    // Corrupt model files: weights that are not safetensors; config.json that is not JSON.
    let broken_weights = scratch().join("broken-weights-model");
    let broken_config = scratch().join("broken-config-model");
    for broken in [&broken_weights, &broken_config] {
        std::fs::create_dir_all(broken).unwrap();
        std::fs::copy(
            tiny_text_model().join("config.json"),
            broken.join("config.json"),
        )
        .unwrap();
        std::fs::write(broken.join("model.safetensors"), b"garbage").unwrap();
    }
    std::fs::write(broken_config.join("config.json"), b"{ not json").unwrap();

    // Training data: empty, not UTF-8; a config with a misspelt key.
    let out = scratch().join("never-written");
    let out = p(&out);
    let empty = scratch().join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    let binary = scratch().join("binary.txt");
    std::fs::write(&binary, [0xffu8, 0xfe, 0x00, 0x80]).unwrap();
    let data = scratch().join("shakespeare-100k.txt");
    let bad_config = scratch().join("bad-config.json");
    std::fs::write(&bad_config, r#"{"model": {"hiden": 3}}"#).unwrap();
    let corpus = shared("text/tinyshakespeare.txt");

    let mut cases = vec![
        bad(
            &["generate", "text", "--model", missing, "--prompt", "a"],
            "does not exist",
        ),
        bad(
            &["generate", "text", "--model", &m, "--prompt", ""],
            "empty",
        ),
        bad(&["generate", "text", "--model", &m], "--prompt"),
        bad(
            &["generate", "text", "--model", &m, "--prompt", "ROMEO 接龍"],
            "not in this model's vocabulary",
        ),
        bad(
            &["generate", "text", "--model", &m, "--prompt-ids", "1,2,999"],
            "outside",
        ),
        bad(
            &["generate", "text", "--model", &m, "--prompt", &long_prompt],
            "context",
        ),
    ];
    for (flag, value, needle) in [
        ("--temperature", "0", "temperature"),
        ("--temperature", "-1", "temperature"),
        ("--top-k", "0", "top-k"),
        ("--top-p", "1.5", "top-p"),
        ("--min-p", "1", "min-p"),
        ("--repetition-penalty", "0", "repetition-penalty"),
        ("--show-probs", "0", "show-probs"),
        ("--count", "0", "count"),
        // A billion sequences in one batch would exhaust the memory: refused before loading.
        ("--count", "1000000000", "at most 1024"),
    ] {
        cases.push(bad(
            &[
                "generate", "text", "--model", &m, "--prompt", "A", flag, value,
            ],
            needle,
        ));
    }
    cases.extend([
        // A text model is not an image or audio model, and a text file is not a model.
        bad(
            &["generate", "image", "--model", &m, "--out", p(&x_png)],
            "text model",
        ),
        bad(
            &[
                "eval", "audio", "--model", &m, "--data", ".", "--format", "json",
            ],
            "text model",
        ),
        // Corrupt model files.
        bad(
            &[
                "generate",
                "text",
                "--model",
                p(&broken_weights),
                "--prompt",
                "A",
            ],
            "safetensors",
        ),
        bad(
            &[
                "generate",
                "text",
                "--model",
                p(&broken_config),
                "--prompt",
                "A",
            ],
            "not valid JSON",
        ),
        // Training data problems.
        bad(
            &["train", "text", "--data", missing, "--out", out],
            "cannot read",
        ),
        bad(
            &["train", "text", "--data", p(&empty), "--out", out],
            "empty",
        ),
        bad(
            &["train", "text", "--data", p(&binary), "--out", out],
            "not UTF-8",
        ),
        bad(
            &[
                "train",
                "text",
                "--data",
                p(&data),
                "--out",
                out,
                "--resume",
            ],
            "nothing to resume",
        ),
        bad(
            &[
                "train",
                "text",
                "--data",
                p(&data),
                "--out",
                out,
                "--config",
                p(&bad_config),
            ],
            "hiden",
        ),
        bad(
            &[
                "eval", "text", "--model", &m, "--data", missing, "--format", "json",
            ],
            "cannot read",
        ),
        bad(
            &[
                "eval",
                "text",
                "--model",
                &m,
                "--data",
                p(&corpus),
                "--check-classes",
                "2",
            ],
            "for image and audio models",
        ),
        bad(
            &[
                "generate", "text", "--model", &m, "--prompt", "A", "--device", "tpu",
            ],
            "unknown device",
        ),
    ]);
    all_fail(cases);
}

#[test]
fn ctrl_c_writes_a_checkpoint_and_resume_finishes_with_identical_weights() {
    let dir = scratch().join("interrupt");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(shared("text/tinyshakespeare.txt")).unwrap();
    let data = dir.join("data.txt");
    std::fs::write(&data, &text[..50_000]).unwrap();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        r#"{"model": {"hidden": 16, "layers": 1, "heads": 2, "context": 16},
            "train": {"steps": 600, "batch_size": 4, "seq_len": 16, "warmup_steps": 5,
                      "eval_every": 300, "eval_tokens": 256, "checkpoint_every": 5,
                      "ema_decay": 0.99}}"#,
    )
    .unwrap();
    let args = |out: &std::path::Path| {
        vec![
            "train".to_string(),
            "text".into(),
            "--data".into(),
            data.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--config".into(),
            config.display().to_string(),
        ]
    };
    let straight = dir.join("straight");
    ok(&args(&straight));

    // Start a second run, interrupt it once its first checkpoint exists, as Ctrl-C would.
    let broken = dir.join("broken");
    let out = interrupt_at_first_checkpoint(&args(&broken), &broken);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("--resume"),
        "the user is told how to continue: {err}"
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(broken.join("checkpoint/state.json")).unwrap(),
    )
    .unwrap();
    let stopped = state["step"].as_u64().unwrap();
    assert!(
        stopped < 600,
        "the run was interrupted early (at step {stopped})"
    );

    let mut resume = args(&broken);
    resume.push("--resume".into());
    ok(&resume);
    // With `ema_decay` the folder holds the moving average, which the checkpoint keeps too.
    let a = std::fs::read(straight.join("model.safetensors")).unwrap();
    let b = std::fs::read(broken.join("model.safetensors")).unwrap();
    assert!(a == b, "resumed weights differ from the uninterrupted run");
    let card = std::fs::read_to_string(broken.join("MODEL.md")).unwrap();
    assert!(card.contains("moving average"), "{card}");
    let csv = std::fs::read_to_string(broken.join("metrics.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        601,
        "one metrics row per step across the interruption"
    );
}

#[test]
fn bench_reports_every_field_for_the_weights_and_threads_asked_for() {
    let m = model();
    let bench = |extra: &[&str]| {
        let mut args = vec!["bench", "--model", &m, "--format", "json", "--tokens", "6"];
        args.extend_from_slice(extra);
        ok_json(&args)
    };
    let v = bench(&["--train-steps", "1", "--train-batch", "2", "--threads", "1"]);
    for field in [
        "generate_tokens_per_second_batch1",
        "generate_tokens_per_second_batch16",
        "train_tokens_per_second",
        "peak_memory_mib_generate",
        "peak_memory_mib",
        "load_seconds",
    ] {
        let x = v[field].as_f64();
        assert!(x.is_some_and(|x| x > 0.0), "{field} in {v}");
    }
    assert_eq!(v["threads"], 1);
    assert_eq!(v["weights"], "stored");
    assert_eq!(v["train_batch"], "2 x 48");
    assert_eq!(v["modality"], "text");
    let params = v["parameters"].as_u64().unwrap();
    assert!(params > 10_000, "{params}");

    // Generation only, on bf16 copies of the weights and every core: training is not measured.
    let v = bench(&["--no-train", "--weights", "bf16"]);
    assert!(v["train_tokens_per_second"].is_null(), "{v}");
    assert_eq!(v["weights"], "bf16");
    assert!(v["generate_tokens_per_second_batch16"].as_f64().unwrap() > 0.0);
    assert!(v["threads"].as_u64().unwrap() >= 1);

    all_fail(vec![
        bad(&["bench", "--model", &m, "--tokens", "0"], "--tokens"),
        bad(
            &["bench", "--model", &m, "--train-batch", "0"],
            "--train-batch",
        ),
        bad(&["bench", "--model", &m, "--threads", "0"], "threads"),
        // Beyond the cap, before the process's limit on threads could turn it into a panic.
        bad(
            &["bench", "--model", &m, "--threads", "100000"],
            "at most 1024",
        ),
        bad(&["bench", "--model", &m, "--weights", "q3"], "q3"),
        bad(&["bench", "--model", "no/such/model"], "no/such/model"),
    ]);
}
