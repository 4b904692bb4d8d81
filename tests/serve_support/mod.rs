//! Helpers of the server tests: start the real `jielong serve` on loopback with an OS-chosen
//! port (killed when the guard drops, also when a test panics), and talk HTTP to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const TEXT: &str = "shakespeare-char";
pub const IMAGE: &str = "mnist-binary";
pub const AUDIO: &str = "spoken-digits";

/// A shipped model folder.
pub fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

/// The sample rate of the shipped audio model (read from its config.json, so the tests follow
/// a retrained model).
pub fn audio_rate() -> u32 {
    let config: Value =
        serde_json::from_slice(&std::fs::read(shipped(AUDIO).join("config.json")).unwrap())
            .unwrap();
    config["codec"]["rate"].as_u64().unwrap() as u32
}

/// The shipped audio model's own default temperature (its config.json's
/// `generation.temperature`; 1 when it names none).
pub fn audio_default_temperature() -> f64 {
    let config: Value =
        serde_json::from_slice(&std::fs::read(shipped(AUDIO).join("config.json")).unwrap())
            .unwrap();
    config["generation"]["temperature"].as_f64().unwrap_or(1.0)
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_jielong")
}

/// A running server; dropping it kills the process.
pub struct Server {
    child: Child,
    pub base: String,
    /// What the server printed on stderr after its address (read on a thread).
    pub log: std::sync::Mutex<mpsc::Receiver<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `jielong serve` with the three shipped models and `extra` flags.
pub fn serve(extra: &[&str]) -> Server {
    serve_with(extra, &[])
}

/// As [`serve`], with environment variables.
pub fn serve_with(extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(bin());
    cmd.arg("serve");
    for m in [TEXT, IMAGE, AUDIO] {
        cmd.arg("--model").arg(shipped(m));
    }
    cmd.args(["--port", "0"]).args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    start(cmd)
}

/// Starts a prepared `jielong serve` command and waits for its address.
pub fn start(mut cmd: Command) -> Server {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("jielong serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    return Server {
                        child,
                        base: addr.trim().to_string(),
                        log: std::sync::Mutex::new(rx),
                    };
                }
                seen.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not start:\n{}", seen.join("\n"));
            }
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// An OpenAI-shaped error with this status; returns its `error` object.
    pub fn error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        let v = self.json();
        let e = v["error"].clone();
        for key in ["message", "type", "param", "code"] {
            assert!(e.get(key).is_some(), "error without {key}: {v}");
        }
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        e
    }

    /// The server-sent events of a streamed answer: (event name, data).
    pub fn events(&self) -> Vec<(String, String)> {
        parse_events(&self.text())
    }
}

pub fn parse_events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = "message".to_string();
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = n.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
                }
            }
            (!data.is_empty()).then(|| (name, data.join("\n")))
        })
        .collect()
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Any request; `body` is sent as JSON text as it is (so tests can send broken JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = ureq::request(method, &self.url(path)).timeout(Duration::from_secs(600));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let result = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .map(|k| {
                let v = response.header(&k).unwrap_or_default().to_string();
                (k, v)
            })
            .collect();
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(64 << 20)
            .read_to_end(&mut bytes)
            .expect("a body");
        Reply {
            status,
            headers,
            body: bytes,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None, &[])
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.call("POST", path, Some(&body.to_string()), &[])
    }

    /// POST that must succeed; its JSON.
    pub fn ok(&self, path: &str, body: &Value) -> Value {
        let r = self.post(path, body);
        assert_eq!(r.status, 200, "POST {path} {body}: {}", r.text());
        r.json()
    }

    /// The `data:` JSON of every event of a streamed POST (not `[DONE]`), checking it ends
    /// with `[DONE]` when `done`.
    pub fn stream(&self, path: &str, body: &Value, done: bool) -> Vec<(String, Value)> {
        let r = self.post(path, body);
        assert_eq!(r.status, 200, "POST {path} {body}: {}", r.text());
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/event-stream")),
            "{:?}",
            r.headers
        );
        let events = r.events();
        if done {
            assert_eq!(
                events.last().map(|e| e.1.as_str()),
                Some("[DONE]"),
                "{}",
                r.text()
            );
        }
        events
            .into_iter()
            .filter(|(_, d)| d != "[DONE]")
            .map(|(n, d)| (n, serde_json::from_str(&d).expect("JSON data")))
            .collect()
    }

    /// The value of a metric series in `/metrics` (the first line that starts with `series`).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.get("/metrics").text();
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// A raw connection that sends `body` to `path` and returns the socket unread (to read a
    /// little and hang up).
    pub fn raw_post(&self, path: &str, body: &Value) -> TcpStream {
        let addr = self.base.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).expect("connect");
        let body = body.to_string();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        s
    }
}

/// Polls `check` until it holds (or panics after `seconds`).
pub fn eventually(seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// The text of a streamed completion or chat answer, per choice, and the finish reasons.
pub fn streamed_text(events: &[(String, Value)], chat: bool) -> (Vec<String>, Vec<String>) {
    let mut texts: Vec<String> = Vec::new();
    let mut finish: Vec<String> = Vec::new();
    for (_, e) in events {
        for c in e["choices"].as_array().into_iter().flatten() {
            let i = c["index"].as_u64().unwrap() as usize;
            if texts.len() <= i {
                texts.resize(i + 1, String::new());
                finish.resize(i + 1, String::new());
            }
            let piece = if chat {
                c["delta"]["content"].as_str()
            } else {
                c["text"].as_str()
            };
            texts[i].push_str(piece.unwrap_or(""));
            if let Some(f) = c["finish_reason"].as_str() {
                finish[i] = f.to_string();
            }
        }
    }
    (texts, finish)
}
