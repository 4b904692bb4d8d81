//! What `/metrics` reports, in Prometheus text through the `metrics` facade: requests by
//! endpoint and status, tokens drawn, the queue and the batch of each model, and the time of
//! one step (every running sequence gets one token per step, so it is each request's seconds
//! per token).

use std::sync::OnceLock;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const REQUESTS: &str = "jielong_requests_total";
const TOKENS: &str = "jielong_generated_tokens_total";
const QUEUE: &str = "jielong_queue_depth";
const BATCH: &str = "jielong_batch_size";
const BATCH_MAX: &str = "jielong_batch_size_max";
const BATCH_SIZES: &str = "jielong_step_batch_size";
const STEP: &str = "jielong_seconds_per_token";
const CANCELLED: &str = "jielong_sequences_cancelled_total";

/// The process's recorder (the `metrics` facade has one global recorder).
pub fn install() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(STEP.into()),
            &[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full(BATCH_SIZES.into()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
        )?
        .install_recorder()?;
    describe_counter!(REQUESTS, "HTTP requests by endpoint and status");
    describe_counter!(
        TOKENS,
        "Tokens drawn (text tokens, pixel tokens, audio samples)"
    );
    describe_gauge!(QUEUE, "Requests waiting to join the model's batch");
    describe_gauge!(BATCH, "Sequences in the model's batch at the latest step");
    describe_gauge!(BATCH_MAX, "The largest batch the model has stepped");
    describe_histogram!(BATCH_SIZES, "Sequences fed per step");
    describe_histogram!(
        STEP,
        "Seconds per step: each running sequence draws one token"
    );
    describe_counter!(
        CANCELLED,
        "Sequences dropped because their client went away"
    );
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

pub fn request(endpoint: &str, status: u16) {
    counter!(REQUESTS, "endpoint" => endpoint.to_string(), "status" => status.to_string())
        .increment(1);
}

pub fn queue_depth(model: &str, waiting: usize) {
    gauge!(QUEUE, "model" => model.to_string()).set(waiting as f64);
}

pub fn batch(model: &str, size: usize, largest: usize) {
    gauge!(BATCH, "model" => model.to_string()).set(size as f64);
    gauge!(BATCH_MAX, "model" => model.to_string()).set(largest as f64);
    histogram!(BATCH_SIZES, "model" => model.to_string()).record(size as f64);
}

/// The batch after a step (0 once everyone has finished).
pub fn batch_now(model: &str, size: usize) {
    gauge!(BATCH, "model" => model.to_string()).set(size as f64);
}

pub fn step(model: &str, seconds: f64, drawn: usize) {
    histogram!(STEP, "model" => model.to_string()).record(seconds);
    counter!(TOKENS, "model" => model.to_string()).increment(drawn as u64);
}

pub fn cancelled(model: &str, sequences: usize) {
    counter!(CANCELLED, "model" => model.to_string()).increment(sequences as u64);
}

/// Sets every per-model series to zero at start-up, so `/metrics` lists them before the
/// first request.
pub fn register(model: &str) {
    queue_depth(model, 0);
    gauge!(BATCH, "model" => model.to_string()).set(0.0);
    gauge!(BATCH_MAX, "model" => model.to_string()).set(0.0);
    counter!(TOKENS, "model" => model.to_string()).increment(0);
    counter!(CANCELLED, "model" => model.to_string()).increment(0);
}
