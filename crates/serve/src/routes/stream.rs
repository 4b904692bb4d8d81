//! Server-sent events from a job's updates. Each streaming endpoint says how an update reads as
//! events ([`Events`]); this file runs the stream. The stream owns the job's receiver, so a
//! client that goes away drops it, and the worker takes the job's sequences out of the batch
//! at its next step.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::error::ApiError;
use crate::worker::Update;

/// How one endpoint's stream reads.
pub trait Events: Send + 'static {
    /// The events of one update, and whether the stream ends after them.
    fn on(&mut self, update: Update) -> (Vec<Event>, bool);
}

/// Streams `first` (e.g. an echoed prompt), then the events of every update until the job
/// ends.
pub fn sse<E: Events>(rx: UnboundedReceiver<Update>, first: Vec<Event>, events: E) -> Response {
    let state = Some((rx, events, first));
    let s = stream::unfold(state, |state| async move {
        let (mut rx, mut events, pending) = state?;
        if !pending.is_empty() {
            return Some((pending, Some((rx, events, Vec::new()))));
        }
        match rx.recv().await {
            Some(update) => {
                let (out, done) = events.on(update);
                Some((out, (!done).then_some((rx, events, Vec::new()))))
            }
            None => {
                let e = ApiError::internal("the model's worker stopped before the job finished");
                Some((vec![error(&e)], None))
            }
        }
    })
    .flat_map(|batch| stream::iter(batch.into_iter().map(Ok::<Event, Infallible>)));
    Sse::new(s).keep_alive(KeepAlive::default()).into_response()
}

/// A `data:` event of JSON.
pub fn data(v: &Value) -> Event {
    Event::default().data(v.to_string())
}

/// A named event of JSON (`event: image_generation.partial_image`).
pub fn named(name: &str, v: &Value) -> Event {
    Event::default().event(name).data(v.to_string())
}

/// An error met after the stream began: the status is already sent, so it goes as an event.
pub fn error(e: &ApiError) -> Event {
    data(&e.body())
}

/// The end of an OpenAI chat or completion stream.
pub fn done() -> Event {
    Event::default().data("[DONE]")
}
