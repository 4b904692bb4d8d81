//! Helpers shared by the command-line tests: run the real `jielong` binary, and small models
//! trained once per test binary on real data.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The shared data folder beside the checkout (read-only in CI).
pub fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel)
}

pub fn jielong<S: AsRef<OsStr>>(args: &[S]) -> Output {
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
pub fn ok<S: AsRef<OsStr> + Debug>(args: &[S]) -> Output {
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
    let case = bad(args, needle);
    if let Some(wrong) = case.mismatch(&case.run()) {
        panic!("{wrong}");
    }
}

/// One row of a table of bad inputs checked by [`all_fail`]: the arguments, and what the error
/// must say.
#[derive(Clone, Debug)]
pub struct Bad {
    args: Vec<String>,
    needles: Vec<String>,
    /// The needles as written (case-sensitive) and an `error:` in stderr; otherwise one needle
    /// in any case, as [`fails`] checks.
    exact: bool,
}

/// A case that must fail as [`fails`] checks: a non-zero exit, no panic, and `needle` in stderr
/// (in any case).
pub fn bad(args: &[&str], needle: &str) -> Bad {
    Bad {
        args: args.iter().map(|a| a.to_string()).collect(),
        needles: vec![needle.to_string()],
        exact: false,
    }
}

/// A case that must fail with `error:` and every one of `needles`, exactly as written, in
/// stderr (and no panic).
pub fn bad_with(args: &[&str], needles: &[&str]) -> Bad {
    Bad {
        args: args.iter().map(|a| a.to_string()).collect(),
        needles: needles.iter().map(|n| n.to_string()).collect(),
        exact: true,
    }
}

impl Bad {
    fn run(&self) -> Output {
        Command::new(env!("CARGO_BIN_EXE_jielong"))
            .args(&self.args)
            .output()
            .expect("the jielong binary runs")
    }

    /// What is wrong with the run `o` of this case, if anything.
    fn mismatch(&self, o: &Output) -> Option<String> {
        let (args, err) = (&self.args, stderr(o));
        if o.status.success() {
            return Some(format!(
                "jielong {args:?} should fail but succeeded:\n{}",
                stdout(o)
            ));
        }
        if err.contains("panicked") {
            return Some(format!("jielong {args:?} panicked:\n{err}"));
        }
        if self.exact && !err.contains("error:") {
            return Some(format!("jielong {args:?}: no error line in:\n{err}"));
        }
        let missing: Vec<&String> = self
            .needles
            .iter()
            .filter(|n| {
                if self.exact {
                    !err.contains(n.as_str())
                } else {
                    !err.to_lowercase().contains(&n.to_lowercase())
                }
            })
            .collect();
        (!missing.is_empty()).then(|| {
            let missing = missing.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>();
            format!(
                "jielong {args:?}: expected {} in:\n{err}",
                missing.join(" and ")
            )
        })
    }
}

/// Runs every bad-input case (independent runs, several at a time) and then fails once,
/// listing every case that did not fail as it should: a success, a panic, a missing needle.
pub fn all_fail(cases: Vec<Bad>) {
    assert!(!cases.is_empty(), "an empty table of bad inputs");
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8)
        .min(cases.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut wrong: Vec<(usize, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut found = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(case) = cases.get(i) else {
                            return found;
                        };
                        if let Some(m) = case.mismatch(&case.run()) {
                            found.push((i, m));
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker of all_fail"))
            .collect()
    });
    wrong.sort_by_key(|(i, _)| *i);
    assert!(
        wrong.is_empty(),
        "{} of {} bad-input cases did not fail as expected:\n\n{}",
        wrong.len(),
        cases.len(),
        wrong
            .iter()
            .map(|(i, m)| format!("case {}: {m}", i + 1))
            .collect::<Vec<_>>()
            .join("\n\n")
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
pub fn ok_json<S: AsRef<OsStr> + Debug>(args: &[S]) -> serde_json::Value {
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

/// Runs `jielong ARGS` (a training run writing to `out`) and interrupts it once its first
/// checkpoint exists, as Ctrl-C would; returns what the run printed as it stopped.
pub fn interrupt_at_first_checkpoint(args: &[String], out: &Path) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_jielong"))
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while !out.join("checkpoint/state.json").exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait_with_output().unwrap()
}
