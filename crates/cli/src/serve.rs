//! `jielong serve`: opens each model folder as the other commands do (its decoder, its codec,
//! a text model's chat template, an image or audio model's default guidance) and hands them
//! to `jielong_serve`, which serves them over HTTP until Ctrl-C.

use std::path::Path;

use anyhow::{Context, Result, bail};
use jielong_nn::ModelFolder;
use jielong_serve::{DrawDefaults, Kind, Limits, Options, Server};

use crate::args::ServeArgs;
use crate::open;

pub fn run(a: ServeArgs) -> Result<()> {
    ignore_closed_connections();
    let load = open::load_options(&a.load)?;
    let options = Options {
        host: a.host.clone(),
        port: a.port,
        api_key: a
            .api_key
            .clone()
            .or_else(|| std::env::var("JIELONG_API_KEY").ok()),
        cors: a.cors.clone(),
        max_body: a.max_body,
        queue: a.queue,
        max_batch: a.max_batch,
        limits: Limits {
            max_tokens: a.max_tokens,
            ..Limits::default()
        },
    };
    if a.host != "127.0.0.1" && a.host != "localhost" && options.api_key.is_none() {
        eprintln!(
            "warning: listening on {} without --api-key: anyone who can reach it can use it",
            a.host
        );
    }
    let mut server = Server::new(options);
    for path in &a.model {
        let folder = ModelFolder::open(path)?;
        let name = served_name(path)?;
        let kind = kind(&folder)?;
        let model = folder.load_model(load.clone())?;
        eprintln!(
            "loaded {name}: {} model, {}",
            folder.modality,
            model.describe()
        );
        server.add(&name, model, kind)?;
    }
    server.run()
}

/// The codec parts of a folder, by its modality.
fn kind(folder: &ModelFolder) -> Result<Kind> {
    Ok(match folder.modality.as_str() {
        "text" => Kind::Text {
            model: open::text_model(folder)?,
            template: open::chat_template(folder)?,
        },
        "image" => Kind::Image {
            codec: open::codec(folder)?,
            defaults: draw_defaults(folder)?,
        },
        "audio" => Kind::Audio {
            codec: open::codec(folder)?,
            defaults: draw_defaults(folder)?,
        },
        other => bail!(
            "{}: cannot serve a model of modality {other:?}",
            folder.dir.display()
        ),
    })
}

/// An image or audio model's own guidance and temperature.
fn draw_defaults(folder: &ModelFolder) -> Result<DrawDefaults> {
    Ok(DrawDefaults {
        guidance: open::guidance(folder, None, true)?,
        temperature: open::default_temperature(folder)?,
    })
}

/// A model is served under its folder's name, or its file's without `.gguf`.
fn served_name(path: &Path) -> Result<String> {
    let full = path
        .canonicalize()
        .with_context(|| format!("cannot find {}", path.display()))?;
    let name = full
        .file_name()
        .with_context(|| format!("{} has no name to serve it under", path.display()))?
        .to_string_lossy();
    Ok(name.strip_suffix(".gguf").unwrap_or(&name).to_string())
}

/// A client that hangs up mid-answer must not end the server: writing to its socket raises
/// SIGPIPE, which the command line otherwise restores to its default (quit) for `| head`.
fn ignore_closed_connections() {
    #[cfg(unix)]
    // Safety: changes the action of one signal, before the server starts its threads.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
