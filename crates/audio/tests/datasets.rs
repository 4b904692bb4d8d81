//! Dataset readers on real files, the held-out guard, token sequences, prompts.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{repo_root, shared_audio};
use jielong_audio::datasets::{
    ASTERISK_PROMPTS_ARCHIVE, ASTERISK_TRANSCRIPTS, MUSIC_TRACK, label_from_name,
};
use jielong_audio::{
    AudioCodec, HeldOut, LabelRule, Quantisation, Source, digit_classes, digit_word,
    held_out_digit_files, open_dataset, open_sources, prompt_from_samples, prompt_from_wav,
    read_wav, to_sequences, training_sources, write_wav,
};
use jielong_core::Codec;

fn copy_digits(into: &Path, digits: &[u32]) {
    for d in digits {
        std::fs::copy(
            shared_audio().join(format!("asterisk_digits/{d}.wav")),
            into.join(format!("{d}.wav")),
        )
        .unwrap();
    }
}

fn frames(path: &Path) -> usize {
    hound::WavReader::open(path).unwrap().duration() as usize
}

#[test]
fn labels_come_from_the_leading_token_of_the_name() {
    assert_eq!(
        label_from_name("7_en-us_s130_p35.wav").as_deref(),
        Some("7")
    );
    assert_eq!(label_from_name("3.wav").as_deref(), Some("3"));
    assert_eq!(label_from_name("yes_01.WAV").as_deref(), Some("yes"));
    assert_eq!(label_from_name(".wav"), None);
    assert_eq!(digit_word("7"), Some("seven"));
    assert_eq!(digit_word("0"), Some("zero"));
    assert_eq!(digit_word("10"), None);
    assert_eq!(
        digit_classes(),
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    );
}

#[test]
fn a_folder_of_recorded_digits_is_labelled_from_names() {
    let dir = tempfile::tempdir().unwrap();
    copy_digits(dir.path(), &[7, 0, 3]);
    std::fs::write(dir.path().join("README.txt"), "not audio").unwrap();
    let ds = open_dataset(dir.path(), 8000).unwrap();
    assert_eq!(ds.classes(), ["0", "3", "7"]);
    assert_eq!(ds.clips.len(), 3);
    for clip in &ds.clips {
        let label = clip.label.as_deref().unwrap();
        assert!(clip.source.ends_with(format!("{label}.wav")));
        // 8 kHz files at 8 kHz: exactly the recorded samples.
        assert_eq!(
            clip.samples.len(),
            frames(&shared_audio().join(format!("asterisk_digits/{label}.wav")))
        );
    }
    // Read at 16 kHz: twice the samples.
    let ds16 = open_dataset(dir.path(), 16_000).unwrap();
    for (a, b) in ds.clips.iter().zip(&ds16.clips) {
        assert_eq!(b.samples.len(), 2 * a.samples.len());
    }
    assert!(ds.summary().contains("3 clips"), "{}", ds.summary());

    // A folder with no WAV, a missing path, a bad file inside a folder.
    let empty = tempfile::tempdir().unwrap();
    let err = format!("{:#}", open_dataset(empty.path(), 8000).unwrap_err());
    assert!(err.contains("no .wav files"), "{err}");
    let err = format!(
        "{:#}",
        open_dataset(&dir.path().join("nope"), 8000).unwrap_err()
    );
    assert!(err.contains("does not exist"), "{err}");
    std::fs::write(dir.path().join("5_broken.wav"), "RIFF garbage").unwrap();
    let err = format!("{:#}", open_dataset(dir.path(), 8000).unwrap_err());
    assert!(err.contains("5_broken.wav"), "{err}");
}

/// Extracts the prompts archive the way a person would (`tar -xJf`) into a temporary folder.
fn extract_prompts() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("-xJf")
        .arg(shared_audio().join(ASTERISK_PROMPTS_ARCHIVE))
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// The transcript of `name` read straight from the file, independently of the crate.
fn transcript_of(name: &str) -> String {
    let text = std::fs::read_to_string(shared_audio().join(ASTERISK_TRANSCRIPTS)).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no transcript for {name}"))
        .trim()
        .to_owned()
}

