//! The models a server holds: what each one is (a text model with its chat template, an image
//! or audio codec with its default guidance), its queue, and how `/v1/models` describes it.
//!
//! A served model lives as long as the process, so it is leaked once at start-up: the jobs
//! built from requests borrow its codec (`CompletionJob<'static>`) and can then travel to the
//! model's worker thread without copying the codec or tying lifetimes in knots.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;

use base64::Engine;
use jielong_audio::AudioCodec;
use jielong_core::Codec;
use jielong_image::ImageCodec;
use jielong_text::{ChatStyle, ChatTemplate, TextModel};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::error::ApiError;
use crate::stats;
use crate::worker::{Job, Update, Work};

/// What a model is, as the caller opened it (the CLI reads folders; the server only serves).
pub enum Kind {
    Text {
        model: TextModel,
        template: ChatTemplate,
    },
    Image {
        codec: ImageCodec,
        defaults: DrawDefaults,
    },
    Audio {
        codec: AudioCodec,
        defaults: DrawDefaults,
    },
}

/// A text model and how a chat reply ends under its template.
pub struct TextServed {
    pub model: TextModel,
    pub style: ChatStyle,
}

/// An image or audio model's own drawing defaults (its config.json's `generation` section),
/// used when a request leaves them out.
#[derive(Clone, Copy, Debug, Default)]
pub struct DrawDefaults {
    /// Classifier-free guidance for class-conditional draws.
    pub guidance: Option<f32>,
    pub temperature: Option<f32>,
}

pub struct ImageServed {
    pub codec: ImageCodec,
    pub defaults: DrawDefaults,
}

pub struct AudioServed {
    pub codec: AudioCodec,
    pub defaults: DrawDefaults,
}

pub enum Modality {
    Text(TextServed),
    Image(ImageServed),
    Audio(AudioServed),
}

impl Modality {
    pub fn name(&self) -> &'static str {
        match self {
            Modality::Text(_) => "text",
            Modality::Image(_) => "image",
            Modality::Audio(_) => "audio",
        }
    }
}

/// One model being served.
pub struct Served {
    /// The name clients use (`model` in a request).
    pub name: String,
    pub modality: Modality,
    /// The decoder's context and output layer, read before the decoder moved to its worker.
    pub context: usize,
    pub vocab: usize,
    /// Unix time the server started (`created` in `/v1/models`).
    pub created: u64,
    queue: Sender<Work>,
    /// Requests sent to the worker and not yet in its batch.
    waiting: AtomicUsize,
    queue_limit: usize,
}

impl Served {
    pub(crate) fn new(
        name: String,
        kind: Kind,
        context: usize,
        vocab: usize,
        queue: Sender<Work>,
        queue_limit: usize,
    ) -> Self {
        let modality = match kind {
            Kind::Text { model, template } => {
                let style = ChatStyle::new(&model, template);
                Modality::Text(TextServed { model, style })
            }
            Kind::Image { codec, defaults } => Modality::Image(ImageServed { codec, defaults }),
            Kind::Audio { codec, defaults } => Modality::Audio(AudioServed { codec, defaults }),
        };
        Self {
            name,
            modality,
            context,
            vocab,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            queue,
            waiting: AtomicUsize::new(0),
            queue_limit,
        }
    }

    /// Hands a job to the worker, unless too many are waiting already (503). The receiver
    /// gets the job's tokens as they are drawn; dropping it cancels the job at the next step.
    pub fn submit(&'static self, job: Job) -> Result<UnboundedReceiver<Update>, ApiError> {
        let (reply, rx) = unbounded_channel();
        self.enqueue(Work::Generate { job, reply })?;
        Ok(rx)
    }

