//! `POST /v1/audio/speech`: a clip of the class named by `input` (a digit; empty:
//! unconditional), drawn one sample at a time, as a 16-bit WAV (or raw PCM). `voice` is
//! accepted and ignored: the class is the voice. With `stream_format: "sse"`, OpenAI's
//! `speech.audio.delta` events carry the samples (base64 16-bit PCM) as they are drawn, then
//! `speech.audio.done`.

use axum::extract::State;
use axum::http::header;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jielong_audio::AudioCodec;
use jielong_audio::wav::wav_bytes;
use jielong_core::Codec;
use serde_json::{Value, json};

use crate::api::{ApiJson, SpeechBody};
use crate::error::{ApiError, common_param};
use crate::jobs;
use crate::routes::stream::{self, Events};
use crate::routes::{App, collect};
use crate::worker::{Finished, Update};

/// Samples per delta event: 25 ms at 8 kHz, smooth enough to watch the waveform grow.
const DELTA: usize = 200;

pub async fn handle(
    State(shared): App,
    ApiJson(body): ApiJson<SpeechBody>,
) -> Result<Response, ApiError> {
    let served = shared.model(&body.model)?;
    let plan = jobs::speech(served, &body, &shared.limits)?;
    let codec = plan.codec;
    let show_top = plan.job.request().draw.show_top > 0;
    let rx = served.submit(crate::worker::Job::Audio(plan.job))?;
    if plan.sse {
        let reply = Reply {
            codec,
            pending: Vec::new(),
            tokens: Vec::new(),
            sent: 0,
            drawn: 0,
            show_top,
        };
        return Ok(stream::sse(rx, Vec::new(), reply));
    }
    let (_, done) = collect(rx, false).await.map_err(|e| failure(&e))?;
    let Finished::Clips(clips) = done else {
        return Err(ApiError::internal("an audio job finished without a clip"));
    };
    let samples = &clips[0].samples;
    if plan.pcm {
        return Ok(([(header::CONTENT_TYPE, "audio/pcm")], pcm16(samples)).into_response());
    }
    let wav = wav_bytes(samples, codec.rate())
        .map_err(|e| ApiError::internal(format!("cannot write the WAV: {e:#}")))?;
    Ok(([(header::CONTENT_TYPE, "audio/wav")], wav).into_response())
}

fn failure(e: &anyhow::Error) -> ApiError {
    ApiError::from_library(e, "input", &common_param)
}

/// Samples as little-endian 16-bit PCM, rounded as the WAV writer rounds them, so that the
/// streamed samples and the WAV file agree exactly.
fn pcm16(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|&x| {
            let x = if x.is_finite() {
                x.clamp(-1.0, 1.0)
            } else {
                0.0
            };
            ((x * i16::MAX as f32).round() as i16).to_le_bytes()
        })
        .collect()
}

/// A streamed clip.
struct Reply {
    codec: &'static AudioCodec,
    /// Drawn samples not yet sent, and their distributions (when asked for).
    pending: Vec<f32>,
    tokens: Vec<Value>,
    /// Samples sent so far, and tokens drawn.
    sent: usize,
    drawn: usize,
    show_top: bool,
}

impl Reply {
    fn delta(&mut self) -> Event {
        let samples = std::mem::take(&mut self.pending);
        self.sent += samples.len();
        let mut v = json!({
            "type": "speech.audio.delta",
            "audio": STANDARD.encode(pcm16(&samples)),
        });
        if self.show_top {
            v["tokens"] = Value::Array(std::mem::take(&mut self.tokens));
        }
        stream::named("speech.audio.delta", &v)
    }
}

impl Events for Reply {
    fn on(&mut self, update: Update) -> (Vec<Event>, bool) {
        match update {
            Update::Token(t) => {
                self.drawn += 1;
                // END is no content: what follows it is silence, sent with the last delta.
                if !self.codec.vocab().is_content(t.id) {
                    return (Vec::new(), false);
                }
                if self.show_top {
                    self.tokens.push(json!({
                        "id": t.id,
                        "prob": t.prob,
                        "top": t.top.iter().map(|&(id, p)| json!({"id": id, "prob": p})).collect::<Vec<_>>(),
                    }));
                }
                // A frame token has no samples of its own: the phase of the whole clip is
                // recovered at the end, so its samples go out with the last delta.
                let Some(x) = self.codec.token_to_sample(t.id) else {
                    return (Vec::new(), false);
                };
                self.pending.push(x);
                if self.pending.len() < DELTA {
                    return (Vec::new(), false);
                }
                (vec![self.delta()], false)
            }
            Update::Done(Finished::Clips(clips)) => {
                // The rest of the clip as the library made it (drawn samples, then any
                // silence after an END).
                let clip = &clips[0];
                let unsent = self.sent.min(clip.samples.len());
                self.pending = clip.samples[unsent..].to_vec();
                let mut events = Vec::new();
                if !self.pending.is_empty() {
                    events.push(self.delta());
                }
                events.push(stream::named(
                    "speech.audio.done",
                    &json!({
                        "type": "speech.audio.done",
                        "usage": {"input_tokens": 1, "output_tokens": self.drawn, "total_tokens": 1 + self.drawn},
                        "sample_rate": self.codec.rate(),
                        "samples": clip.samples.len(),
                        "ended_at": clip.ended_at,
                    }),
                ));
                (events, true)
            }
            Update::Done(_) => (
                vec![error(&ApiError::internal(
                    "an audio job finished without a clip",
                ))],
                true,
            ),
            Update::Failed(e) => (vec![error(&failure(&e))], true),
        }
    }
}

fn error(e: &ApiError) -> Event {
    stream::named(
        "error",
        &json!({"type": "error", "error": e.body()["error"]}),
    )
}
