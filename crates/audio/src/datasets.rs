//! Audio datasets: clips with optional labels, read from folders, archives, single files or a
//! small manifest listing several of those, and turned into token sequences for training.
//!
//! # What [`open_dataset`] reads
//! - a **folder** of WAVs (searched recursively, in name order): labels come from the file names,
//!   the leading token before the first `_` or `.` (`7_en-us_s130_p35.wav` → `7`, `3.wav` → `3`);
//!   if the folder holds a `transcripts.txt`, labels come from it instead;
//! - a **WAV file**: one unlabelled clip (e.g. a music track);
//! - a **tar archive** (`.tar.xz`, `.tar.gz`, `.tgz`, `.tar.bz2`, `.tar`): extracted with `tar`
//!   into a temporary folder, read like a folder but unlabelled, and the folder removed;
//! - a **manifest** (`.txt`): several sources combined, one per line, `PATH [LABELS]` with `PATH`
//!   relative to the manifest and `LABELS` one of `names`, `none`, `transcript=FILE`
//!   (the default is `names` for a folder, `none` otherwise), and optionally `repeat=N`: the
//!   source's clips are read N times, so that a small labelled set is not drowned by hours of
//!   unlabelled audio when training windows are drawn. `#` starts a comment. For example:
//!   ```text
//!   espeak-digits/out                      names repeat=8
//!   ../../shared/data/audio/asterisk_en_US_f_Allison_wav.tar.xz   none
//!   ../../shared/data/audio/opsound_macroform-cold_day_8k.wav
//!   ```
//!
//! A transcript file has `name: transcript` lines (`;` or `#` start comments), `name` being the
//! file's path without `.wav` relative to the sound folder (`digits/7: seven`).
//!
//! # Held-out digits
//! The ten recorded digits `asterisk_digits/0..9.wav` are the test set of the spoken-digit model:
//! [`HeldOut`] reads them, finds copies of them in a training set (by path or by content: the
//! prompts archive holds the very same recordings as `digits/0.wav`...), removes them
//! ([`AudioDataset::remove_held_out`]) and refuses a training set that still has one
//! ([`HeldOut::check`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use jielong_core::{Codec, LABEL_DROPOUT, Sequences, sorted_classes};

use crate::codec::AudioCodec;
use crate::wav::read_wav;

/// The spoken word of each digit class, `"0"` → `"zero"`.
pub const DIGIT_WORDS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// The digit classes `"0".."9"`.
pub fn digit_classes() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

/// The word a digit class says (`"7"` → `"seven"`), `None` for other labels.
pub fn digit_word(label: &str) -> Option<&'static str> {
    label
        .parse::<usize>()
        .ok()
        .filter(|_| label.len() == 1)
        .map(|d| DIGIT_WORDS[d])
}

/// Music and long prompts are cut into pieces no longer than this (seconds) by
/// [`AudioDataset::cut_long`] unless told otherwise.
pub const DEFAULT_PIECE_SECONDS: f64 = 4.0;

/// Where the shared audio files live, relative to `shared/data/audio`.
pub const ASTERISK_DIGITS_DIR: &str = "asterisk_digits";
pub const ASTERISK_PROMPTS_ARCHIVE: &str = "asterisk_en_US_f_Allison_wav.tar.xz";
pub const ASTERISK_TRANSCRIPTS: &str = "asterisk_core-sounds-en_transcripts.txt";
pub const MUSIC_TRACK: &str = "opsound_macroform-cold_day_8k.wav";

/// One clip at the dataset's rate.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledClip {
    pub samples: Vec<f32>,
    /// Class label, or `None` for unlabelled audio (music, prompts).
    pub label: Option<String>,
    /// The file it came from (for an archive member, the archive's path joined with the member's).
    pub source: PathBuf,
}

/// How the clips of a source get their labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelRule {
    /// The leading token of the file name, before the first `_` or `.`.
    FileName,
    /// The transcript of the file in a `name: transcript` list; files it lacks are unlabelled.
    Transcript(PathBuf),
    Unlabelled,
}

