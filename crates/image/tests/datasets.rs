//! The dataset readers on the real files, their errors on damaged ones, and training sequences.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use image::{Rgb, RgbImage};
use jielong_core::Codec;
use jielong_image::datasets::{read_idx_images, read_idx_labels};
use jielong_image::{
    DatasetOptions, ImageCodec, LabelledImage, MnistSplits, open_dataset, open_dataset_with,
    to_sequences,
};

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.unwrap_err())
}

#[test]
fn mnist_reads_fast_with_its_test_split_apart() {
    let start = Instant::now();
    let data = open_dataset(&common::images_dir().join("mnist")).unwrap();
    let took = start.elapsed();
    eprintln!("reading MNIST (70,000 gzipped images) took {took:.2?}");
    assert!(took.as_secs_f64() < 10.0, "reading MNIST took {took:?}");
    assert_eq!((data.train.len(), data.heldout.len()), (60_000, 10_000));
    assert_eq!((data.width, data.height), (28, 28));
    assert!(data.grey && data.is_labelled());
    assert_eq!(
        data.classes,
        (0..10).map(|d| d.to_string()).collect::<Vec<_>>()
    );
    // The well-known first labels of each split: 5 0 4 1 9 and 7 2 1 0 4.
    let labels = |s: &[LabelledImage]| s[..5].iter().map(|l| l.label.unwrap()).collect::<Vec<_>>();
    assert_eq!(labels(&data.train), vec![5, 0, 4, 1, 9]);
    assert_eq!(labels(&data.heldout), vec![7, 2, 1, 0, 4]);
    // Every class is present in about its usual share.
    for c in 0..10 {
        let n = data.train.iter().filter(|l| l.label == Some(c)).count();
        assert!((5_000..7_000).contains(&n), "class {c}: {n}");
    }
    // Digits are white on black: the border is dark, some middle pixels bright.
    let first = &data.train[0].image;
    assert_eq!(*first.get_pixel(0, 0), Rgb([0, 0, 0]));
    assert!(first.pixels().any(|p| p[0] > 200));
}

