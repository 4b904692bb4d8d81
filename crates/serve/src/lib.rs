//! jielong-serve: the HTTP shell over the same recipes as the command line.
//!
//! A [`Server`] holds any number of models — text, image and audio at once — each with one
//! worker thread that owns its decoder and the one generation loop
//! ([`jielong_core::Generator`]). Requests are turned into the library's jobs
//! (`CompletionJob`, `DrawJob`, `ClipJob`: see `jobs`), join the running batch at a step
//! boundary and leave when done (continuous batching). The endpoints follow OpenAI's shapes
//! (completions, chat, images, speech) so that its clients work unchanged; `/metrics` speaks
//! Prometheus, and `/` is a playground page that shows the distribution behind every token.
//!
//! The crate knows no model folders: the caller (the `jielong serve` command) opens them and
//! hands over a decoder and the codec parts ([`Kind`]).

mod api;
mod error;
mod jobs;
mod models;
mod routes;
mod stats;
mod worker;

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use jielong_core::Decoder;

pub use jobs::Limits;
pub use models::{DrawDefaults, Kind};

/// How the server listens and what it allows.
#[derive(Clone, Debug)]
pub struct Options {
    pub host: String,
    /// 0 lets the system choose a free port (printed at start-up).
    pub port: u16,
    /// When set, every API route needs `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// An origin allowed to call the API from a browser (`*` for any); none: CORS closed.
    pub cors: Option<String>,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Requests that may wait for a model's batch before the server answers 503.
    pub queue: usize,
    /// Most sequences a model's batch steps together.
    pub max_batch: usize,
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            api_key: None,
            cors: None,
            max_body: 1 << 20,
            queue: 256,
            max_batch: 64,
            limits: Limits::default(),
        }
    }
}

/// A server being assembled: add models, then [`Server::run`].
pub struct Server {
    options: Options,
    models: Vec<&'static models::Served>,
}

impl Server {
    pub fn new(options: Options) -> Self {
        Self {
            options,
            models: Vec::new(),
        }
    }

    /// Serves `decoder` as `name`, starting its worker thread.
    pub fn add<D: Decoder + Send + 'static>(
        &mut self,
        name: &str,
        decoder: D,
        kind: Kind,
    ) -> Result<()> {
        if self.models.iter().any(|m| m.name == name) {
            bail!("two models would both be served as `{name}`: give them different names");
        }
        let (queue, work) = std::sync::mpsc::channel();
        // Served models live as long as the process (see `models`).
        let served: &'static models::Served = Box::leak(Box::new(models::Served::new(
            name.to_string(),
            kind,
            decoder.context_len(),
            decoder.vocab_size(),
            queue,
            self.options.queue,
        )));
        worker::spawn(served, decoder, work, self.options.max_batch)
            .with_context(|| format!("cannot start the worker of {name}"))?;
        self.models.push(served);
        Ok(())
    }

    /// Binds, prints `listening on http://ADDR` on stderr, and serves until Ctrl-C.
    pub fn run(self) -> Result<()> {
        if self.models.is_empty() {
            bail!("no models to serve: give at least one --model");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("jielong-http")
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(self.serve())
    }

    async fn serve(self) -> Result<()> {
        let o = &self.options;
        let metrics = stats::install()?;
        for m in &self.models {
            stats::register(&m.name);
        }
        let shared: &'static routes::Shared = Box::leak(Box::new(routes::Shared {
            models: self.models.clone(),
            limits: o.limits.clone(),
            api_key: o.api_key.clone().filter(|k| !k.is_empty()),
            metrics,
        }));
        let app = routes::router(shared, o.max_body, o.cors.as_deref());
        let listener = tokio::net::TcpListener::bind((o.host.as_str(), o.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", o.host, o.port))?;
        let addr: SocketAddr = listener.local_addr()?;
        eprintln!("jielong serve: listening on http://{addr}");
        for m in &self.models {
            eprintln!("  {} ({} model)", m.name, m.modality.name());
        }
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the server stopped")
    }
}
