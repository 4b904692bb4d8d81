//! The playground at `/`: one static page, its script and its style, compiled into the binary
//! (no build step, nothing to install). It talks to the same API as any client.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

const PAGE: &str = include_str!("../playground/index.html");
const SCRIPT: &str = include_str!("../playground/playground.js");
const STYLE: &str = include_str!("../playground/playground.css");

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}