#[test]
fn transcripts_label_extracted_prompts() {
    let extracted = extract_prompts();
    let root = extracted.path().join("en_US_f_Allison");
    // A small folder of a few prompts, keeping their sub-folders, plus a manifest naming the
    // transcript file.
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "vm-INBOX",
        "all-circuits-busy-now",
        "digits/h-1",
        "letters/z",
    ];
    for name in names {
        let to = dir.path().join("prompts").join(format!("{name}.wav"));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(format!("{name}.wav")), to).unwrap();
    }
    let manifest = dir.path().join("sources.txt");
    let transcripts = shared_audio().join(ASTERISK_TRANSCRIPTS);
    std::fs::write(
        &manifest,
        format!(
            "# prompts with their words\nprompts   transcript={}\n",
            transcripts.display()
        ),
    )
    .unwrap();
    let ds = open_dataset(&manifest, 8000).unwrap();
    assert_eq!(ds.clips.len(), names.len());
    for clip in &ds.clips {
        let name = clip
            .source
            .strip_prefix(dir.path().join("prompts"))
            .unwrap()
            .with_extension("");
        let name = name.to_string_lossy();
        assert_eq!(
            clip.label.as_deref(),
            Some(transcript_of(&name).as_str()),
            "{name}"
        );
    }
    assert!(ds.notes.is_empty(), "{:?}", ds.notes);

    // Read inside `digits/`, a bare `h-1` still finds `digits/h-1`.
    let ds = open_sources(
        &[Source::new(
            dir.path().join("prompts/digits"),
            LabelRule::Transcript(transcripts.clone()),
        )],
        8000,
    )
    .unwrap();
    assert_eq!(ds.clips[0].label.as_deref(), Some("first"));

    // A malformed transcript file is an error that names its line.
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "; comment\nvm-INBOX: Inbox\nno colon here\n").unwrap();
    let err = format!(
        "{:#}",
        open_sources(
            &[Source::new(
                dir.path().join("prompts"),
                LabelRule::Transcript(bad)
            )],
            8000
        )
        .unwrap_err()
    );
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn the_prompts_archive_holds_the_held_out_digits_and_the_guard_catches_them() {
    let shared = shared_audio();
    let held = HeldOut::asterisk_digits(&shared, 8000).unwrap();
    assert_eq!(held.clips().len(), 10);
    let sources = [Source::new(
        shared.join(ASTERISK_PROMPTS_ARCHIVE),
        LabelRule::Transcript(shared.join(ASTERISK_TRANSCRIPTS)),
    )];
    let mut ds = open_sources(&sources, 8000).unwrap();
    assert_eq!(ds.clips.len(), 568);
    println!("prompts: {}; {:?}", ds.summary(), ds.notes);
    let seven = ds
        .clips
        .iter()
        .find(|c| c.source.ends_with("en_US_f_Allison/digits/7.wav"))
        .unwrap();
    assert_eq!(seven.label.as_deref(), Some("seven"));

    let err = format!("{:#}", held.check(&ds.clips).unwrap_err());
    assert!(
        err.contains("held-out") && err.contains("digits/7.wav"),
        "{err}"
    );
    let removed = ds.remove_held_out(&held).unwrap();
    let mut removed: Vec<String> = removed
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        (0..10).map(|d| format!("{d}.wav")).collect::<Vec<_>>()
    );
    assert_eq!(ds.clips.len(), 558);
    held.check(&ds.clips).unwrap();
}

#[test]
fn the_guard_refuses_held_out_digits_by_path_and_by_resampled_content() {
    let shared = shared_audio();
    let held = HeldOut::asterisk_digits(&shared, 8000).unwrap();

    // The held-out folder itself, by path.
    let ds = open_dataset(&shared.join("asterisk_digits"), 8000).unwrap();
    assert!(held.check(&ds.clips).is_err());

    // A copy re-encoded at 22.05 kHz under another name, next to honest clips.
    let dir = tempfile::tempdir().unwrap();
    let four = read_wav(&held_out_digit_files(&shared)[4], 22_050).unwrap();
    write_wav(&dir.path().join("4_disguised.wav"), &four, 22_050).unwrap();
    let other = read_wav(&shared.join("alsa_speech/Front_Center.wav"), 22_050).unwrap();
    write_wav(&dir.path().join("x_front.wav"), &other, 22_050).unwrap();
    let mut ds = open_dataset(dir.path(), 8000).unwrap();
    let err = format!("{:#}", held.check(&ds.clips).unwrap_err());
    assert!(
        err.contains("4_disguised.wav") && err.contains("asterisk_digits/4.wav"),
        "{err}"
    );
    assert!(!err.contains("x_front"), "{err}");
    assert_eq!(ds.remove_held_out(&held).unwrap().len(), 1);
    held.check(&ds.clips).unwrap();

    // The standard training sources never list the held-out folder.
    let espeak = dir.path().join("espeak");
    for source in training_sources(&shared, &espeak) {
        assert!(
            !source.path.starts_with(shared.join("asterisk_digits")),
            "{source:?}"
        );
    }
    // Rates must agree.
    let mut ds16 = open_dataset(dir.path(), 16_000).unwrap();
    assert!(ds16.remove_held_out(&held).is_err());
}

