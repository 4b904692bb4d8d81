//! `POST /v1/chat/completions`: the messages through the model's chat template, a reply (or
//! `n`) drawn until the template's end of turn, streamed as OpenAI's chunks or answered whole.

use axum::extract::State;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use jielong_text::TextCodec;
use serde_json::{Value, json};

use crate::api::{ApiJson, ChatBody};
use crate::error::ApiError;
use crate::jobs;
use crate::routes::stream::{self, Events};
use crate::routes::text::{Entry, chat_logprobs, failure, finish_reason, usage};
use crate::routes::{App, collect, now, response_id};
use crate::worker::{Finished, Job, Update};

pub async fn handle(
    State(shared): App,
    ApiJson(body): ApiJson<ChatBody>,
) -> Result<Response, ApiError> {
    let served = shared.model(&body.model)?;
    let plan = jobs::chat(served, &body, &shared.limits)?;
    let n = plan.job.request().count;
    let reply = Reply {
        id: response_id("chatcmpl"),
        created: now(),
        model: served.name.clone(),
        codec: &plan.model.model.codec,
        prompt_tokens: plan.prompt_ids().len(),
        logprobs: plan.logprobs.is_some(),
        include_usage: body.stream_options.is_some_and(|o| o.include_usage),
    };
    let rx = served.submit(Job::Text(plan.job))?;
    if body.stream {
        // Every choice opens with the assistant's role, as OpenAI's streams do.
        let first = (0..n)
            .map(|i| reply.chunk(i, json!({"role": "assistant", "content": ""}), None, None))
            .collect();
        return Ok(stream::sse(rx, first, reply));
    }
    let (tokens, done) = collect(rx, reply.logprobs)
        .await
        .map_err(|e| failure(&e, "messages"))?;
    let Finished::Text(completions) = done else {
        return Err(ApiError::internal("a text job finished without text"));
    };
    let choices: Vec<Value> = completions
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let entries: Vec<Entry> = tokens
                .iter()
                .filter(|t| t.index == i && !t.end)
                .map(Entry::from)
                .collect();
            json!({
                "index": i,
                "message": {"role": "assistant", "content": c.text, "refusal": null},
                "logprobs": reply.logprobs.then(|| chat_logprobs(reply.codec, &entries)),
                "finish_reason": finish_reason(c.finish),
            })
        })
        .collect();
    let completion: usize = completions.iter().map(|c| c.ids.len()).sum();
    Ok(axum::Json(json!({
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": choices,
        "usage": usage(reply.prompt_tokens, completion),
        "system_fingerprint": null,
    }))
    .into_response())
}

/// What a chat answer carries, streamed or not.
struct Reply {
    id: String,
    created: u64,
    model: String,
    codec: &'static TextCodec,
    prompt_tokens: usize,
    logprobs: bool,
    include_usage: bool,
}

impl Reply {
    fn chunk(
        &self,
        index: usize,
        delta: Value,
        logprobs: Option<Value>,
        finish: Option<&str>,
    ) -> Event {
        stream::data(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        }))
    }
}

impl Events for Reply {
    fn on(&mut self, update: Update) -> (Vec<Event>, bool) {
        match update {
            Update::Token(t) => {
                if t.end || (t.text.is_empty() && !self.logprobs) {
                    return (Vec::new(), false);
                }
                let logprobs = self
                    .logprobs
                    .then(|| chat_logprobs(self.codec, &[Entry::from(&t)]));
                (
                    vec![self.chunk(t.index, json!({"content": t.text}), logprobs, None)],
                    false,
                )
            }
            Update::Done(Finished::Text(completions)) => {
                let mut events = Vec::new();
                for (i, c) in completions.iter().enumerate() {
                    if !c.unshown.is_empty() {
                        events.push(self.chunk(i, json!({"content": c.unshown}), None, None));
                    }
                    events.push(self.chunk(i, json!({}), None, Some(finish_reason(c.finish))));
                }
                if self.include_usage {
                    let completion: usize = completions.iter().map(|c| c.ids.len()).sum();
                    events.push(stream::data(&json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "system_fingerprint": null,
                        "choices": [],
                        "usage": usage(self.prompt_tokens, completion),
                    })));
                }
                events.push(stream::done());
                (events, true)
            }
            Update::Done(_) => (
                vec![
                    stream::error(&ApiError::internal("a text job finished without text")),
                    stream::done(),
                ],
                true,
            ),
            Update::Failed(e) => (
                vec![stream::error(&failure(&e, "messages")), stream::done()],
                true,
            ),
        }
    }
}
