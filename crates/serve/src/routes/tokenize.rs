//! `POST /tokenize` and `POST /detokenize` (vLLM's shapes): what the model's codec makes of a
//! text or a conversation, and back. Text models only.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::api::{ApiJson, DetokenizeBody, TokenizeBody};
use crate::error::ApiError;
use crate::jobs;
use crate::routes::App;
use crate::routes::text::{text_of, token_text};

pub async fn tokenize(
    State(shared): App,
    ApiJson(body): ApiJson<TokenizeBody>,
) -> Result<Json<Value>, ApiError> {
    let served = shared.model(&body.model)?;
    let text = served.text()?;
    let codec = &text.model.codec;
    let ids = match (&body.prompt, &body.messages) {
        (Some(prompt), None) => {
            // A generation prompt gets what the tokenizer adds to one (a Llama BOS).
            let encoded = if body.add_special_tokens.unwrap_or(true) {
                codec.encode_prompt(prompt)
            } else {
                codec.encode_text(prompt)
            };
            encoded.map_err(|e| ApiError::bad("prompt", format!("{e:#}")))?
        }
        (None, Some(messages)) => text
            .style
            .prompt(&text.model, &jobs::messages(messages)?)
            .map_err(|e| ApiError::bad("messages", format!("{e:#}")))?,
        _ => {
            return Err(ApiError::bad(
                "prompt",
                "give either `prompt` (a text) or `messages` (a conversation)",
            ));
        }
    };
    Ok(Json(json!({
        "tokens": ids,
        "count": ids.len(),
        "max_model_len": served.context,
        "token_strs": ids.iter().map(|&id| token_text(codec, id)).collect::<Vec<_>>(),
    })))
}

pub async fn detokenize(
    State(shared): App,
    ApiJson(body): ApiJson<DetokenizeBody>,
) -> Result<Json<Value>, ApiError> {
    let served = shared.model(&body.model)?;
    let text = served.text()?;
    jobs::check_ids(text, &body.tokens, "tokens")?;
    Ok(Json(
        json!({ "prompt": text_of(&text.model.codec, &body.tokens) }),
    ))
}