/// A folder, WAV file or archive, and how its clips are labelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub labels: LabelRule,
    /// Each clip is read this many times (at least 1).
    pub repeat: usize,
}

impl Source {
    pub fn new(path: impl Into<PathBuf>, labels: LabelRule) -> Self {
        Self {
            path: path.into(),
            labels,
            repeat: 1,
        }
    }
}

/// Clips read from one or more sources, all at `rate` Hz.
#[derive(Clone, Debug, Default)]
pub struct AudioDataset {
    pub rate: u32,
    pub clips: Vec<LabelledClip>,
    /// Things a person should know about how it was read (files without a transcript...).
    pub notes: Vec<String>,
}

/// The standard training sources of the audio models: the espeak-ng digits made by
/// `datasets/espeak-digits/make.sh` into `espeak_digits` (labels from names), the Allison prompts
/// (unlabelled) and the music track (unlabelled). Never the held-out recorded digits; the
/// prompts archive holds copies of them, which [`AudioDataset::remove_held_out`] drops.
pub fn training_sources(shared_audio: &Path, espeak_digits: &Path) -> Vec<Source> {
    vec![
        Source::new(espeak_digits, LabelRule::FileName),
        Source::new(
            shared_audio.join(ASTERISK_PROMPTS_ARCHIVE),
            LabelRule::Unlabelled,
        ),
        Source::new(shared_audio.join(MUSIC_TRACK), LabelRule::Unlabelled),
    ]
}

/// The held-out recorded digits `0.wav..9.wav`, in order.
pub fn held_out_digit_files(shared_audio: &Path) -> Vec<PathBuf> {
    (0..10)
        .map(|d| {
            shared_audio
                .join(ASTERISK_DIGITS_DIR)
                .join(format!("{d}.wav"))
        })
        .collect()
}

/// Opens a folder, WAV file, archive or manifest (see the module documentation) at `rate` Hz.
pub fn open_dataset(path: &Path, rate: u32) -> Result<AudioDataset> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    if path.is_file() && has_extension(path, &[".txt"]) {
        let sources = read_manifest(path)?;
        return open_sources(&sources, rate);
    }
    let labels = default_rule(path);
    open_sources(&[Source::new(path, labels)], rate)
}

/// Reads several sources into one dataset, in the order given.
pub fn open_sources(sources: &[Source], rate: u32) -> Result<AudioDataset> {
    if sources.is_empty() {
        bail!("no audio sources given");
    }
    let mut dataset = AudioDataset {
        rate,
        ..Default::default()
    };
    for source in sources {
        let first = dataset.clips.len();
        read_source(source, rate, &mut dataset)?;
        let read = dataset.clips[first..].to_vec();
        for _ in 1..source.repeat.max(1) {
            dataset.clips.extend_from_slice(&read);
        }
    }
    Ok(dataset)
}

/// The label rule a path gets when none is named: names for a folder (or its `transcripts.txt`),
/// none for a file or an archive.
fn default_rule(path: &Path) -> LabelRule {
    if path.is_dir() {
        let transcripts = path.join("transcripts.txt");
        if transcripts.is_file() {
            LabelRule::Transcript(transcripts)
        } else {
            LabelRule::FileName
        }
    } else {
        LabelRule::Unlabelled
    }
}

