//! `POST /v1/completions`: continue a prompt (text or token ids), `n` times, streamed or not,
//! with log-probabilities; `echo` puts the prompt first, and with `max_tokens: 0` scores it
//! (the log-probability of every prompt token, from one forward pass over all of it).

use axum::extract::State;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use jielong_text::TextCodec;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::api::{ApiJson, CompletionBody, Prompt};
use crate::error::{ApiError, common_param};
use crate::jobs;
use crate::models::Served;
use crate::routes::stream::{self, Events};
use crate::routes::text::{Entry, failure, finish_reason, legacy_logprobs, text_of, usage};
use crate::routes::{App, collect, now, response_id};
use crate::worker::{Finished, Job, Scored, Update, Work};

pub async fn handle(
    State(shared): App,
    ApiJson(body): ApiJson<CompletionBody>,
) -> Result<Response, ApiError> {
    let served = shared.model(&body.model)?;
    let plan = jobs::completion(served, &body, &shared.limits)?;
    let codec = &plan.model.model.codec;
    let prompt_ids = plan.prompt_ids().to_vec();
    let echo = if body.echo {
        let text = match &body.prompt {
            Prompt::Text(s) => s.clone(),
            Prompt::Ids(ids) => text_of(codec, ids),
        };
        // Scoring is what an echo with log-probabilities (or with nothing to generate) is for.
        let scored = if plan.logprobs.is_some() || plan.max_tokens == 0 {
            score(served, &prompt_ids, plan.logprobs.unwrap_or(0))
                .await?
                .iter()
                .map(Entry::from)
                .collect()
        } else {
            Vec::new()
        };
        Some((text, scored))
    } else {
        None
    };
    let n = plan.job.request().count;
    let reply = Reply {
        id: response_id("cmpl"),
        created: now(),
        model: served.name.clone(),
        codec,
        prompt_tokens: prompt_ids.len(),
        logprobs: plan.logprobs.is_some() || (body.echo && plan.max_tokens == 0),
        echo,
        offsets: vec![0; n],
        include_usage: body.stream_options.is_some_and(|o| o.include_usage),
    };
    let rx = served.submit(Job::Text(plan.job))?;
    if body.stream {
        let mut reply = reply;
        let first = reply.echo_events(n);
        return Ok(stream::sse(rx, first, reply));
    }
    let (tokens, done) = collect(rx, reply.logprobs)
        .await
        .map_err(|e| failure(&e, "prompt"))?;
    let Finished::Text(completions) = done else {
        return Err(ApiError::internal("a text job finished without text"));
    };
    let mut reply = reply;
    let choices: Vec<Value> = completions
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (mut text, mut entries) = match &reply.echo {
                Some((t, scored)) => (t.clone(), scored.clone()),
                None => (String::new(), Vec::new()),
            };
            text.push_str(&c.text);
            entries.extend(
                tokens
                    .iter()
                    .filter(|t| t.index == i && !t.end)
                    .map(Entry::from),
            );
            json!({
                "index": i,
                "text": text,
                "logprobs": reply.logprobs.then(|| legacy_logprobs(codec, &entries, &mut reply.offsets[i])),
                "finish_reason": finish_reason(c.finish),
            })
        })
        .collect();
    let completion: usize = completions.iter().map(|c| c.ids.len()).sum();
    Ok(axum::Json(json!({
        "id": reply.id,
        "object": "text_completion",
        "created": reply.created,
        "model": reply.model,
        "choices": choices,
        "usage": usage(reply.prompt_tokens, completion),
    }))
    .into_response())
}

/// The log-probability of every token of `ids`, on the model's worker (between two steps).
async fn score(served: &'static Served, ids: &[u32], top: usize) -> Result<Vec<Scored>, ApiError> {
    let (reply, rx) = oneshot::channel();
    served.enqueue(Work::Score {
        ids: ids.to_vec(),
        top,
        reply,
    })?;
    match rx.await {
        Ok(Ok(scored)) => Ok(scored),
        Ok(Err(e)) => Err(ApiError::from_library(&e, "prompt", &common_param)),
        Err(_) => Err(ApiError::internal(
            "the model's worker stopped while scoring",
        )),
    }
}

/// What a completion answer carries, streamed or not.
struct Reply {
    id: String,
    created: u64,
    model: String,
    codec: &'static TextCodec,
    prompt_tokens: usize,
    logprobs: bool,
    /// The prompt's text and, when scored, its tokens.
    echo: Option<(String, Vec<Entry>)>,
    /// Characters of each choice's text so far (`text_offset`).
    offsets: Vec<usize>,
    include_usage: bool,
}

impl Reply {
    fn chunk(&self, choice: Value) -> Event {
        stream::data(&json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }))
    }

    /// A streamed answer starts with the echoed prompt of every choice.
    fn echo_events(&mut self, n: usize) -> Vec<Event> {
        let Some((text, scored)) = self.echo.clone() else {
            return Vec::new();
        };
        (0..n)
            .map(|i| {
                let logprobs = self
                    .logprobs
                    .then(|| legacy_logprobs(self.codec, &scored, &mut self.offsets[i]));
                self.chunk(
                    json!({"index": i, "text": text, "logprobs": logprobs, "finish_reason": null}),
                )
            })
            .collect()
    }
}

impl Events for Reply {
    fn on(&mut self, update: Update) -> (Vec<Event>, bool) {
        match update {
            Update::Token(t) => {
                // An end token is not part of the text; a token that adds no text yet (half a
                // character, a possible stop string) is sent only for its log-probability.
                if t.end || (t.text.is_empty() && !self.logprobs) {
                    return (Vec::new(), false);
                }
                let logprobs = self.logprobs.then(|| {
                    legacy_logprobs(self.codec, &[Entry::from(&t)], &mut self.offsets[t.index])
                });
                let choice = json!({"index": t.index, "text": t.text, "logprobs": logprobs, "finish_reason": null});
                (vec![self.chunk(choice)], false)
            }
            Update::Done(Finished::Text(completions)) => {
                let mut events = Vec::new();
                for (i, c) in completions.iter().enumerate() {
                    if !c.unshown.is_empty() {
                        events.push(self.chunk(
                            json!({"index": i, "text": c.unshown, "logprobs": null, "finish_reason": null}),
                        ));
                    }
                    events.push(self.chunk(json!({
                        "index": i, "text": "", "logprobs": null, "finish_reason": finish_reason(c.finish),
                    })));
                }
                if self.include_usage {
                    let completion: usize = completions.iter().map(|c| c.ids.len()).sum();
                    events.push(stream::data(&json!({
                        "id": self.id,
                        "object": "text_completion",
                        "created": self.created,
                        "model": self.model,
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
                vec![stream::error(&failure(&e, "prompt")), stream::done()],
                true,
            ),
        }
    }
}
