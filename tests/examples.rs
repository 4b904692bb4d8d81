//! The examples in `examples/` are built by `cargo test`; these run them on the shipped models
//! and check what they write, so the library calls they show keep working.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{scratch, stdout};

/// The path of a built example: `target/<profile>/examples/NAME`, beside this test's `deps/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    profile_dir.join("examples").join(name)
}

fn run(name: &str, args: &[&str]) -> String {
    let path = example(name);
    assert!(path.exists(), "{} was not built", path.display());
    let o = Command::new(&path)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the example runs");
    assert!(
        o.status.success(),
        "{name} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
}

#[test]
fn the_text_example_continues_its_prompt() {
    let out = run("complete_text", &["models/shakespeare-char", "KING:"]);
    assert!(out.starts_with("KING:"), "{out}");
    assert!(out.trim_end().len() > "KING:".len() + 60, "{out}");
}

#[test]
fn the_image_example_writes_a_grid_of_digits() {
    let path = scratch().join("threes.png");
    let out = run(
        "draw_image",
        &["models/mnist-binary", "3", path.to_str().unwrap()],
    );
    assert!(out.contains("4 images of class 3"), "{out}");
    let img = image::open(&path).unwrap();
    // Four 28x28 digits in one row, each scaled by 4 (with thin gaps between them).
    let tile = 28 * 4;
    assert!(
        img.width() >= 4 * tile && img.width() < 5 * tile,
        "{}",
        img.width()
    );
    assert!(
        img.height() >= tile && img.height() < 2 * tile,
        "{}",
        img.height()
    );
}

#[test]
fn the_audio_example_writes_a_clip() {
    let path = scratch().join("four.wav");
    let out = run(
        "draw_audio",
        &["models/spoken-digits", "4", path.to_str().unwrap(), "0.1"],
    );
    // The shipped model's own rate, from its config.json (the example writes at that rate).
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/spoken-digits/config.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let rate = config["codec"]["rate"].as_u64().unwrap() as u32;
    let reader = hound::WavReader::open(&path).unwrap();
    assert_eq!(reader.spec().sample_rate, rate);
    assert_eq!(reader.len(), rate / 10, "0.1 s");
    assert!(out.contains(&format!("{} samples", rate / 10)), "{out}");
}
