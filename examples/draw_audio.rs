//! Say a digit token by token (samples or short frames) with a shipped model through the library call behind `jielong
//! generate audio`: `cargo run --release --example draw_audio -- models/spoken-digits 4 four.wav`.

use jielong::audio::{AudioCodec, ClipRequest, draw, write_wav};
use jielong::core::{Event, Flow, FolderCodec};
use jielong::nn::ModelFolder;
use jielong::nn::burn::tensor::Device;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map_or("models/spoken-digits", |s| s);
    let class = args.get(2).map_or("4", |s| s);
    let out = args.get(3).map_or("digit.wav", |s| s);
    let seconds: f64 = args.get(4).map_or(Ok(0.25), |s| s.parse())?;
    let folder = ModelFolder::open(dir.as_ref())?;
    let model = folder.load(&Device::flex())?;
    let codec = AudioCodec::from_json(&folder.codec, &folder.dir)?;
    let mut request = ClipRequest::new(Some(class), seconds, 1);
    request.draw.seed = 1;
    let mut drawn = 0;
    let clips = draw(&model, &codec, &request, &mut |event| {
        if let Event::Token { .. } = event {
            drawn += 1; // one per token drawn (the other events say the window slid)
        }
        Flow::Continue
    })?;
    write_wav(out.as_ref(), &clips[0].samples, codec.rate())?;
    println!(
        "wrote {out}: {} samples of class {class} at {} Hz from {drawn} tokens",
        clips[0].samples.len(),
        codec.rate()
    );
    Ok(())
}
