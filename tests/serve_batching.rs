//! Continuous batching: requests share one batch per model, yet each gets exactly what it would
//! get alone, and what `jielong generate` gives for the same settings.

mod serve_support;

use std::thread;

use serde_json::{Value, json};
use serve_support::*;

fn text_of(v: &Value) -> String {
    v["choices"][0]["text"].as_str().unwrap().to_string()
}

#[test]
fn a_seed_gives_the_same_text_alone_in_a_batch_and_on_the_command_line() {
    let s = serve(&[]);
    let request = json!({
        "model": TEXT, "prompt": "ROMEO:", "max_tokens": 40, "temperature": 0.8, "seed": 7,
    });
    let alone = text_of(&s.ok("/v1/completions", &request));
    assert_eq!(alone.chars().count(), 40);

    // Eight other requests (other prompts, seeds and lengths, one streamed, one chat, one
    // image) run while the same request joins them halfway.
    let together = thread::scope(|scope| {
        let others: Vec<_> = (0..8)
            .map(|i| {
                let s = &s;
                scope.spawn(move || match i {
                    6 => {
                        s.ok("/v1/chat/completions", &json!({"model": TEXT, "messages": [{"role": "user", "content": "Hail!"}], "max_tokens": 120, "seed": 3}));
                    }
                    7 => {
                        s.ok("/v1/images/generations", &json!({"model": IMAGE, "prompt": "5", "seed": 2}));
                    }
                    _ => {
                        let prompt = ["KING", "JULIET:\nO", "First Citizen:", "Good", "What", "ROMEO:"][i];
                        let body = json!({"model": TEXT, "prompt": prompt, "max_tokens": 100 + 10 * i, "seed": 100 + i, "temperature": 1.0, "stream": i == 2});
                        let r = s.post("/v1/completions", &body);
                        assert_eq!(r.status, 200, "{}", r.text());
                    }
                })
            })
            .collect();
        // Join once the others are running.
        eventually(60, "the others to be in the batch", || {
            s.metric("jielong_batch_size{model=\"shakespeare-char\"}")
                .is_some_and(|b| b >= 3.0)
        });
        let mine = text_of(&s.ok("/v1/completions", &request));
        for o in others {
            o.join().unwrap();
        }
        mine
    });
    assert_eq!(together, alone, "the batch changed a request's text");

    // The requests really shared a batch.
    let largest = s
        .metric("jielong_batch_size_max{model=\"shakespeare-char\"}")
        .unwrap();
    assert!(largest > 1.0, "largest batch {largest}");
    let histogram = s.get("/metrics").text();
    assert!(
        histogram.contains("jielong_step_batch_size_bucket"),
        "{histogram}"
    );

    // The command line draws the same text from the same settings.
    let out = std::process::Command::new(bin())
        .args(["generate", "text", "--model"])
        .arg(shipped(TEXT))
        .args([
            "--prompt",
            "ROMEO:",
            "--max-new-tokens",
            "40",
            "--temperature",
            "0.8",
            "--seed",
            "7",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        cli["text"].as_str().unwrap(),
        alone,
        "server and command line differ"
    );
}

#[test]
fn images_and_clips_do_not_depend_on_the_batch() {
    let s = serve(&[]);
    let image = json!({"model": IMAGE, "prompt": "8", "seed": 21});
    let clip =
        json!({"model": AUDIO, "input": "2", "seconds": 0.03, "seed": 5, "response_format": "pcm"});
    let image_alone = s.ok("/v1/images/generations", &image)["data"][0]["b64_json"].clone();
    let clip_alone = s.post("/v1/audio/speech", &clip).body;
    let (image_batched, clip_batched) = thread::scope(|scope| {
        let noise: Vec<_> = (0..4)
            .map(|i| {
                let s = &s;
                scope.spawn(move || {
                    s.ok(
                        "/v1/images/generations",
                        &json!({"model": IMAGE, "prompt": format!("{i}"), "n": 2, "seed": i}),
                    );
                })
            })
            .collect();
        let a = s.ok("/v1/images/generations", &image)["data"][0]["b64_json"].clone();
        let b = s.post("/v1/audio/speech", &clip).body;
        for n in noise {
            n.join().unwrap();
        }
        (a, b)
    });
    assert_eq!(image_batched, image_alone);
    assert_eq!(clip_batched, clip_alone);
    assert!(
        s.metric("jielong_batch_size_max{model=\"mnist-binary\"}")
            .unwrap()
            > 1.0
    );
}
