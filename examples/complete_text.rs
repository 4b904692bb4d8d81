//! Continue a text with a shipped model through the library call behind `jielong generate text`:
//! `cargo run --release --example complete_text -- models/shakespeare-char "ROMEO:"`.

use jielong::core::{Flow, FolderCodec, SamplerConfig};
use jielong::nn::ModelFolder;
use jielong::nn::burn::tensor::Device;
use jielong::text::{CompletionRequest, TextCodec, TextEvent, TextModel, TextPrompt, complete};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, prompt) = (
        args.get(1).map_or("models/shakespeare-char", |s| s),
        args.get(2).map_or("ROMEO:", |s| s),
    );
    let folder = ModelFolder::open(dir.as_ref())?;
    let model = folder.load(&Device::flex())?;
    let codec = TextCodec::from_json(&folder.codec, &folder.dir)?;
    let request = CompletionRequest {
        sampler: SamplerConfig {
            temperature: 0.8,
            ..Default::default()
        },
        seed: 7,
        ..CompletionRequest::new(TextPrompt::Text(prompt.to_string()), 120)
    };
    print!("{prompt}");
    let done = complete(&model, &TextModel::new(codec, &[]), &request, &mut |e| {
        if let TextEvent::Token(t) = e {
            print!("{}", t.text); // each token's text as it is drawn
        }
        Flow::Continue
    })?;
    println!("{}", done[0].unshown);
    Ok(())
}