/// Parses a manifest: `PATH [names|none|transcript=FILE] [repeat=N]` per line, paths relative
/// to it.
pub fn read_manifest(path: &Path) -> Result<Vec<Source>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the manifest {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut sources = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), number + 1);
        // Options are trailing words; what is left is the path (which may hold spaces).
        let (mut source_path, mut rule, mut repeat) = (line, None, None);
        while let Some((rest, last)) = source_path.rsplit_once(char::is_whitespace) {
            if let Some(n) = last.strip_prefix("repeat=") {
                match n.parse::<usize>() {
                    Ok(n) if n >= 1 && repeat.is_none() => repeat = Some(n),
                    _ => bail!("{}: `{last}` needs one whole number N >= 1", at()),
                }
            } else if let Some(r) = parse_rule(last, base).filter(|_| rule.is_none()) {
                rule = Some(r);
            } else {
                break;
            }
            source_path = rest.trim();
        }
        let full = base.join(source_path);
        if !full.exists() {
            bail!("{}: {} does not exist", at(), full.display());
        }
        let rule = rule.unwrap_or_else(|| default_rule(&full));
        let mut source = Source::new(full, rule);
        source.repeat = repeat.unwrap_or(1);
        sources.push(source);
    }
    if sources.is_empty() {
        bail!("the manifest {} lists no sources", path.display());
    }
    Ok(sources)
}

fn parse_rule(word: &str, base: &Path) -> Option<LabelRule> {
    match word {
        "names" => Some(LabelRule::FileName),
        "none" => Some(LabelRule::Unlabelled),
        _ => word
            .strip_prefix("transcript=")
            .map(|file| LabelRule::Transcript(base.join(file))),
    }
}

fn read_source(source: &Source, rate: u32, dataset: &mut AudioDataset) -> Result<()> {
    let path = &source.path;
    let transcripts = match &source.labels {
        LabelRule::Transcript(file) => Some(Transcripts::read(file)?),
        _ => None,
    };
    if path.is_dir() {
        read_folder(path, path, source, transcripts.as_ref(), rate, dataset)
    } else if is_archive(path) {
        let dir = tempfile::tempdir().context("cannot make a temporary folder to extract into")?;
        extract(path, dir.path())?;
        read_folder(
            dir.path(),
            path,
            source,
            transcripts.as_ref(),
            rate,
            dataset,
        )
    } else if has_extension(path, &[".wav"]) {
        let label = label_for(
            path,
            Path::new(path.file_name().unwrap_or_default()),
            source,
            transcripts.as_ref(),
        );
        let samples = read_wav(path, rate)?;
        dataset.clips.push(LabelledClip {
            samples,
            label,
            source: path.clone(),
        });
        Ok(())
    } else {
        bail!(
            "cannot read {} as audio: give a folder of WAV files, a .wav file, a tar archive of WAVs, or a manifest .txt",
            path.display()
        )
    }
}

/// Reads every WAV under `root`; `shown` is the path clips are said to come from.
fn read_folder(
    root: &Path,
    shown: &Path,
    source: &Source,
    transcripts: Option<&Transcripts>,
    rate: u32,
    dataset: &mut AudioDataset,
) -> Result<()> {
    let files = wav_files(root)?;
    if files.is_empty() {
        bail!("{} holds no .wav files", shown.display());
    }
    let mut without_transcript = 0;
    for file in files {
        let relative = file.strip_prefix(root).unwrap_or(&file);
        let label = label_for(&file, relative, source, transcripts);
        if transcripts.is_some() && label.is_none() {
            without_transcript += 1;
        }
        let samples =
            read_wav(&file, rate).map_err(|e| e.context(format!("in {}", shown.display())))?;
        dataset.clips.push(LabelledClip {
            samples,
            label,
            source: shown.join(relative),
        });
    }
    if without_transcript > 0 {
        dataset.notes.push(format!(
            "{without_transcript} files of {} have no transcript: unlabelled",
            shown.display()
        ));
    }
    Ok(())
}

fn label_for(
    file: &Path,
    relative: &Path,
    source: &Source,
    transcripts: Option<&Transcripts>,
) -> Option<String> {
    match &source.labels {
        LabelRule::FileName => file
            .file_name()
            .and_then(|n| label_from_name(&n.to_string_lossy())),
        LabelRule::Transcript(_) => transcripts
            .and_then(|t| t.find(relative))
            .map(str::to_owned),
        LabelRule::Unlabelled => None,
    }
}

