//! Helpers shared by the command-line tests: run the real `jielong` binary, and small models
//! trained once per test binary on real data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The shared data folder beside the checkout (read-only in CI).
pub fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(rel)
}

pub fn jielong(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jielong")).args(args).output().expect("the jielong binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and expects success, showing stderr otherwise.
pub fn ok(args: &[&str]) -> Output {
    let o = jielong(args);
    assert!(o.status.success(), "jielong {args:?} failed:\n{}", stderr(&o));
    o
}

/// Runs and expects a clear failure: a non-zero exit, an `error:` line containing `needle`,
/// and no panic.
pub fn fails(args: &[&str], needle: &str) {
    let o = jielong(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "jielong {args:?} should fail but succeeded:\n{}", stdout(&o));
    assert!(!err.contains("panicked"), "jielong {args:?} panicked:\n{err}");
    assert!(err.to_lowercase().contains(&needle.to_lowercase()), "jielong {args:?}: expected {needle:?} in:\n{err}");
}

/// A scratch folder that lives as long as the test binary.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temp dir")).path()
}

/// A tiny character model trained for a few seconds on the first 100 kB of tiny Shakespeare.
pub fn tiny_text_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = scratch();
        let text = std::fs::read_to_string(shared("text/tinyshakespeare.txt")).unwrap();
        let data = dir.join("shakespeare-100k.txt");
        std::fs::write(&data, &text[..100_000]).unwrap();
        let config = dir.join("tiny-text.json");
        std::fs::write(
            &config,
            r#"{"model": {"hidden": 32, "layers": 2, "heads": 4, "context": 48},
                "train": {"steps": 30, "batch_size": 8, "seq_len": 48, "warmup_steps": 3,
                          "learning_rate": 0.003, "eval_every": 15, "checkpoint_every": 15}}"#,
        )
        .unwrap();
        let out = dir.join("tiny-text");
        ok(&["train", "text", "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--config", config.to_str().unwrap()]);
        out
    })
}
