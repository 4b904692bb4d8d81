//! `POST /v1/images/generations`: draw `n` images of the class named by `prompt` (empty:
//! unconditional), as PNG in `b64_json`. With `stream: true`, OpenAI's
//! `image_generation.partial_image` events follow the drawing one row of tokens at a time —
//! the picture so far, and each new pixel token with the distribution it was drawn from —
//! then one `image_generation.completed` per image.

use axum::extract::State;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jielong_core::Codec;
use jielong_image::ImageCodec;
use serde_json::{Value, json};

use crate::api::{ApiJson, ImageBody};
use crate::error::{ApiError, common_param};
use crate::jobs;
use crate::models::png;
use crate::routes::stream::{self, Events};
use crate::routes::{App, collect, now};
use crate::worker::{Finished, Job, Token, Update};

pub async fn handle(
    State(shared): App,
    ApiJson(body): ApiJson<ImageBody>,
) -> Result<Response, ApiError> {
    let served = shared.model(&body.model)?;
    let plan = jobs::image(served, &body, &shared.limits)?;
    let n = plan.job.request().count;
    let codec = plan.codec;
    let reply = Reply {
        created: now(),
        size: format!("{}x{}", codec.width(), codec.height()),
        codec,
        drawn: vec![Vec::new(); n],
        row: vec![Vec::new(); n],
        partials: 0,
    };
    let rx = served.submit(Job::Image(plan.job))?;
    if body.stream {
        return Ok(stream::sse(rx, Vec::new(), reply));
    }
    let (_, done) = collect(rx, false).await.map_err(|e| failure(&e))?;
    let Finished::Images(images) = done else {
        return Err(ApiError::internal("an image job finished without images"));
    };
    let data = images
        .iter()
        .map(|ids| Ok(json!({ "b64_json": reply.b64(ids)? })))
        .collect::<Result<Vec<Value>, ApiError>>()?;
    Ok(axum::Json(json!({
        "created": reply.created,
        "data": data,
        "size": reply.size,
        "output_format": "png",
        "usage": usage(n, codec.tokens_per_image() * n),
    }))
    .into_response())
}

fn failure(e: &anyhow::Error) -> ApiError {
    ApiError::from_library(e, "prompt", &common_param)
}

/// OpenAI's image usage: the start token of each image in, its pixel tokens out.
fn usage(input: usize, output: usize) -> Value {
    json!({
        "input_tokens": input,
        "output_tokens": output,
        "total_tokens": input + output,
        "input_tokens_details": {"text_tokens": input, "image_tokens": 0},
    })
}

/// An image answer, streamed or not.
struct Reply {
    created: u64,
    size: String,
    codec: &'static ImageCodec,
    /// Each image's tokens so far.
    drawn: Vec<Vec<u32>>,
    /// Each image's tokens of the row being drawn, with their distributions.
    row: Vec<Vec<Value>>,
    partials: usize,
}

impl Reply {
    /// An image (complete or not: undrawn cells are grey) as base64 PNG.
    fn b64(&self, ids: &[u32]) -> Result<String, ApiError> {
        let img = if ids.len() == self.codec.tokens_per_image() {
            self.codec.decode(ids)
        } else {
            self.codec.decode_partial(ids)
        }
        .map_err(|e| ApiError::internal(format!("cannot decode the image: {e:#}")))?;
        let bytes =
            png(&img).map_err(|e| ApiError::internal(format!("cannot encode PNG: {e:#}")))?;
        Ok(STANDARD.encode(bytes))
    }

    fn event(&self, kind: &str, image: usize, b64: String, extra: Value) -> Event {
        let mut v = json!({
            "type": kind,
            "b64_json": b64,
            "created_at": self.created,
            "size": self.size,
            "quality": "auto",
            "background": "opaque",
            "output_format": "png",
            "image_index": image,
        });
        if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        stream::named(kind, &v)
    }

    /// A drawn token: when it completes a row of tokens, the picture so far goes out with
    /// the row's tokens and their distributions.
    fn token(&mut self, t: Token) -> Result<Vec<Event>, ApiError> {
        let i = t.index;
        self.drawn[i].push(t.id);
        self.row[i].push(json!({
            "id": t.id,
            "prob": t.prob,
            "top": t.top.iter().map(|&(id, p)| json!({"id": id, "prob": p})).collect::<Vec<_>>(),
        }));
        let (cols, rows) = self.codec.token_grid();
        let len = self.drawn[i].len();
        if len % cols as usize != 0 && len != self.codec.tokens_per_image() {
            return Ok(Vec::new());
        }
        let tokens = std::mem::take(&mut self.row[i]);
        let first = len - tokens.len();
        let b64 = self.b64(&self.drawn[i])?;
        let event = self.event(
            "image_generation.partial_image",
            i,
            b64,
            json!({
                "partial_image_index": self.partials,
                "rows_done": len.div_ceil(cols as usize),
                "rows": rows,
                "first_token": first,
                "tokens": tokens,
            }),
        );
        self.partials += 1;
        Ok(vec![event])
    }
}

impl Events for Reply {
    fn on(&mut self, update: Update) -> (Vec<Event>, bool) {
        let result = match update {
            Update::Token(t) => self.token(t).map(|e| (e, false)),
            Update::Done(Finished::Images(images)) => {
                let per = self.codec.tokens_per_image();
                images
                    .iter()
                    .enumerate()
                    .map(|(i, ids)| {
                        let b64 = self.b64(ids)?;
                        Ok(self.event(
                            "image_generation.completed",
                            i,
                            b64,
                            json!({ "usage": usage(1, per) }),
                        ))
                    })
                    .collect::<Result<Vec<_>, ApiError>>()
                    .map(|e| (e, true))
            }
            Update::Done(_) => Err(ApiError::internal("an image job finished without images")),
            Update::Failed(e) => Err(failure(&e)),
        };
        result.unwrap_or_else(|e| {
            let body = json!({"type": "error", "error": e.body()["error"]});
            (vec![stream::named("error", &body)], true)
        })
    }
}
