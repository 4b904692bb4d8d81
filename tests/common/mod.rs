//! Helpers shared by the command-line tests: run the real `jielong` binary, and small models
//! trained once per test binary on real data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The shared data folder beside the checkout (read-only in CI).
pub fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel)
}

pub fn jielong(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jielong"))
        .args(args)
        .output()
        .expect("the jielong binary runs")
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
    assert!(
        o.status.success(),
        "jielong {args:?} failed:\n{}",
        stderr(&o)
    );
    o
}

/// Runs and expects a clear failure: a non-zero exit, an `error:` line containing `needle`,
/// and no panic.
pub fn fails(args: &[&str], needle: &str) {
    let o = jielong(args);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "jielong {args:?} should fail but succeeded:\n{}",
        stdout(&o)
    );
    assert!(
        !err.contains("panicked"),
        "jielong {args:?} panicked:\n{err}"
    );
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "jielong {args:?}: expected {needle:?} in:\n{err}"
    );
}

/// A scratch folder for this test binary, emptied at its start: inside cargo's temporary
/// folder for integration tests, so runs leave nothing behind elsewhere.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(env!("CARGO_CRATE_NAME"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        dir
    })
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
        ok(&[
            "train",
            "text",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ]);
        out
    })
}

// ---- Helpers for the image and audio command-line tests (tests/cli_image.rs, tests/cli_audio.rs).

/// A path as the `&str` the command line takes (the temp folders are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Runs, expects success, and parses stdout as one JSON object (`--format json`).
pub fn ok_json(args: &[&str]) -> serde_json::Value {
    let o = ok(args);
    let out = stdout(&o);
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("jielong {args:?} printed no JSON ({e}):\n{out}"))
}

/// Trains a `modality` model on `data` into `out` with the JSON training config `config`
/// (written beside `out` as `<out>.json`), expecting success; returns the run's output.
pub fn train_with(modality: &str, data: &Path, out: &Path, config: &str) -> Output {
    let config_path = out.with_extension("json");
    std::fs::write(&config_path, config).unwrap();
    ok(&[
        "train",
        modality,
        "--data",
        p(data),
        "--out",
        p(out),
        "--config",
        p(&config_path),
    ])
}

/// The bytes of a gzip file, unpacked with the system's `gzip` (no Rust gzip crate is a
/// dev-dependency of the root package).
pub fn gunzip(path: &Path) -> Vec<u8> {
    let o = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("gzip runs");
    assert!(
        o.status.success(),
        "gzip -dc {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Copies the files (not sub-folders) of a model folder into a fresh folder `to`.
pub fn copy_files(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && !skip.contains(&name.as_str()) {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}
