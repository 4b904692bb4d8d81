//! Every bad request gets an OpenAI-shaped error with the right status and `param` — never a
//! panic, never a hung connection — and the server keeps serving after each; plus the API key,
//! CORS, the queue limit and clients that hang up.

mod serve_support;

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{Value, json};
use serve_support::*;

#[test]
fn bad_requests_are_400_with_the_field_named() {
    let s = serve(&[]);
    let post_raw = |path: &str, body: &str| s.call("POST", path, Some(body), &[]);

    // Malformed JSON has no field to blame.
    let e = post_raw("/v1/completions", "{\"model\": ").error(400);
    assert!(e["param"].is_null());
    assert_eq!(e["code"], "invalid_json");
    post_raw("/v1/chat/completions", "[1, 2]").error(400);

    let cases: Vec<(&str, Value, &str)> = vec![
        // Wrong types.
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A", "temperature": "hot"}),
            "temperature",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": {"a": 1}}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A", "max_tokens": -5}),
            "max_tokens",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A", "n": "two"}),
            "n",
        ),
        (
            "/v1/chat/completions",
            json!({"model": TEXT, "messages": "hi"}),
            "messages",
        ),
        (
            "/v1/chat/completions",
            json!({"model": TEXT, "messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        // Missing fields.
        ("/v1/completions", json!({"prompt": "A"}), "model"),
        ("/v1/chat/completions", json!({"model": TEXT}), "messages"),
        ("/v1/audio/speech", json!({"model": AUDIO}), "input"),
        // Sampler values out of range (the library names the field).
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A", "temperature": -1}),
            "temperature",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A", "top_p": 1.5}),
            "top_p",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A", "top_k": 0}),
            "top_k",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A", "top_k": -3}),
            "top_k",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A", "min_p": 1.0}),
            "min_p",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A", "repetition_penalty": 0}),
            "repetition_penalty",
        ),
        (
            "/v1/chat/completions",
            json!({"model": TEXT, "messages": [{"role": "user", "content": "A"}], "top_p": 0}),
            "top_p",
        ),
        (
            "/v1/images/generations",
            json!({"model": IMAGE, "prompt": "1", "temperature": -2}),
            "temperature",
        ),
        (
            "/v1/audio/speech",
            json!({"model": AUDIO, "input": "1", "top_p": 7}),
            "top_p",
        ),
        (
            "/v1/images/generations",
            json!({"model": IMAGE, "prompt": "1", "guidance": -1}),
            "guidance",
        ),
        // Counts and limits.
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A", "n": 0}),
            "n",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A", "n": 1000}),
            "n",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A", "max_tokens": 100000}),
            "max_tokens",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A", "logprobs": 21}),
            "logprobs",
        ),
        (
            "/v1/chat/completions",
            json!({"model": TEXT, "messages": [{"role": "user", "content": "A"}], "logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (
            "/v1/chat/completions",
            json!({"model": TEXT, "messages": [{"role": "user", "content": "A"}], "top_logprobs": 2}),
            "top_logprobs",
        ),
        (
            "/v1/chat/completions",
            json!({"model": TEXT, "messages": []}),
            "messages",
        ),
        (
            "/v1/chat/completions",
            json!({"model": TEXT, "messages": [{"role": "wizard", "content": "A"}]}),
            "messages[0].role",
        ),
        (
            "/v1/chat/completions",
            json!({"model": TEXT, "messages": [{"role": "user", "content": "A"}], "max_completion_tokens": 99999}),
            "max_completion_tokens",
        ),
        // Prompts the model cannot take.
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": ""}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": []}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "naïve"}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": [1, 2, 65]}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A".repeat(300)}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"model": TEXT, "prompt": "A".repeat(300), "echo": true, "max_tokens": 0, "logprobs": 1}),
            "prompt",
        ),
        (
            "/v1/chat/completions",
            json!({"model": TEXT, "messages": [{"role": "user", "content": "A".repeat(300)}]}),
            "messages",
        ),
        // An endpoint of the wrong modality.
        (
            "/v1/completions",
            json!({"model": IMAGE, "prompt": "A"}),
            "model",
        ),
        (
            "/v1/chat/completions",
            json!({"model": AUDIO, "messages": [{"role": "user", "content": "A"}]}),
            "model",
        ),
        (
            "/v1/images/generations",
            json!({"model": TEXT, "prompt": "3"}),
            "model",
        ),
        (
            "/v1/audio/speech",
            json!({"model": IMAGE, "input": "3"}),
            "model",
        ),
    ];
    for (path, body, param) in &cases {
        let r = s.post(path, body);
        let e = r.error(400);
        assert_eq!(e["param"], *param, "POST {path} {body}: {e}");
        assert_eq!(e["type"], "invalid_request_error");
        assert!(!r.text().contains("panicked"));
    }
    let long = s
        .post(
            "/v1/completions",
            &json!({"model": TEXT, "prompt": "A".repeat(300)}),
        )
        .error(400);
    assert_eq!(long["code"], "context_length_exceeded");
    let modality = s
        .post("/v1/completions", &json!({"model": IMAGE, "prompt": "A"}))
        .error(400);
    assert!(
        modality["message"]
            .as_str()
            .unwrap()
            .contains("/v1/images/generations"),
        "{modality}"
    );

    // Unknown models, routes and methods.
    let e = s
        .post("/v1/completions", &json!({"model": "gpt-9", "prompt": "A"}))
        .error(404);
    assert_eq!(
        (e["param"].as_str(), e["code"].as_str()),
        (Some("model"), Some("model_not_found"))
    );
    s.get("/v1/nothing").error(404);
    s.get("/v1/completions").error(405);

    // Still serving.
    assert_eq!(s.get("/health").status, 200);
    s.ok(
        "/v1/completions",
        &json!({"model": TEXT, "prompt": "A", "max_tokens": 2}),
    );
    let metrics = s.get("/metrics").text();
    assert!(metrics.contains("status=\"400\""), "{metrics}");
}