#[test]
fn damaged_mnist_files_give_clear_errors() {
    let real = common::images_dir().join("mnist");
    let labels = gunzip(&real.join("t10k-labels-idx1-ubyte.gz"));
    let images = gunzip(&real.join("t10k-images-idx3-ubyte.gz"));
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);

    // Uncompressed files read the same as the gzipped ones.
    std::fs::write(p("labels"), &labels).unwrap();
    assert_eq!(read_idx_labels(&p("labels")).unwrap(), labels[8..]);

    std::fs::write(p("short"), &images[..images.len() - 100]).unwrap();
    assert!(err_text(read_idx_images(&p("short"))).contains("is truncated"));

    let mut long = labels.clone();
    long.push(3);
    std::fs::write(p("long"), &long).unwrap();
    assert!(err_text(read_idx_labels(&p("long"))).contains("1 bytes after"));

    // Labels where images are expected: the magic number says so.
    std::fs::write(p("swapped"), &labels).unwrap();
    let err = err_text(read_idx_images(&p("swapped")));
    assert!(err.contains("magic number is 0x00000801"), "{err}");

    let gz = gzip(&images[..5000]);
    std::fs::write(p("cut.gz"), &gz[..gz.len() / 2]).unwrap();
    assert!(err_text(read_idx_images(&p("cut.gz"))).contains("damaged or truncated gzip"));

    std::fs::write(p("tiny"), [0u8, 0, 8]).unwrap();
    assert!(err_text(read_idx_images(&p("tiny"))).contains("too short"));

    // A folder with the training files but no test files; then with mismatched counts.
    let mnist = dir.path().join("mnist");
    std::fs::create_dir(&mnist).unwrap();
    std::fs::write(mnist.join("train-images-idx3-ubyte"), &images).unwrap();
    std::fs::write(mnist.join("train-labels-idx1-ubyte.gz"), gzip(&labels)).unwrap();
    let err = err_text(open_dataset(&mnist));
    assert!(err.contains("t10k-images-idx3-ubyte"), "{err}");
    // Training needs only these two files (every 10th image is then held out); evaluation
    // needs the t10k pair and names it.
    let splits = |mnist_splits| DatasetOptions {
        mnist: mnist_splits,
        ..Default::default()
    };
    let data = open_dataset_with(&mnist, &splits(MnistSplits::Training)).unwrap();
    assert_eq!((data.train.len(), data.heldout.len()), (9_000, 1_000));
    let label = |i: usize| Some(labels[8 + i] as usize);
    assert_eq!(data.train[0].label, label(0));
    assert_eq!(data.train[9].label, label(10));
    assert_eq!(data.heldout[0].label, label(9));
    assert_eq!(data.heldout[1].label, label(19));
    let err = err_text(open_dataset_with(&mnist, &splits(MnistSplits::Test)));
    assert!(
        err.contains("no t10k-images-idx3-ubyte") && err.contains("evaluation needs"),
        "{err}"
    );
    // A folder with only the t10k pair is a test set: evaluation reads it, training names the
    // missing training file; half a pair names the other half.
    let test_only = dir.path().join("test-only");
    std::fs::create_dir(&test_only).unwrap();
    std::fs::write(test_only.join("t10k-images-idx3-ubyte.gz"), gzip(&images)).unwrap();
    std::fs::write(test_only.join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    let data = open_dataset_with(&test_only, &splits(MnistSplits::Test)).unwrap();
    assert_eq!((data.train.len(), data.heldout.len()), (0, 10_000));
    let labels_read: Vec<usize> = data.heldout.iter().map(|l| l.label.unwrap()).collect();
    let labels_file: Vec<usize> = labels[8..].iter().map(|&l| l as usize).collect();
    assert_eq!(labels_read, labels_file);
    for (options, missing) in [
        (splits(MnistSplits::Training), "no train-images-idx3-ubyte"),
        (DatasetOptions::default(), "no train-images-idx3-ubyte"),
    ] {
        let err = err_text(open_dataset_with(&test_only, &options));
        assert!(err.contains(missing), "{err}");
    }
    std::fs::remove_file(test_only.join("t10k-labels-idx1-ubyte")).unwrap();
    let err = err_text(open_dataset_with(&test_only, &splits(MnistSplits::Test)));
    assert!(err.contains("no t10k-labels-idx1-ubyte"), "{err}");
    let mut fewer = labels[..8].to_vec();
    fewer[4..8].copy_from_slice(&100u32.to_be_bytes());
    fewer.extend_from_slice(&labels[8..108]);
    std::fs::write(mnist.join("t10k-images-idx3-ubyte"), &images).unwrap();
    std::fs::write(mnist.join("t10k-labels-idx1-ubyte"), &fewer).unwrap();
    let err = err_text(open_dataset(&mnist));
    assert!(
        err.contains("10000 images but") && err.contains("100 labels"),
        "{err}"
    );
}

#[test]
fn sklearn_digits_csv_is_scaled_and_split() {
    let data = open_dataset(&common::images_dir().join("sklearn_digits.csv.gz")).unwrap();
    assert_eq!((data.width, data.height), (8, 8));
    assert_eq!(data.train.len() + data.heldout.len(), 1797);
    assert_eq!(data.heldout.len(), 180);
    assert!(data.is_labelled() && data.grey);
    // The first digit is a 0 whose top-left pixels are blank and whose brightest reach 255.
    assert_eq!(data.train[0].label, Some(0));
    let max = data
        .train
        .iter()
        .flat_map(|l| l.image.pixels().map(|p| p[0]))
        .max()
        .unwrap();
    assert_eq!(max, 255);
    assert_eq!(*data.train[0].image.get_pixel(0, 0), Rgb([0, 0, 0]));
    // The split is the last lines, the same every time.
    let again = open_dataset(&common::images_dir().join("sklearn_digits.csv.gz")).unwrap();
    assert_eq!(again.heldout, data.heldout);

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "0,1,2\n").unwrap();
    let err = err_text(open_dataset(&bad));
    assert!(
        err.contains("line 1") && err.contains("expected 65"),
        "{err}"
    );
    let mut line = vec!["0"; 64];
    line.push("3");
    line[10] = "17";
    std::fs::write(&bad, line.join(",")).unwrap();
    assert!(err_text(open_dataset(&bad)).contains("intensity 17"));
}

