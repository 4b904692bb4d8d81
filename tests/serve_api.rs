//! `jielong serve` through the real binary on loopback, with the shipped models: every
//! endpoint and its fields, streamed and not.

mod serve_support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use serve_support::*;

#[test]
fn health_models_metrics_and_the_playground() {
    let s = serve(&[]);
    assert!(
        s.base.starts_with("http://127.0.0.1:"),
        "binds loopback: {}",
        s.base
    );
    let health = s.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");

    let models = s.get("/v1/models").json();
    assert_eq!(models["object"], "list");
    let data = models["data"].as_array().unwrap();
    let find = |id: &str| data.iter().find(|m| m["id"] == id).unwrap().clone();
    let text = find(TEXT);
    assert_eq!(text["modality"], "text");
    assert_eq!(text["context_length"], 256);
    assert_eq!(text["object"], "model");
    let image = find(IMAGE);
    assert_eq!(image["modality"], "image");
    assert_eq!(image["classes"].as_array().unwrap().len(), 10);
    assert_eq!(image["width"], 28);
    let audio = find(AUDIO);
    assert_eq!(audio["modality"], "audio");
    assert_eq!(audio["sample_rate"], audio_rate());
    let default_temperature = audio_default_temperature();
    assert_eq!(
        audio["temperature"].as_f64().unwrap_or(1.0) as f32,
        default_temperature as f32,
        "{audio}"
    );

    let one = s.get(&format!("/v1/models/{IMAGE}")).json();
    assert_eq!(
        one["token_images"].as_array().unwrap().len(),
        16,
        "a picture per 2x2 block"
    );
    assert!(
        one["token_images"][5]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    s.get("/v1/models/nope").error(404);

    let page = s.get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().contains("jielong"));
    for (path, kind) in [("/playground.js", "javascript"), ("/playground.css", "css")] {
        let r = s.get(path);
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().contains(kind));
    }

    // One generation, then the metrics show it.
    s.ok(
        "/v1/completions",
        &json!({"model": TEXT, "prompt": "KING", "max_tokens": 5, "seed": 1}),
    );
    let metrics = s.get("/metrics");
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let m = metrics.text();
    for needle in [
        "jielong_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1",
        "jielong_generated_tokens_total{model=\"shakespeare-char\"} 5",
        "jielong_queue_depth{model=\"shakespeare-char\"}",
        "jielong_batch_size{model=\"shakespeare-char\"}",
        "jielong_batch_size_max{model=\"shakespeare-char\"} 1",
        "jielong_seconds_per_token_bucket{model=\"shakespeare-char\"",
        "jielong_seconds_per_token_count{model=\"shakespeare-char\"} 5",
    ] {
        assert!(m.contains(needle), "{needle} missing from:\n{m}");
    }
}

