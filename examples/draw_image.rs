//! Draw digits pixel by pixel with a shipped model through the library call behind `jielong
//! generate image`: `cargo run --release --example draw_image -- models/mnist-binary 3 threes.png`.

use jielong::core::FolderCodec;
use jielong::image::{DrawRequest, ImageCodec, draw_images, grid, save_png};
use jielong::nn::ModelFolder;
use jielong::nn::burn::tensor::Device;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map_or("models/mnist-binary", |s| s);
    let class = args.get(2).map_or("3", |s| s);
    let out = args.get(3).map_or("digits.png", |s| s);
    let folder = ModelFolder::open(dir.as_ref())?;
    let model = folder.load(&Device::flex())?;
    let codec = ImageCodec::from_json(&folder.codec, &folder.dir)?;
    let request = DrawRequest {
        guidance: Some(3.0),
        seed: 1,
        ..DrawRequest::new(Some(class), 4)
    };
    let images = draw_images(&model, &codec, &request)?;
    save_png(&grid(&images, 4, 4)?, out.as_ref())?;
    println!("wrote {} images of class {class} to {out}", images.len());
    Ok(())
}