#[test]
fn png_folders_with_and_without_class_folders() {
    let dir = tempfile::tempdir().unwrap();
    let files = common::untar_silk(dir.path(), 40);
    let data = open_dataset(dir.path()).unwrap();
    assert_eq!((data.train.len(), data.heldout.len()), (36, 4));
    assert!(data.classes.is_empty() && !data.is_labelled() && !data.grey);
    assert_eq!((data.width, data.height), (16, 16));
    // Transparent corners of icons become white.
    assert!(
        data.train
            .iter()
            .any(|l| *l.image.get_pixel(0, 0) == Rgb([255, 255, 255]))
    );

    // Sorted into two class folders: labelled by folder name.
    let classes = tempfile::tempdir().unwrap();
    for (i, f) in files.iter().enumerate() {
        let class = if i % 2 == 0 { "even" } else { "odd" };
        std::fs::create_dir_all(classes.path().join(class)).unwrap();
        std::fs::copy(f, classes.path().join(class).join(f.file_name().unwrap())).unwrap();
    }
    let labelled = open_dataset_with(
        classes.path(),
        &DatasetOptions {
            size: Some((8, 8)),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(labelled.classes, vec!["even", "odd"]);
    assert!(labelled.is_labelled());
    assert_eq!(
        labelled.train.iter().filter(|l| l.label == Some(1)).count()
            + labelled
                .heldout
                .iter()
                .filter(|l| l.label == Some(1))
                .count(),
        20
    );
    assert_eq!(labelled.train[0].image.dimensions(), (8, 8));

    // Mixed sizes: the most common size wins and the others are resized to it.
    let big = image::imageops::resize(
        &data.train[0].image,
        32,
        32,
        image::imageops::FilterType::Nearest,
    );
    jielong_image::save_png(&big, &dir.path().join("zz_big.png")).unwrap();
    let mixed = open_dataset(dir.path()).unwrap();
    assert_eq!(
        (
            mixed.width,
            mixed.height,
            mixed.train.len() + mixed.heldout.len()
        ),
        (16, 16, 41)
    );

    // A broken PNG names the file; an empty folder says what it expected.
    std::fs::write(dir.path().join("broken.png"), b"not a png").unwrap();
    let err = err_text(open_dataset(dir.path()));
    assert!(err.contains("broken.png"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    assert!(err_text(open_dataset(empty.path())).contains("no MNIST files and no PNG images"));
}

#[test]
fn twemoji_sprite_sheet_with_its_index() {
    let sheet = common::images_dir().join("twemoji_sheet_clean_16px.png");
    let data = open_dataset(&sheet).unwrap();
    let total = data.train.len() + data.heldout.len();
    eprintln!(
        "twemoji: {} train, {} held out, classes {:?}",
        data.train.len(),
        data.heldout.len(),
        data.classes
    );
    assert!((3_700..=3_786).contains(&total), "{total}");
    assert_eq!(data.heldout.len(), total / 10);
    assert_eq!((data.width, data.height), (16, 16));
    assert!(data.classes.contains(&"Smileys & Emotion".to_string()) && data.classes.len() >= 9);
    assert!(data.is_labelled() && !data.grey);
    // The first entry is the keycap '#': a grey-blue key on white, symmetric enough to check its
    // corner is background and its middle is not.
    let hash = &data.train[0].image;
    assert_eq!(data.classes[data.train[0].label.unwrap()], "Symbols");
    assert_ne!(*hash.get_pixel(8, 8), Rgb([255, 255, 255]));

    // The index can be named explicitly; a missing one is a clear error.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("sheet.png");
    std::fs::copy(&sheet, &copy).unwrap();
    let err = err_text(open_dataset(&copy));
    assert!(err.contains("no JSON index"), "{err}");
    let index = common::images_dir().join("twemoji_emoji.json");
    let options = DatasetOptions {
        index: Some(index),
        ..Default::default()
    };
    assert_eq!(
        open_dataset_with(&copy, &options).unwrap().heldout,
        data.heldout
    );
    std::fs::write(dir.path().join("sheet.json"), r#"[{"sheet_x": 1}]"#).unwrap();
    let err = err_text(open_dataset(&copy));
    assert!(err.contains("entry 0") && err.contains("sheet_y"), "{err}");
}

#[test]
fn unknown_paths_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = err_text(open_dataset(&dir.path().join("nothing")));
    assert!(err.contains("cannot open the dataset"), "{err}");
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let err = err_text(open_dataset(&dir.path().join("notes.txt")));
    assert!(err.contains("cannot tell what dataset"), "{err}");
}

#[test]
fn sequences_start_with_the_class_or_the_unconditional_token() {
    let data = open_dataset(&common::images_dir().join("sklearn_digits.csv.gz")).unwrap();
    let images = &data.train[..50];
    let codec = ImageCodec::grey(8, 8, 16, data.classes.clone()).unwrap();
    let v = codec.vocab().clone();

    let seqs = to_sequences(&codec, images, true).unwrap();
    assert_eq!(seqs.prefix, 1);
    assert_eq!(seqs.seqs.len(), 50);
    assert_eq!(seqs.label_dropout, Some((v.unconditional.unwrap(), 0.1)));
    for (s, l) in seqs.seqs.iter().zip(images) {
        assert_eq!(s.len(), 65);
        assert_eq!(s[0], v.class_token(&l.label.unwrap().to_string()).unwrap());
        assert_eq!(&s[1..], codec.encode(&l.image).unwrap().as_slice());
    }
    seqs.check(v.size()).unwrap();

    let plain = to_sequences(&codec, images, false).unwrap();
    assert!(plain.seqs.iter().all(|s| s[0] == v.unconditional.unwrap()));
    assert_eq!(plain.label_dropout, None);

    // Unlabelled images cannot train a conditional model; a classless codec neither.
    let mut unlabelled = images.to_vec();
    unlabelled[7].label = None;
    let err = err_text(to_sequences(&codec, &unlabelled, true));
    assert!(err.contains("image 7 has no label"), "{err}");
    let classless = ImageCodec::grey(8, 8, 16, vec![]).unwrap();
    assert!(err_text(to_sequences(&classless, images, true)).contains("needs class labels"));
    let bos = to_sequences(&classless, &unlabelled, false).unwrap();
    assert!(
        bos.seqs
            .iter()
            .all(|s| s[0] == classless.vocab().bos.unwrap())
    );

    // Images of another size name the image.
    let mut odd = images.to_vec();
    odd[3].image = RgbImage::new(9, 8);
    let err = err_text(to_sequences(&codec, &odd, false));
    assert!(
        err.contains("image 3") && err.contains("image is 9x8"),
        "{err}"
    );
}

#[test]
fn token_specs_parse_and_fit() {
    use jielong_image::TokenSpec;
    let parse = |s: &str| s.parse::<TokenSpec>();
    assert_eq!(parse("grey").unwrap(), TokenSpec::Grey { levels: 256 });
    assert_eq!(parse("binary").unwrap(), TokenSpec::Grey { levels: 2 });
    assert_eq!(
        parse("blocks:2").unwrap(),
        TokenSpec::BinaryBlocks { block: 2 }
    );
    assert_eq!(
        parse("patches:4x4:256").unwrap(),
        TokenSpec::Patches {
            patch: 4,
            entries: 256
        }
    );
    assert_eq!(parse("palette:64").unwrap().to_string(), "palette:64");
    assert!(
        parse("jpeg")
            .unwrap_err()
            .to_string()
            .contains("unknown tokenisation")
    );
    assert!(parse("grey:x").is_err());

    let data = open_dataset(&common::images_dir().join("sklearn_digits.csv.gz")).unwrap();
    let codec = parse("patches:2:32").unwrap().fit(&data, true, 0).unwrap();
    assert_eq!(
        (
            codec.channels(),
            codec.tokens_per_image(),
            codec.classes().len()
        ),
        (1, 16, 10)
    );
    let codec = parse("grey:4").unwrap().fit(&data, false, 0).unwrap();
    assert!(codec.classes().is_empty());
}