#[test]
fn completions_take_every_field() {
    let s = serve(&[]);
    let base =
        json!({"model": TEXT, "prompt": "ROMEO:", "max_tokens": 12, "seed": 7, "temperature": 0.8});
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s.ok("/v1/completions", &b)
    };
    let a = with(json!({}));
    assert_eq!(a["object"], "text_completion");
    assert!(a["id"].as_str().unwrap().starts_with("cmpl-"));
    let text = a["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(text.chars().count(), 12, "one character per token");
    assert_eq!(a["choices"][0]["finish_reason"], "length");
    assert_eq!(
        a["usage"],
        json!({"prompt_tokens": 6, "completion_tokens": 12, "total_tokens": 18})
    );
    assert_eq!(
        with(json!({}))["choices"][0]["text"],
        text.as_str(),
        "a seed repeats"
    );

    // The prompt as token ids gives the same.
    let ids = s.ok("/tokenize", &json!({"model": TEXT, "prompt": "ROMEO:"}))["tokens"].clone();
    assert_eq!(ids.as_array().unwrap().len(), 6);
    assert_eq!(
        with(json!({"prompt": ids}))["choices"][0]["text"],
        text.as_str()
    );

    // n: choice i draws with seed + i, as `jielong generate --count` does.
    let n = with(json!({"n": 3}));
    let choices = n["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    assert_eq!(choices[0]["text"], text.as_str());
    assert_eq!(
        choices[1]["text"],
        with(json!({"seed": 8}))["choices"][0]["text"]
    );
    assert_eq!(n["usage"]["completion_tokens"], 36);

    // Greedy (temperature 0) ignores the seed; the other sampler fields are taken.
    let g1 = with(json!({"temperature": 0, "seed": 1}))["choices"][0]["text"].clone();
    assert_eq!(
        g1,
        with(json!({"temperature": 0, "seed": 2}))["choices"][0]["text"]
    );
    for extra in [
        json!({"top_k": 5}),
        json!({"top_k": -1}),
        json!({"top_p": 0.9}),
        json!({"min_p": 0.05}),
        json!({"repetition_penalty": 1.3}),
    ] {
        with(extra);
    }
    let k1 = with(json!({"top_k": 1, "seed": 3}))["choices"][0]["text"].clone();
    assert_eq!(k1, g1, "top_k 1 is greedy");

    // stop: the text ends before the stop string.
    let long = with(json!({"max_tokens": 80}))["choices"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let stop: String = long.chars().skip(20).take(2).collect();
    let cut = with(json!({"max_tokens": 80, "stop": [stop.clone()]}));
    let cut_text = cut["choices"][0]["text"].as_str().unwrap();
    assert_eq!(cut_text, &long[..long.find(&stop).unwrap()]);
    assert_eq!(cut["choices"][0]["finish_reason"], "stop");
    with(json!({"stop": "\n"}));

    // logprobs: one entry per token, the alternatives asked for, offsets into the text.
    let lp = with(json!({"logprobs": 3}));
    let l = &lp["choices"][0]["logprobs"];
    assert_eq!(l["tokens"].as_array().unwrap().len(), 12);
    let joined: String = l["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(joined, text);
    for (k, top) in l["top_logprobs"].as_array().unwrap().iter().enumerate() {
        let top = top.as_object().unwrap();
        assert!(top.len() <= 3 && !top.is_empty());
        let lp = l["token_logprobs"][k].as_f64().unwrap();
        assert!(lp <= 0.0 && lp > -30.0);
    }
    assert_eq!(l["text_offset"][3], 3);

    // echo + max_tokens 0: the log-probability of every prompt token (scoring).
    let scored = with(json!({"echo": true, "max_tokens": 0, "logprobs": 2}));
    let c = &scored["choices"][0];
    assert_eq!(c["text"], "ROMEO:");
    let lps = c["logprobs"]["token_logprobs"].as_array().unwrap();
    assert_eq!(lps.len(), 6);
    assert!(lps[0].is_null(), "nothing predicts the first token");
    assert!(lps[1..].iter().all(|v| v.as_f64().unwrap() < 0.0));
    assert_eq!(c["logprobs"]["tokens"][1], "O");
    assert_eq!(scored["usage"]["completion_tokens"], 0);
    // Echo with generation: the prompt, then the same continuation.
    let echoed = with(json!({"echo": true}));
    assert_eq!(echoed["choices"][0]["text"], format!("ROMEO:{text}"));
}

#[test]
fn streaming_gives_the_same_text() {
    let s = serve(&[]);
    for (path, chat) in [("/v1/completions", false), ("/v1/chat/completions", true)] {
        let mut body = if chat {
            json!({"model": TEXT, "messages": [{"role": "user", "content": "Speak."}]})
        } else {
            json!({"model": TEXT, "prompt": "ROMEO:"})
        };
        let extra =
            json!({"max_tokens": 30, "seed": 11, "temperature": 0.9, "n": 2, "stop": ["\n\n"]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let whole = s.ok(path, &body);
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let events = s.stream(path, &body, true);
        let (texts, finish) = streamed_text(&events, chat);
        for i in 0..2 {
            let c = &whole["choices"][i];
            let expected = if chat {
                &c["message"]["content"]
            } else {
                &c["text"]
            };
            assert_eq!(texts[i], expected.as_str().unwrap(), "{path} choice {i}");
            assert_eq!(finish[i], c["finish_reason"].as_str().unwrap());
        }
        let usage = events
            .iter()
            .find(|(_, e)| !e["usage"].is_null())
            .expect("a usage chunk");
        assert_eq!(usage.1["usage"], whole["usage"]);
        assert_eq!(usage.1["choices"], json!([]));
        if chat {
            assert_eq!(events[0].1["object"], "chat.completion.chunk");
            assert_eq!(events[0].1["choices"][0]["delta"]["role"], "assistant");
        }
    }
    // Streamed log-probabilities: one entry per token drawn.
    let events = s.stream(
        "/v1/completions",
        &json!({"model": TEXT, "prompt": "KING", "max_tokens": 8, "seed": 2, "stream": true, "logprobs": 4}),
        true,
    );
    let tokens: usize = events
        .iter()
        .filter_map(|(_, e)| {
            e["choices"][0]["logprobs"]["tokens"]
                .as_array()
                .map(Vec::len)
        })
        .sum();
    assert_eq!(tokens, 8);
}

#[test]
fn chat_takes_every_field() {
    let s = serve(&[]);
    let messages = json!([
        {"role": "system", "content": "You are a player."},
        {"role": "user", "content": [{"type": "text", "text": "Who goes there?"}]},
    ]);
    let base = json!({"model": TEXT, "messages": messages, "max_tokens": 20, "seed": 5});
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s.ok("/v1/chat/completions", &b)
    };
    let a = with(json!({}));
    assert_eq!(a["object"], "chat.completion");
    assert!(a["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let msg = &a["choices"][0]["message"];
    assert_eq!(msg["role"], "assistant");
    let content = msg["content"].as_str().unwrap().to_string();
    assert!(a["usage"]["prompt_tokens"].as_u64().unwrap() > 20);
    assert_eq!(
        a["usage"]["total_tokens"].as_u64().unwrap(),
        a["usage"]["prompt_tokens"].as_u64().unwrap()
            + a["usage"]["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        with(json!({}))["choices"][0]["message"]["content"],
        content.as_str()
    );
    // max_completion_tokens is the newer spelling of max_tokens.
    let short = with(json!({"max_completion_tokens": 3, "max_tokens": 100}));
    assert!(short["usage"]["completion_tokens"].as_u64().unwrap() <= 3);
    let two = with(
        json!({"n": 2, "temperature": 1.2, "top_p": 0.95, "top_k": 40, "min_p": 0.01, "repetition_penalty": 1.1}),
    );
    assert_eq!(two["choices"].as_array().unwrap().len(), 2);
    let lp = with(json!({"logprobs": true, "top_logprobs": 5}));
    let content_lp = lp["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        content_lp.len() as u64,
        lp["usage"]["completion_tokens"].as_u64().unwrap()
    );
    for t in content_lp {
        assert!(t["logprob"].as_f64().unwrap() <= 0.0);
        assert!(t["bytes"].is_array());
        assert!(t["top_logprobs"].as_array().unwrap().len() <= 5);
    }
    let stopped = with(json!({"stop": ["e"], "max_tokens": 60, "temperature": 0.7}));
    assert!(
        !stopped["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains('e')
    );
}

#[test]
fn images_are_drawn_and_streamed() {
    let s = serve(&[]);
    let body =
        json!({"model": IMAGE, "prompt": "3", "n": 2, "seed": 9, "response_format": "b64_json"});
    let r = s.ok("/v1/images/generations", &body);
    let data = r["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let decode = |v: &Value| {
        let png = STANDARD.decode(v["b64_json"].as_str().unwrap()).unwrap();
        image::load_from_memory(&png).unwrap().to_luma8()
    };
    let first = decode(&data[0]);
    assert_eq!(first.dimensions(), (28, 28));
    assert!(
        first.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255),
        "binary pixels"
    );
    assert_ne!(
        decode(&data[0]),
        decode(&data[1]),
        "image i draws with seed + i"
    );
    assert_eq!(r["usage"]["output_tokens"], 392);
    assert_eq!(r["size"], "28x28");

    // Streamed: one partial image per row of tokens, then the same images.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["top_logprobs"] = json!(4);
    let events = s.stream("/v1/images/generations", &streamed, false);
    let partial: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "image_generation.partial_image")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(partial.len(), 28, "14 rows of tokens for each of 2 images");
    let p0 = partial.iter().find(|e| e["image_index"] == 0).unwrap();
    assert_eq!(p0["type"], "image_generation.partial_image");
    assert_eq!(p0["tokens"].as_array().unwrap().len(), 14);
    let t = &p0["tokens"][0];
    assert!(t["prob"].as_f64().unwrap() > 0.0);
    assert!(t["top"].as_array().unwrap().len() <= 4);
    let done: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "image_generation.completed")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(done.len(), 2);
    for d in done {
        let i = d["image_index"].as_u64().unwrap() as usize;
        assert_eq!(
            d["b64_json"], data[i]["b64_json"],
            "streamed image {i} is the same"
        );
    }

    // Unconditional (empty prompt) and explicit guidance.
    s.ok(
        "/v1/images/generations",
        &json!({"model": IMAGE, "prompt": "", "seed": 1}),
    );
    s.ok(
        "/v1/images/generations",
        &json!({"model": IMAGE, "prompt": "7", "guidance": 1.0, "size": "28x28"}),
    );
    let e = s
        .post(
            "/v1/images/generations",
            &json!({"model": IMAGE, "prompt": "cat"}),
        )
        .error(400);
    assert_eq!(e["param"], "prompt");
    let e = s
        .post(
            "/v1/images/generations",
            &json!({"model": IMAGE, "prompt": "3", "response_format": "url"}),
        )
        .error(400);
    assert_eq!(e["param"], "response_format");
    let e = s
        .post(
            "/v1/images/generations",
            &json!({"model": IMAGE, "prompt": "3", "size": "1024x1024"}),
        )
        .error(400);
    assert_eq!(e["param"], "size");
    let e = s
        .post(
            "/v1/images/generations",
            &json!({"model": IMAGE, "prompt": "", "guidance": 3}),
        )
        .error(400);
    assert_eq!(e["param"], "prompt", "guidance needs a class: {e}");
}

#[test]
fn speech_is_a_wav_and_streams_the_same_samples() {
    let s = serve(&[]);
    let body = json!({"model": AUDIO, "input": "4", "voice": "alloy", "seconds": 0.05, "seed": 3, "response_format": "wav"});
    let r = s.post("/v1/audio/speech", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("audio/wav"));
    let wav = hound::WavReader::new(std::io::Cursor::new(r.body.clone())).unwrap();
    assert_eq!(wav.spec().sample_rate, audio_rate());
    assert_eq!(wav.spec().channels, 1);
    let samples: Vec<i16> = wav.into_samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(samples.len(), (0.05 * audio_rate() as f64).round() as usize);

    // SSE: speech.audio.delta events carry the same samples, then speech.audio.done.
    let mut sse = body.clone();
    sse["stream_format"] = json!("sse");
    let events = s.stream("/v1/audio/speech", &sse, false);
    let mut pcm = Vec::new();
    for (name, e) in &events[..events.len() - 1] {
        assert_eq!(name, "speech.audio.delta");
        assert_eq!(e["type"], "speech.audio.delta");
        pcm.extend(STANDARD.decode(e["audio"].as_str().unwrap()).unwrap());
    }
    let streamed: Vec<i16> = pcm
        .chunks(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(streamed, samples);
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "speech.audio.done");
    assert_eq!(last["usage"]["input_tokens"], 1);
    assert_eq!(last["sample_rate"], audio_rate());

    // Without a temperature a request draws at the model's own default.
    let at = |t: Option<f64>| {
        let mut b = json!({"model": AUDIO, "input": "7", "seconds": 0.3, "seed": 5, "response_format": "pcm"});
        if let Some(t) = t {
            b["temperature"] = json!(t);
        }
        s.post("/v1/audio/speech", &b).body
    };
    assert_eq!(at(None), at(Some(audio_default_temperature())));
    if audio_default_temperature() != 1.0 {
        assert_ne!(at(None), at(Some(1.0)));
    }

    // Raw PCM, unconditional, guidance, and what is refused.
    let pcm = s.post(
        "/v1/audio/speech",
        &json!({"model": AUDIO, "input": "", "seconds": 0.02, "response_format": "pcm"}),
    );
    assert_eq!(pcm.status, 200);
    assert_eq!(
        pcm.body.len(),
        2 * (0.02 * audio_rate() as f64).round() as usize
    );
    let guided = s.post(
        "/v1/audio/speech",
        &json!({"model": AUDIO, "input": "7", "seconds": 0.02, "guidance": 2.0}),
    );
    assert_eq!(guided.status, 200);
    for (extra, param) in [
        (json!({"response_format": "mp3"}), "response_format"),
        (json!({"stream_format": "radio"}), "stream_format"),
        (json!({"input": "eleven"}), "input"),
        (json!({"seconds": -1}), "seconds"),
        (json!({"seconds": 60}), "seconds"),
    ] {
        let mut b = body.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let e = s.post("/v1/audio/speech", &b).error(400);
        assert_eq!(e["param"], param, "{b}: {e}");
    }
}

#[test]
fn tokenize_and_detokenize_round_trip() {
    let s = serve(&[]);
    let t = s.ok(
        "/tokenize",
        &json!({"model": TEXT, "prompt": "Good morrow"}),
    );
    assert_eq!(t["count"], 11);
    assert_eq!(t["max_model_len"], 256);
    assert_eq!(t["token_strs"][0], "G");
    let back = s.ok(
        "/detokenize",
        &json!({"model": TEXT, "tokens": t["tokens"]}),
    );
    assert_eq!(back["prompt"], "Good morrow");
    let chat = s.ok(
        "/tokenize",
        &json!({"model": TEXT, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(
        chat["count"].as_u64().unwrap(),
        "user: hi\nassistant:".len() as u64
    );
    assert_eq!(
        s.post("/tokenize", &json!({"prompt": "x"})).error(400)["param"],
        "model"
    );
    assert_eq!(
        s.post("/tokenize", &json!({"model": TEXT})).error(400)["param"],
        "prompt"
    );
    assert_eq!(
        s.post("/tokenize", &json!({"model": IMAGE, "prompt": "x"}))
            .error(400)["param"],
        "model"
    );
    assert_eq!(
        s.post("/tokenize", &json!({"model": TEXT, "prompt": "ü"}))
            .error(400)["param"],
        "prompt"
    );
    assert_eq!(
        s.post("/detokenize", &json!({"model": TEXT, "tokens": [1, 65]}))
            .error(400)["param"],
        "tokens"
    );
    s.post("/detokenize", &json!({"model": "nope", "tokens": [1]}))
        .error(404);
}