#[test]
fn a_body_over_the_limit_is_413() {
    let s = serve(&["--max-body", "10000"]);
    let addr = s.base.trim_start_matches("http://").to_string();
    // Announce a large body and send only its start: the server must answer at once.
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        sock,
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\n\r\n{{\"model\": \"x\", \"prompt\": \""
    )
    .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&answer).contains("request_too_large") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"error\""), "{text}");
    // A body just over the limit, sent whole.
    let big = json!({"model": TEXT, "prompt": "A".repeat(20000)});
    s.post("/v1/completions", &big).error(413);
    assert_eq!(s.get("/health").status, 200);
}

#[test]
fn the_api_key_guards_every_route_but_health_and_the_page() {
    let s = serve(&["--api-key", "sesame"]);
    let body = json!({"model": TEXT, "prompt": "A", "max_tokens": 2});
    let e = s.post("/v1/completions", &body).error(401);
    assert_eq!(e["code"], "invalid_api_key");
    s.call(
        "POST",
        "/v1/completions",
        Some(&body.to_string()),
        &[("Authorization", "Bearer nope")],
    )
    .error(401);
    let ok = s.call(
        "POST",
        "/v1/completions",
        Some(&body.to_string()),
        &[("Authorization", "Bearer sesame")],
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    for path in ["/v1/models", "/metrics", "/v1/models/shakespeare-char"] {
        s.get(path).error(401);
    }
    assert_eq!(s.get("/health").status, 200);
    assert_eq!(s.get("/").status, 200);
    assert_eq!(s.get("/playground.js").status, 200);

    // The key may come from the environment instead.
    let s = serve_with(&[], &[("JIELONG_API_KEY", "from-env")]);
    s.get("/v1/models").error(401);
    assert_eq!(
        s.call(
            "GET",
            "/v1/models",
            None,
            &[("Authorization", "Bearer from-env")]
        )
        .status,
        200
    );
}

#[test]
fn cors_is_closed_unless_an_origin_is_given() {
    let preflight = [
        ("Origin", "http://example.com"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type"),
    ];
    let closed = serve(&[]);
    let r = closed.call(
        "GET",
        "/v1/models",
        None,
        &[("Origin", "http://example.com")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = closed.call("OPTIONS", "/v1/completions", None, &preflight);
    assert_eq!(r.header("access-control-allow-origin"), None);

    let open = serve(&["--cors", "http://example.com"]);
    let r = open.call("OPTIONS", "/v1/completions", None, &preflight);
    assert!(r.status < 300, "{}", r.status);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://example.com")
    );
    let r = open.call(
        "GET",
        "/v1/models",
        None,
        &[("Origin", "http://example.com")],
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://example.com")
    );
    let r = open.call(
        "GET",
        "/v1/models",
        None,
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
}

/// A long streamed completion (the window slides, so it can run for seconds).
fn long_request() -> Value {
    json!({"model": TEXT, "prompt": "A", "max_tokens": 4000, "slide": true, "stream": true, "seed": 1})
}

/// Reads from a raw connection until `needle` has arrived.
fn read_until(sock: &mut std::net::TcpStream, needle: &str) {
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = sock.read(&mut buf).expect("the answer arrives");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn a_full_queue_answers_503_and_hung_up_clients_leave_the_batch() {
    let s = serve(&["--queue", "1", "--max-batch", "1"]);
    let cancelled = "jielong_sequences_cancelled_total{model=\"shakespeare-char\"}";
    let batch = "jielong_batch_size{model=\"shakespeare-char\"}";

    // One request runs (the batch holds one), one waits (the queue holds one)...
    let mut running = s.raw_post("/v1/completions", &long_request());
    read_until(&mut running, "\"text\"");
    let mut waiting = s.raw_post("/v1/completions", &long_request());
    eventually(30, "the second request to queue", || {
        s.metric("jielong_queue_depth{model=\"shakespeare-char\"}") == Some(1.0)
    });
    // ... and the next is turned away with a hint when to retry.
    let r = s.post(
        "/v1/completions",
        &json!({"model": TEXT, "prompt": "A", "max_tokens": 1}),
    );
    let e = r.error(503);
    assert_eq!(e["code"], "overloaded");
    assert_eq!(r.header("retry-after"), Some("1"));
    // Other models have their own queue.
    s.ok(
        "/v1/images/generations",
        &json!({"model": IMAGE, "prompt": "1", "seed": 1}),
    );

    // Hanging up frees the running sequence at the next step; the waiting one then runs.
    drop(running);
    eventually(30, "the hung-up sequence to be cancelled", || {
        s.metric(cancelled).is_some_and(|c| c >= 1.0)
    });
    read_until(&mut waiting, "\"text\"");
    drop(waiting);
    eventually(30, "the batch to empty", || {
        s.metric(cancelled).is_some_and(|c| c >= 2.0) && s.metric(batch) == Some(0.0)
    });
    // And the server goes on.
    s.ok(
        "/v1/completions",
        &json!({"model": TEXT, "prompt": "A", "max_tokens": 3}),
    );
}
