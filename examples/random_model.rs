//! Writes a randomly initialised text model of a given shape as a native folder with a byte
//! codec, for benchmarks of shapes we have no trained weights for (e.g. llama2.c's
//! "stories15M", whose output layer is its embedding: `cargo run --release --example random_model --
//! /tmp/stories15m 32000 288 768 6 6 6 256 tied`).

use jielong::nn::burn::tensor::Device;
use jielong::nn::{Transformer, TransformerConfig, save_native};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, rest @ ..] = args.as_slice() else {
        anyhow::bail!(
            "usage: random_model OUT VOCAB HIDDEN INTERMEDIATE LAYERS HEADS KV_HEADS CONTEXT [tied]"
        )
    };
    let tied = rest.last().is_some_and(|s| s == "tied");
    let n: Vec<usize> = rest
        .iter()
        .filter(|s| *s != "tied")
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let [
        vocab,
        hidden,
        intermediate,
        layers,
        heads,
        kv_heads,
        context,
    ] = n.as_slice()
    else {
        anyhow::bail!("expected 7 numbers: VOCAB HIDDEN INTERMEDIATE LAYERS HEADS KV_HEADS CONTEXT")
    };
    let config = TransformerConfig::new(
        *vocab,
        *hidden,
        *intermediate,
        *layers,
        *heads,
        *kv_heads,
        hidden / heads,
        *context,
    )
    .with_tie_embeddings(tied);
    let model = Transformer::init(&config, &Device::flex(), 0)?;
    // A byte codec covers the first 256 ids; the rest of a large vocabulary is never decoded.
    save_native(
        out.as_ref(),
        "text",
        &model,
        &serde_json::json!({"kind": "bytes"}),
        &serde_json::json!({}),
    )?;
    println!("wrote {} parameters to {out}", config.num_params());
    Ok(())
}