/// The leading token of a file name, before the first `_` or `.`: `7_en-us_s130_p35.wav` → `7`.
pub fn label_from_name(file_name: &str) -> Option<String> {
    let token = file_name.split(['_', '.']).next().unwrap_or("");
    (!token.is_empty()).then(|| token.to_owned())
}

/// Every `.wav` file under `root`, recursively, sorted by path; hidden entries are skipped.
pub fn wav_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if has_extension(&path, &[".wav"]) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    extensions.iter().any(|e| name.ends_with(e))
}

fn is_archive(path: &Path) -> bool {
    path.is_file()
        && has_extension(
            path,
            &[".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.bz2", ".tar"],
        )
}

/// Extracts a tar archive with the system's `tar` (it knows every compression).
fn extract(archive: &Path, into: &Path) -> Result<()> {
    let output = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .with_context(|| format!("cannot run `tar` to extract {}", archive.display()))?;
    if !output.status.success() {
        bail!(
            "`tar` could not extract {}: {}",
            archive.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// A `name: transcript` list.
#[derive(Clone, Debug, Default)]
pub struct Transcripts {
    by_name: BTreeMap<String, String>,
}

impl Transcripts {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the transcripts {}", path.display()))?;
        let mut by_name = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            let Some((name, transcript)) = line.split_once(':') else {
                bail!(
                    "{} line {}: expected `name: transcript`, found {line:?}",
                    path.display(),
                    number + 1
                );
            };
            let (name, transcript) = (name.trim(), transcript.trim());
            if name.is_empty() || transcript.is_empty() {
                bail!(
                    "{} line {}: an empty name or transcript",
                    path.display(),
                    number + 1
                );
            }
            by_name.insert(name.to_owned(), transcript.to_owned());
        }
        if by_name.is_empty() {
            bail!("{} holds no `name: transcript` lines", path.display());
        }
        Ok(Self { by_name })
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The transcript of a WAV at `relative` (to the folder read): its path without `.wav`, or
    /// the longest tail of it that is a name (`en_US_f_Allison/digits/7` finds `digits/7`), or
    /// the one name that ends with it (`7`, read inside `digits/`, finds `digits/7`).
    pub fn find(&self, relative: &Path) -> Option<&str> {
        let key = relative
            .with_extension("")
            .to_string_lossy()
            .replace('\\', "/");
        let mut tail = key.as_str();
        loop {
            if let Some(t) = self.by_name.get(tail) {
                return Some(t);
            }
            match tail.split_once('/') {
                Some((_, rest)) => tail = rest,
                None => break,
            }
        }
        let suffix = format!("/{key}");
        let mut matches = self
            .by_name
            .iter()
            .filter(|(name, _)| name.ends_with(&suffix));
        match (matches.next(), matches.next()) {
            (Some((_, t)), None) => Some(t),
            _ => None,
        }
    }
}

impl AudioDataset {
    /// The distinct labels, numbers in numeric order first, then names in alphabetical order.
    pub fn classes(&self) -> Vec<String> {
        sorted_classes(self.clips.iter().filter_map(|c| c.label.as_deref()))
    }

    pub fn samples(&self) -> usize {
        self.clips.iter().map(|c| c.samples.len()).sum()
    }

    pub fn seconds(&self) -> f64 {
        if self.rate == 0 {
            0.0
        } else {
            self.samples() as f64 / self.rate as f64
        }
    }

    /// One line for people: clips, duration, classes.
    pub fn summary(&self) -> String {
        let labelled = self.clips.iter().filter(|c| c.label.is_some()).count();
        let classes = self.classes();
        let mut s = format!(
            "{} clips, {:.1} minutes at {} Hz; {labelled} labelled",
            self.clips.len(),
            self.seconds() / 60.0,
            self.rate
        );
        if !classes.is_empty() {
            let shown: Vec<&str> = classes.iter().take(12).map(String::as_str).collect();
            let more = if classes.len() > 12 {
                format!(", ... ({} in all)", classes.len())
            } else {
                String::new()
            };
            let _ = write!(
                s,
                " in {} classes ({}{more})",
                classes.len(),
                shown.join(", ")
            );
        }
        let _ = write!(s, ", {} unlabelled", self.clips.len() - labelled);
        s
    }

    /// Cuts clips longer than `max_seconds` into equal pieces no longer than that, so that a
    /// minutes-long track becomes many training sequences (each piece keeps its clip's label).
    pub fn cut_long(&mut self, max_seconds: f64) -> Result<()> {
        let max = (max_seconds * self.rate as f64).round();
        if !max.is_finite() || max < 1.0 {
            bail!("pieces of {max_seconds} s are too short to cut clips into");
        }
        let max = max as usize;
        let mut cut = Vec::with_capacity(self.clips.len());
        for clip in self.clips.drain(..) {
            if clip.samples.len() <= max {
                cut.push(clip);
                continue;
            }
            let pieces = clip.samples.len().div_ceil(max);
            let len = clip.samples.len().div_ceil(pieces);
            for piece in clip.samples.chunks(len) {
                cut.push(LabelledClip {
                    samples: piece.to_vec(),
                    label: clip.label.clone(),
                    source: clip.source.clone(),
                });
            }
        }
        self.clips = cut;
        Ok(())
    }

    /// Makes the clips whose label is not one of `classes` unlabelled (they are still audio to
    /// learn from, e.g. a folder of prompts whose names are not classes); returns how many.
    pub fn unlabel_except(&mut self, classes: &[String]) -> usize {
        let mut changed = 0;
        for clip in &mut self.clips {
            if clip.label.as_ref().is_some_and(|l| !classes.contains(l)) {
                clip.label = None;
                changed += 1;
            }
        }
        changed
    }

    /// Drops every clip that is a held-out recording (by path or content); returns their sources.
    pub fn remove_held_out(&mut self, held_out: &HeldOut) -> Result<Vec<PathBuf>> {
        held_out.check_rate(self.rate)?;
        let mut removed = Vec::new();
        self.clips.retain(|clip| match held_out.matches(clip) {
            Some(_) => {
                removed.push(clip.source.clone());
                false
            }
            None => true,
        });
        Ok(removed)
    }
}

/// The held-out test recordings, and the means to keep them out of training.
#[derive(Clone, Debug)]
pub struct HeldOut {
    rate: u32,
    clips: Vec<LabelledClip>,
    canonical: Vec<PathBuf>,
}

impl HeldOut {
    /// The ten recorded digits in `shared_audio/asterisk_digits`, labelled `"0".."9"`.
    pub fn asterisk_digits(shared_audio: &Path, rate: u32) -> Result<Self> {
        Self::from_files(&held_out_digit_files(shared_audio), rate)
    }

    /// Any held-out WAV files, labelled from their names.
    pub fn from_files(files: &[PathBuf], rate: u32) -> Result<Self> {
        let mut clips = Vec::with_capacity(files.len());
        let mut canonical = Vec::with_capacity(files.len());
        for file in files {
            let samples = read_wav(file, rate).context("cannot read a held-out clip")?;
            let label = file
                .file_name()
                .and_then(|n| label_from_name(&n.to_string_lossy()));
            clips.push(LabelledClip {
                samples,
                label,
                source: file.clone(),
            });
            canonical.push(file.canonicalize().unwrap_or_else(|_| file.clone()));
        }
        Ok(Self {
            rate,
            clips,
            canonical,
        })
    }

    /// The held-out clips, to score or to listen to (never to train on).
    pub fn clips(&self) -> &[LabelledClip] {
        &self.clips
    }

    fn check_rate(&self, rate: u32) -> Result<()> {
        if rate != self.rate {
            bail!(
                "the held-out clips were read at {} Hz but the training set is at {rate} Hz",
                self.rate
            );
        }
        Ok(())
    }

    /// The held-out file that `clip` is (same path) or copies (nearly the same samples: a copy,
    /// a resampled or re-encoded copy), if any.
    pub fn matches(&self, clip: &LabelledClip) -> Option<&Path> {
        let path = clip
            .source
            .canonicalize()
            .unwrap_or_else(|_| clip.source.clone());
        if let Some(i) = self.canonical.iter().position(|p| *p == path) {
            return Some(&self.clips[i].source);
        }
        self.clips
            .iter()
            .find(|h| same_recording(&h.samples, &clip.samples))
            .map(|h| h.source.as_path())
    }

    /// Refuses a training set that holds a held-out recording.
    pub fn check(&self, train: &[LabelledClip]) -> Result<()> {
        let found: Vec<String> = train
            .iter()
            .filter_map(|c| {
                self.matches(c)
                    .map(|h| format!("{} (a copy of {})", c.source.display(), h.display()))
            })
            .collect();
        if !found.is_empty() {
            bail!(
                "the training set contains {} held-out test recording(s), which must never be trained on: {}",
                found.len(),
                found.join(", ")
            );
        }
        Ok(())
    }
}

/// Whether two clips at the same rate are the same recording: lengths within 2% and a
/// normalised cross-correlation above 0.95 at some lag of at most 4 samples.
fn same_recording(a: &[f32], b: &[f32]) -> bool {
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    if short.is_empty() || (long.len() - short.len()) as f64 > 2.0 + 0.02 * long.len() as f64 {
        return false;
    }
    let energy = |x: &[f32]| x.iter().map(|&v| v as f64 * v as f64).sum::<f64>();
    let norm = (energy(a) * energy(b)).sqrt();
    if norm <= 0.0 {
        return false;
    }
    (-4i64..=4).any(|lag| {
        let dot: f64 = (0..short.len())
            .filter_map(|i| {
                let j = i as i64 + lag;
                (0..long.len() as i64)
                    .contains(&j)
                    .then(|| short[i] as f64 * long[j as usize] as f64)
            })
            .sum();
        dot / norm > 0.95
    })
}

/// Token sequences for training: `[start] + samples + [END]` per clip, `prefix = 1`.
///
/// The start token is the clip's class token when `conditional` (unlabelled clips get the
/// unconditional token, and labelled ones are shown unconditionally with probability
/// [`LABEL_DROPOUT`]); otherwise every clip starts with the unconditional token (or BOS for a
/// codec without classes).
pub fn to_sequences(
    codec: &AudioCodec,
    clips: &[LabelledClip],
    conditional: bool,
) -> Result<Sequences> {
    if conditional && codec.classes().is_empty() {
        bail!("conditional training needs class labels, but the codec has none");
    }
    if clips.is_empty() {
        bail!("the audio dataset has no clips");
    }
    let unconditional = codec.unlabelled_start();
    let mut seqs = Vec::with_capacity(clips.len());
    for clip in clips {
        if clip.samples.is_empty() {
            bail!("the clip from {} has no samples", clip.source.display());
        }
        let start = match (&clip.label, conditional) {
            (Some(label), true) => codec
                .class_of(label)
                .with_context(|| format!("clip {}", clip.source.display()))?,
            _ => unconditional,
        };
        let mut seq = Vec::with_capacity(clip.samples.len() + 2);
        seq.push(start);
        seq.extend(
            codec
                .encode(&clip.samples)
                .with_context(|| format!("clip {}", clip.source.display()))?,
        );
        seq.push(codec.end());
        seqs.push(seq);
    }
    Ok(Sequences {
        seqs,
        prefix: 1,
        label_dropout: conditional.then_some((unconditional, LABEL_DROPOUT)),
        // END is never scored after the real END, so it can fill the rest of a window.
        pad: codec.end(),
        redraw: None,
        start_share: 0.0,
    })
}
