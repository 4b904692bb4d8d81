//! jielong-core knows tokens, not tensors.
//!
//! A [`Codec`] turns content into token ids, a [`Decoder`] gives the distribution of the next
//! token, a [`Sampler`] rolls the dice, and [`generate`](fn@generate) is the one loop that
//! repeats it for every modality. [`score`](fn@score) measures held-out nats per token with any
//! decoder.

#![warn(missing_docs)]

pub mod classes;
pub mod codec;
pub mod data;
pub mod decoder;
pub mod draw;
pub mod error;
pub mod generate;
pub mod guided;
pub mod kmeans;
pub mod sampler;
pub mod score;

pub use classes::{Accuracy, ClassAccuracy, par_map, sorted_classes};
pub use codec::{Codec, FolderCodec, Specials, Vocab};
pub use data::{Batch, LABEL_DROPOUT, Redraw, Sequences};
pub use decoder::{Decoder, Feed, Logits, Positions, check_feeds, rows_returned};
pub use draw::ClassDraw;
pub use error::{FeedError, InvalidSetting, PromptError};
pub use generate::{
    Done, Event, Finish, Flow, GenerateConfig, Generation, Generator, Overflow, generate,
    generate_cached,
};
pub use guided::Guidance;
pub use sampler::{Candidates, Distribution, Sampler, SamplerConfig};
pub use score::{Score, Window, score, score_each, windows};

/// The cores this process may use, asked of the system once: on Linux the answer reads cgroup
/// files (about twenty system calls), too slow for a generation step that needs it every token.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Bytes of memory this process can still take, as far as the system says: Linux's
/// `MemAvailable`, lowered to what a cgroup (v2) limit leaves; `None` where neither is known.
pub fn available_memory() -> Option<u64> {
    let system = proc_bytes("/proc/meminfo", "MemAvailable");
    let number = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    // `memory.max` reads "max" when there is no limit, which does not parse.
    let cgroup = number("/sys/fs/cgroup/memory.max")
        .map(|max| max.saturating_sub(number("/sys/fs/cgroup/memory.current").unwrap_or(0)));
    match (system, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The `key:  N kB` line of a Linux `/proc` file (`/proc/meminfo`, `/proc/self/status`), in
/// bytes; `None` where the file or the line is missing.
pub fn proc_bytes(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, then a rename, so a reader
/// (or a crash) never sees half a file.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_are_read_in_bytes_by_whole_key() {
        let total = proc_bytes("/proc/meminfo", "MemTotal").unwrap();
        let available = proc_bytes("/proc/meminfo", "MemAvailable").unwrap();
        assert!(
            total.is_multiple_of(1024) && available <= total,
            "{available} of {total}"
        );
        // "Mem" is a prefix of those keys, not a key.
        assert_eq!(proc_bytes("/proc/meminfo", "Mem"), None);
        assert_eq!(proc_bytes("/no/such/file", "MemTotal"), None);
        assert!(available_memory().is_some_and(|a| a <= total));
    }
}