#[test]
#[ignore = "needs espeak-ng"]
fn espeak_script_small_mode_makes_a_balanced_labelled_set() {
    assert!(
        Command::new("espeak-ng").arg("--version").output().is_ok(),
        "espeak-ng is not installed (apt-get install espeak-ng): this test needs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("digits");
    let status = Command::new("sh")
        .arg(repo_root().join("datasets/espeak-digits/make.sh"))
        .arg(&out)
        .arg("small")
        .status()
        .unwrap();
    assert!(status.success());
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 20);
    for name in &names {
        let parts: Vec<&str> = name.trim_end_matches(".wav").split('_').collect();
        assert_eq!(parts.len(), 4, "{name}");
        assert!(
            parts[2].starts_with('s') && parts[3].starts_with('p'),
            "{name}"
        );
        let spec = hound::WavReader::open(out.join(name)).unwrap().spec();
        assert_eq!((spec.sample_rate, spec.channels), (22_050, 1), "{name}");
    }
    let ds = open_dataset(&out, 8000).unwrap();
    assert_eq!(ds.classes(), digit_classes());
    for class in digit_classes() {
        assert_eq!(
            ds.clips
                .iter()
                .filter(|c| c.label.as_deref() == Some(class.as_str()))
                .count(),
            2
        );
    }
    for clip in &ds.clips {
        let seconds = clip.samples.len() as f64 / 8000.0;
        assert!(
            seconds > 0.2 && seconds < 2.0,
            "{:?}: {seconds} s",
            clip.source
        );
    }
    // Synthetic digits are not the held-out recordings.
    HeldOut::asterisk_digits(&shared_audio(), 8000)
        .unwrap()
        .check(&ds.clips)
        .unwrap();
}

/// Writes held-out digits reversed into `dir` as `<d>_reversed.wav`: labelled clips that are not
/// the held-out recordings themselves, so the guard has nothing to say.
fn write_reversed_digits(dir: &Path, digits: &[usize]) {
    for &d in digits {
        let x = read_wav(&held_out_digit_files(&shared_audio())[d], 8000).unwrap();
        let reversed: Vec<f32> = x.into_iter().rev().collect();
        write_wav(&dir.join(format!("{d}_reversed.wav")), &reversed, 8000).unwrap();
    }
}

#[test]
fn a_manifest_combines_digits_and_music_and_long_clips_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let digits = dir.path().join("digits");
    std::fs::create_dir(&digits).unwrap();
    write_reversed_digits(&digits, &[1, 2]);
    let music = shared_audio().join(MUSIC_TRACK);
    let manifest = dir.path().join("audio.txt");
    std::fs::write(
        &manifest,
        format!("digits\n{}   none  # the music track\n", music.display()),
    )
    .unwrap();
    let mut ds = open_dataset(&manifest, 8000).unwrap();
    assert_eq!(ds.clips.len(), 3);
    assert_eq!(ds.classes(), ["1", "2"]);
    assert_eq!(ds.clips[2].label, None);
    let music_len = frames(&music);
    assert_eq!(ds.clips[2].samples.len(), music_len);
    assert!(music_len > 8000 * 60, "the music should last minutes");

    let total = ds.samples();
    ds.cut_long(4.0).unwrap();
    assert_eq!(ds.samples(), total, "cutting loses no sample");
    let pieces: Vec<_> = ds.clips.iter().filter(|c| c.label.is_none()).collect();
    assert_eq!(pieces.len(), music_len.div_ceil(4 * 8000));
    assert!(
        pieces
            .iter()
            .all(|p| p.samples.len() <= 4 * 8000 && p.samples.len() > 3 * 8000)
    );
    assert!(ds.cut_long(0.0).is_err());
    assert_eq!(ds.unlabel_except(&["2".to_string()]), 1);
    assert_eq!(ds.classes(), ["2"]);

    let err = format!("{:#}", {
        std::fs::write(&manifest, "digits names\nmissing.wav\n").unwrap();
        open_dataset(&manifest, 8000).unwrap_err()
    });
    assert!(
        err.contains("line 2") && err.contains("missing.wav"),
        "{err}"
    );
}