    /// Queues any work, counting it as waiting until the worker takes it.
    pub fn enqueue(&'static self, work: Work) -> Result<(), ApiError> {
        let waiting = self.waiting.fetch_add(1, Ordering::SeqCst);
        if waiting >= self.queue_limit {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::busy(&self.name, waiting));
        }
        stats::queue_depth(&self.name, waiting + 1);
        self.queue.send(work).map_err(|_| {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            ApiError::internal(format!("the worker of model `{}` has stopped", self.name))
        })
    }

    /// The worker took one waiting piece of work.
    pub(crate) fn taken(&self) {
        let left = self
            .waiting
            .fetch_sub(1, Ordering::SeqCst)
            .saturating_sub(1);
        stats::queue_depth(&self.name, left);
    }

    pub fn text(&'static self) -> Result<&'static TextServed, ApiError> {
        match &self.modality {
            Modality::Text(t) => Ok(t),
            _ => Err(self.wrong_modality("text")),
        }
    }

    pub fn image(&'static self) -> Result<&'static ImageServed, ApiError> {
        match &self.modality {
            Modality::Image(i) => Ok(i),
            _ => Err(self.wrong_modality("image")),
        }
    }

    pub fn audio(&'static self) -> Result<&'static AudioServed, ApiError> {
        match &self.modality {
            Modality::Audio(a) => Ok(a),
            _ => Err(self.wrong_modality("audio")),
        }
    }

    fn wrong_modality(&self, wanted: &str) -> ApiError {
        let endpoint = match self.modality {
            Modality::Text(_) => "/v1/completions or /v1/chat/completions",
            Modality::Image(_) => "/v1/images/generations",
            Modality::Audio(_) => "/v1/audio/speech",
        };
        ApiError::bad(
            "model",
            format!(
                "`{}` is {} {} model and this endpoint needs {} {wanted} model: use {endpoint}",
                self.name,
                article(self.modality.name()),
                self.modality.name(),
                article(wanted),
            ),
        )
        .with_code("wrong_modality")
    }

    /// The entry of `/v1/models`: OpenAI's fields, then what a client needs to build requests.
    pub fn summary(&self) -> Value {
        let mut v = json!({
            "id": self.name,
            "object": "model",
            "created": self.created,
            "owned_by": "jielong",
            "modality": self.modality.name(),
            "context_length": self.context,
            "vocab_size": self.vocab,
        });
        match &self.modality {
            Modality::Text(t) => {
                v["chat_template"] = json!(if t.style.template.builtin {
                    "builtin"
                } else {
                    "model"
                });
            }
            Modality::Image(i) => {
                let (cols, rows) = i.codec.token_grid();
                v["classes"] = json!(i.codec.classes());
                v["width"] = json!(i.codec.width());
                v["height"] = json!(i.codec.height());
                v["token_grid"] = json!([cols, rows]);
                v["tokens_per_image"] = json!(i.codec.tokens_per_image());
                v["guidance"] = json!(i.defaults.guidance);
                v["temperature"] = json!(i.defaults.temperature);
            }
            Modality::Audio(a) => {
                v["classes"] = json!(a.codec.classes());
                v["sample_rate"] = json!(a.codec.rate());
                v["guidance"] = json!(a.defaults.guidance);
                v["temperature"] = json!(a.defaults.temperature);
            }
        }
        v
    }

    /// `GET /v1/models/{id}`: the summary, plus how each token reads (text: a label per token
    /// of small vocabularies; images: a picture of each pixel token, for the playground's
    /// distributions).
    pub fn details(&self) -> Value {
        let mut v = self.summary();
        match &self.modality {
            Modality::Text(t) => {
                let size = t.model.codec.vocab().size();
                if size <= 4096 {
                    v["token_labels"] = json!(
                        (0..size as u32)
                            .map(|id| t.model.codec.token_label(id))
                            .collect::<Vec<_>>()
                    );
                }
            }
            Modality::Image(i) => {
                v["token_images"] = json!(token_images(&i.codec));
                v["token_labels"] = json!(
                    (0..i.codec.vocab().size() as u32)
                        .map(|id| i.codec.token_label(id))
                        .collect::<Vec<_>>()
                );
            }
            Modality::Audio(a) => {
                v["token_labels"] = json!(
                    (0..a.codec.vocab().size() as u32)
                        .map(|id| a.codec.token_label(id))
                        .collect::<Vec<_>>()
                );
            }
        }
        v
    }
}

/// A PNG data URL of each content token's cell as the codec paints it: the first cell of an
/// image holding only that token.
fn token_images(codec: &ImageCodec) -> Vec<String> {
    let side = codec.rows_per_token_row();
    (0..codec.vocab().content_size as u32)
        .map(|id| {
            codec
                .decode_partial(&[id])
                .ok()
                .map(|img| image::imageops::crop_imm(&img, 0, 0, side, side).to_image())
                .and_then(|cell| png(&cell).ok())
                .map(|bytes| {
                    format!(
                        "data:image/png;base64,{}",
                        base64::engine::general_purpose::STANDARD.encode(bytes)
                    )
                })
                .unwrap_or_default()
        })
        .collect()
}

/// An image as PNG bytes.
pub fn png(img: &image::RgbImage) -> anyhow::Result<Vec<u8>> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)?;
    Ok(bytes.into_inner())
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}
