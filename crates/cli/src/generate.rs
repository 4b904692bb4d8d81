//! `jielong generate text|image|audio`: one command per modality, each a shell over its crate's
//! recipe.

use anyhow::Result;

use crate::args::{GenerateArgs, GenerateWhat};

pub fn run(args: GenerateArgs) -> Result<()> {
    match args.what {
        GenerateWhat::Text(a) => crate::generate_text::run(a),
        GenerateWhat::Image(a) => crate::generate_image::run(a),
        GenerateWhat::Audio(a) => crate::generate_audio::run(a),
    }
}
