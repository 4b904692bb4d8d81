//! From flags to the library's settings, and the library's setting errors back to flags.

use std::path::Path;

use anyhow::{Context, Result, bail};
use jielong_core::{InvalidSetting, SamplerConfig};
use jielong_nn::burn::tensor::Device;
use jielong_nn::select_device;
use serde_json::Value;

use crate::args::{DeviceArgs, SamplingArgs};

/// The device training runs on.
pub fn device(args: &DeviceArgs) -> Result<Device> {
    select_device(&args.device)
}

/// The sampler the flags ask for; nonsense values are errors naming the flag. Without
/// --temperature it draws at 1: [`crate::open::temperature`] puts in the model's default.
pub fn sampler_config(s: &SamplingArgs) -> Result<SamplerConfig> {
    let config = SamplerConfig {
        greedy: s.greedy,
        temperature: s.temperature.unwrap_or(1.0),
        top_k: s.top_k,
        top_p: s.top_p,
        min_p: s.min_p,
        repetition_penalty: s.repetition_penalty,
    };
    config.validate()?;
    if s.show_probs == Some(0) {
        return Err(InvalidSetting::new("show_probs", "must be at least 1").into());
    }
    Ok(config)
}

/// The most sequences one `generate` command draws: they decode together as one batch, each
/// with its own KV cache, so a count in the millions would only exhaust the memory.
const MAX_COUNT: usize = 1024;

/// Checks `--count`: 1 to [`MAX_COUNT`].
pub fn check_count(count: usize) -> Result<()> {
    if count == 0 {
        bail!("--count must be at least 1");
    }
    if count > MAX_COUNT {
        bail!(
            "--count must be at most {MAX_COUNT} (they decode as one batch); for more, run again \
             with another --seed"
        );
    }
    Ok(())
}

/// The flag that sets a library setting: `top_p` is `--top-p`.
fn flag(field: &str) -> String {
    match field {
        "kept" => "--keep-rows".to_string(),
        "max_tokens" => "--max-new-tokens".to_string(),
        _ => format!("--{}", field.replace('_', "-")),
    }
}

/// An error as the user reads it: its chain of causes, with settings named by their flags.
pub fn describe(e: &anyhow::Error) -> String {
    e.chain()
        .map(|cause| match cause.downcast_ref::<InvalidSetting>() {
            Some(s) => format!("{} {}", flag(s.field), s.message),
            None => cause.to_string(),
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// Reads a JSON file with a clear error.
pub fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_named_by_their_flags() {
        let e = anyhow::Error::from(InvalidSetting::new("top_p", "must be in (0, 1] (got 2)"))
            .context("cannot draw");
        assert_eq!(
            describe(&e),
            "cannot draw: --top-p must be in (0, 1] (got 2)"
        );
        assert_eq!(flag("repetition_penalty"), "--repetition-penalty");
    }
}
