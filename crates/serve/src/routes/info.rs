//! What the server tells about itself: `GET /health`, `GET /v1/models`,
//! `GET /v1/models/{model}` and `GET /metrics` (Prometheus text).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::routes::App;

pub async fn health(State(shared): App) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "models": shared.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
    }))
}

pub async fn models(State(shared): App) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": shared.models.iter().map(|m| m.summary()).collect::<Vec<_>>(),
    }))
}

pub async fn model(State(shared): App, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(shared.model(&name)?.details()))
}

pub async fn metrics(State(shared): App) -> Response {
    // Histograms are summarised on upkeep; this exporter runs none in the background.
    shared.metrics.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}