#[test]
fn a_manifest_repeats_a_small_labelled_source() {
    let dir = tempfile::tempdir().unwrap();
    let digits = dir.path().join("my digits");
    std::fs::create_dir(&digits).unwrap();
    write_reversed_digits(&digits, &[1, 2]);
    let manifest = dir.path().join("audio.txt");
    let open = |text: &str| {
        std::fs::write(&manifest, text).unwrap();
        open_dataset(&manifest, 8000)
    };
    // Options in either order; the path keeps its space.
    for text in [
        "my digits repeat=3 names\n",
        "my digits names repeat=3 # x3\n",
    ] {
        let ds = open(text).unwrap();
        assert_eq!(ds.clips.len(), 6, "{text}");
        assert_eq!(ds.clips[0].samples, ds.clips[2].samples);
        assert_eq!(ds.clips[1].samples, ds.clips[5].samples);
        assert_eq!(ds.clips[3].label.as_deref(), Some("2"));
    }
    assert_eq!(open("my digits\n").unwrap().clips.len(), 2);
    for bad in ["repeat=0", "repeat=two", "repeat=-1", "repeat=2 repeat=3"] {
        let err = format!("{:#}", open(&format!("my digits {bad}\n")).unwrap_err());
        assert!(
            err.contains("line 1") && err.contains("repeat="),
            "{bad}: {err}"
        );
    }
}

#[test]
fn sequences_start_with_the_class_or_unconditional_token_and_end_with_end() {
    let dir = tempfile::tempdir().unwrap();
    copy_digits(dir.path(), &[3, 8]);
    let mut ds = open_dataset(dir.path(), 8000).unwrap();
    ds.clips.push(jielong_audio::LabelledClip {
        samples: vec![0.0, 0.5, -0.5],
        label: None,
        source: PathBuf::from("music.wav"),
    });
    let codec = AudioCodec::new(Quantisation::MuLaw, 8000, digit_classes()).unwrap();
    let seqs = to_sequences(&codec, &ds.clips, true).unwrap();
    let v = codec.vocab();
    assert_eq!(seqs.prefix, 1);
    assert_eq!(seqs.label_dropout, Some((v.unconditional.unwrap(), 0.1)));
    assert_eq!(seqs.seqs.len(), 3);
    for (seq, clip) in seqs.seqs.iter().zip(&ds.clips) {
        let start = match &clip.label {
            Some(l) => v.class_token(l).unwrap(),
            None => v.unconditional.unwrap(),
        };
        assert_eq!(seq[0], start);
        assert_eq!(*seq.last().unwrap(), v.end.unwrap());
        assert_eq!(
            &seq[1..seq.len() - 1],
            codec.encode(&clip.samples).unwrap().as_slice()
        );
    }
    seqs.check(v.size()).unwrap();

    // Unconditional training: every clip starts with the unconditional token, no dropout.
    let plain = to_sequences(&codec, &ds.clips, false).unwrap();
    assert!(plain.seqs.iter().all(|s| s[0] == v.unconditional.unwrap()));
    assert_eq!(plain.label_dropout, None);
    // A codec without classes starts with BOS.
    let classless = AudioCodec::default();
    let s = to_sequences(&classless, &ds.clips, false).unwrap();
    assert!(
        s.seqs
            .iter()
            .all(|q| q[0] == classless.vocab().bos.unwrap())
    );
    let err = format!(
        "{:#}",
        to_sequences(&classless, &ds.clips, true).unwrap_err()
    );
    assert!(err.contains("needs class labels"), "{err}");
    // A label the codec does not know.
    let two = AudioCodec::new(Quantisation::MuLaw, 8000, vec!["3".into()]).unwrap();
    let err = format!("{:#}", to_sequences(&two, &ds.clips, true).unwrap_err());
    assert!(err.contains("\"8\"") && err.contains("8.wav"), "{err}");
}

#[test]
fn a_prompt_is_the_first_seconds_of_a_clip() {
    let codec = AudioCodec::default();
    let file = held_out_digit_files(&shared_audio())[5].clone();
    let full = read_wav(&file, 8000).unwrap();
    let prompt = prompt_from_wav(&codec, &file, 0.25).unwrap();
    assert_eq!(prompt.samples.len(), 2000);
    assert_eq!(prompt.samples, full[..2000]);
    assert_eq!(prompt.tokens, codec.encode(&full[..2000].to_vec()).unwrap());
    let err = format!("{:#}", prompt_from_wav(&codec, &file, 30.0).unwrap_err());
    assert!(err.contains("5.wav") && err.contains("shorter"), "{err}");
    assert!(prompt_from_samples(&codec, &full, -1.0).is_err());
    assert!(prompt_from_samples(&codec, &full, f64::NAN).is_err());
}
