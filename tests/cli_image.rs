//! `jielong` on images, through the real binary: tiny models trained for a second or two on real
//! data (the 8x8 sklearn digits, a small MNIST subset written here as IDX files, a few
//! famfamfam silk icons), then generation, completion, evaluation, and a clear error (never a
//! panic) for every bad input.
//!
//! Expected values are computed here from the data, never copied from the program's output:
//! the digits CSV and the MNIST files are parsed by this file, quantisation and binarisation are
//! re-implemented from their documented definitions, and grid sizes follow from count and scale.
//!
//! Documented behaviour worth knowing: a `--prompt-image` of another size than the model's is
//! not an error, it is resized to the model's size (see `wrong_size_prompt_is_resized`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use image::{Rgb, RgbImage};
use serde_json::Value;

/// Side of the sklearn digits.
const DIGIT: u32 = 8;
/// Side of MNIST digits.
const MNIST: u32 = 28;
/// Images written into the MNIST subset.
const MNIST_TRAIN: usize = 600;
const MNIST_TEST: usize = 100;
/// Silk icons whose name starts with `b` (80 of them in the archive).
const SILK_PATTERN: &str = "16x16/b*.png";

// ---------------------------------------------------------------------------------------------
// Data, parsed here independently of the crates.

/// The sklearn digits: 64 pixels scaled from 0..16 to 0..255, and the label.
fn digits_csv() -> &'static Vec<(Vec<u8>, u8)> {
    static DIGITS: OnceLock<Vec<(Vec<u8>, u8)>> = OnceLock::new();
    DIGITS.get_or_init(|| {
        let text = String::from_utf8(gunzip(&shared("images/sklearn_digits.csv.gz"))).unwrap();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let v: Vec<u32> = line
                    .split(',')
                    .map(|f| f.trim().parse::<f64>().unwrap() as u32)
                    .collect();
                assert_eq!(v.len(), 65);
                let pixels = v[..64]
                    .iter()
                    .map(|&x| ((x * 255 + 8) / 16) as u8)
                    .collect();
                (pixels, v[64] as u8)
            })
            .collect()
    })
}

fn grey_image(side: u32, pixels: &[u8]) -> RgbImage {
    RgbImage::from_fn(side, side, |x, y| Rgb([pixels[(y * side + x) as usize]; 3]))
}

/// `grey:4` as documented: level = round(v * 3 / 255), shown as round(level * 255 / 3).
fn grey4(v: u8) -> u8 {
    ((v as f64 * 3.0 / 255.0).round() * 85.0) as u8
}

/// Binarised as documented for `grey:2` and `blocks:B`: a pixel is on when its luma is >= 128.
fn binarise(v: u8) -> u8 {
    if v >= 128 { 255 } else { 0 }
}

/// The MNIST IDX files cut to their first `n` items (header count rewritten).
fn idx_prefix(bytes: &[u8], header: usize, item: usize, n: usize) -> Vec<u8> {
    let mut out = bytes[..header].to_vec();
    out[4..8].copy_from_slice(&(n as u32).to_be_bytes());
    out.extend_from_slice(&bytes[header..header + n * item]);
    out
}

/// A small MNIST folder: the first 600 training and 100 test images and labels. The training
/// files are plain IDX, the test files gzipped, so both readers are used. Returns the folder
/// and the test images (28x28 grey pixels) for prompts.
fn mnist_subset() -> &'static (PathBuf, Vec<Vec<u8>>) {
    static MNIST_DIR: OnceLock<(PathBuf, Vec<Vec<u8>>)> = OnceLock::new();
    MNIST_DIR.get_or_init(|| {
        let dir = scratch().join("mnist-subset");
        std::fs::create_dir_all(&dir).unwrap();
        let src = shared("images/mnist");
        let px = (MNIST * MNIST) as usize;
        let files = [
            ("train-images-idx3-ubyte", 16, px, MNIST_TRAIN, false),
            ("train-labels-idx1-ubyte", 8, 1, MNIST_TRAIN, false),
            ("t10k-images-idx3-ubyte", 16, px, MNIST_TEST, true),
            ("t10k-labels-idx1-ubyte", 8, 1, MNIST_TEST, true),
        ];
        let mut test_images = Vec::new();
        for (name, header, item, n, gz) in files {
            let bytes = gunzip(&src.join(format!("{name}.gz")));
            let cut = idx_prefix(&bytes, header, item, n);
            if name == "t10k-images-idx3-ubyte" {
                test_images = cut[16..].chunks(px).map(<[u8]>::to_vec).collect();
            }
            let path = dir.join(name);
            std::fs::write(&path, &cut).unwrap();
            if gz {
                let o = std::process::Command::new("gzip")
                    .arg("-f")
                    .arg(&path)
                    .output()
                    .unwrap();
                assert!(o.status.success());
            }
        }
        (dir, test_images)
    })
}

/// 80 silk icons (16x16 RGBA) unpacked with `tar` into a folder of their own.
fn silk_icons() -> &'static Path {
    static SILK: OnceLock<PathBuf> = OnceLock::new();
    SILK.get_or_init(|| {
        let dir = scratch().join("silk");
        std::fs::create_dir_all(&dir).unwrap();
        let o = std::process::Command::new("tar")
            .arg("xzf")
            .arg(shared("images/famfamfam_silk_16x16_png.tar.gz"))
            .arg("-C")
            .arg(&dir)
            .arg("--wildcards")
            .arg(SILK_PATTERN)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "tar: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        dir.join("16x16")
    })
}

fn silk_count() -> usize {
    std::fs::read_dir(silk_icons())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count()
}

// ---------------------------------------------------------------------------------------------
// Tiny models, each trained once per test binary.

fn config(steps: usize, batch: usize, seq_len: usize, codec: &str) -> String {
    format!(
        r#"{{"model": {{"hidden": 32, "layers": 2, "heads": 4}},
            "train": {{"steps": {steps}, "batch_size": {batch}, "seq_len": {seq_len}, "warmup_steps": 3,
                      "learning_rate": 0.003, "eval_every": {steps}, "checkpoint_every": {steps}}},
            "codec": {codec}}}"#
    )
}

/// Class-conditional, `grey:4`, on the 8x8 digits CSV.
fn digits_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let out = scratch().join("digits-grey4");
        train_with(
            "image",
            &shared("images/sklearn_digits.csv.gz"),
            &out,
            &config(30, 8, 65, r#"{"tokens": "grey:4"}"#),
        );
        out
    })
}

/// Class-conditional, `blocks:2` (lossless on binarised pixels), on the MNIST subset.
fn mnist_blocks_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let out = scratch().join("mnist-blocks2");
        train_with(
            "image",
            &mnist_subset().0,
            &out,
            &config(20, 4, 197, r#"{"tokens": "blocks:2"}"#),
        );
        out
    })
}

/// Unconditional (asked for on labelled data), `patches:4:32`, on the MNIST subset.
fn mnist_patches_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let out = scratch().join("mnist-patches");
        train_with(
            "image",
            &mnist_subset().0,
            &out,
            &config(
                20,
                8,
                50,
                r#"{"tokens": "patches:4:32", "conditional": false}"#,
            ),
        );
        out
    })
}

/// `palette:16` on the colour icons (an unlabelled folder, so unconditional).
fn palette_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let out = scratch().join("silk-palette16");
        train_with(
            "image",
            silk_icons(),
            &out,
            &config(20, 4, 257, r#"{"tokens": "palette:16"}"#),
        );
        out
    })
}

// ---------------------------------------------------------------------------------------------
// Reading what the program wrote.

fn open_png(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{} is not a readable image: {e}", path.display()))
        .to_rgb8()
}

/// The native PNGs of `--out-dir`, checked to be exactly `000.png`, `001.png`... (`count` of them).
fn natives(dir: &Path, count: usize) -> Vec<RgbImage> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let expected: Vec<String> = (0..count).map(|i| format!("{i:03}.png")).collect();
    assert_eq!(names, expected, "the files of {}", dir.display());
    names.iter().map(|n| open_png(&dir.join(n))).collect()
}

fn codec_section(model: &Path) -> Value {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    v["codec"].clone()
}

/// Whether `tile` at (`x0`, `y0`) in `big` is `img` upscaled `scale` times (rows in `skip` excepted).
fn tile_matches(
    big: &RgbImage,
    x0: u32,
    y0: u32,
    img: &RgbImage,
    scale: u32,
    skip_row: Option<u32>,
) -> bool {
    (0..img.height() * scale).all(|y| {
        Some(y) == skip_row
            || (0..img.width() * scale)
                .all(|x| big.get_pixel(x0 + x, y0 + y) == img.get_pixel(x / scale, y / scale))
    })
}

fn rows(img: &RgbImage, n: u32) -> Vec<Rgb<u8>> {
    (0..n)
        .flat_map(|y| (0..img.width()).map(move |x| *img.get_pixel(x, y)))
        .collect()
}

fn temp(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// Generation.

#[test]
fn grid_native_pngs_and_animation_follow_count_and_scale() {
    let m = digits_model();
    let dir = temp("gen-grid");
    let (grid, each, gif) = (dir.join("grid.png"), dir.join("each"), dir.join("fill.gif"));
    let scale = 3;
    let o = ok(&[
        "generate",
        "image",
        "--model",
        p(m),
        "--class",
        "3",
        "--count",
        "6",
        "--scale",
        &scale.to_string(),
        "--seed",
        "1",
        "--out",
        p(&grid),
        "--out-dir",
        p(&each),
        "--animate",
        p(&gif),
    ]);
    assert!(stderr(&o).contains("6 images of class 3"), "{}", stderr(&o));

    // Six native 8x8 images, grey, in the four levels of grey:4.
    let imgs = natives(&each, 6);
    let levels = [0u8, 85, 170, 255];
    for img in &imgs {
        assert_eq!(img.dimensions(), (DIGIT, DIGIT));
        assert!(
            img.pixels()
                .all(|px| px[0] == px[1] && px[1] == px[2] && levels.contains(&px[0])),
            "not grey:4 pixels"
        );
    }

    // The grid: ceil(sqrt(6)) = 3 columns, 2 rows of 8*scale cells with 1-pixel separators,
    // each cell the native image upscaled by nearest neighbour.
    let g = open_png(&grid);
    let cell = DIGIT * scale;
    assert_eq!(g.dimensions(), (3 * cell + 2, 2 * cell + 1));
    for (i, img) in imgs.iter().enumerate() {
        let (x0, y0) = ((i as u32 % 3) * (cell + 1), (i as u32 / 3) * (cell + 1));
        assert!(
            tile_matches(&g, x0, y0, img, scale, None),
            "grid tile {i} is not image {i:03}.png upscaled {scale}x"
        );
    }
    let separator: Vec<Rgb<u8>> = (0..g.height()).map(|y| *g.get_pixel(cell, y)).collect();
    assert!(
        separator.iter().all(|&px| px == separator[0]),
        "the separator column is one colour"
    );

    // The animation: several frames of the first image filling in, ending on that image.
    let file = std::io::BufReader::new(std::fs::File::open(&gif).unwrap());
    let frames =
        image::AnimationDecoder::into_frames(image::codecs::gif::GifDecoder::new(file).unwrap())
            .collect_frames()
            .unwrap();
    assert!(frames.len() >= 10, "only {} frames", frames.len());
    let (w, h) = frames[0].buffer().dimensions();
    assert!(
        w == h && w % DIGIT == 0,
        "frames of {w}x{h} are not the square digit upscaled"
    );
    assert!(frames.iter().all(|f| f.buffer().dimensions() == (w, h)));
    let s = w / DIGIT;
    let close =
        |a: &image::Rgba<u8>, b: &Rgb<u8>| (0..3).all(|c| (a[c] as i32 - b[c] as i32).abs() <= 8);
    let first = frames[0].buffer();
    assert!(
        first.pixels().all(|px| px == first.get_pixel(0, 0)),
        "the first frame shows nothing drawn yet"
    );
    let last = frames.last().unwrap().buffer();
    for y in 0..DIGIT {
        for x in 0..DIGIT {
            assert!(
                close(last.get_pixel(x * s, y * s), imgs[0].get_pixel(x, y)),
                "the last frame is not image 000 at ({x}, {y})"
            );
        }
    }
    let middle = frames[frames.len() / 3].buffer();
    assert!(
        middle != first && middle != last,
        "a middle frame is a partly drawn image"
    );
}

#[test]
fn seeds_reproduce_and_batch_members_use_seed_plus_index() {
    let m = digits_model();
    let run = |tag: &str, seed: &str, class: &str| -> (Vec<u8>, Vec<Vec<u8>>) {
        let dir = temp(&format!("seed-{tag}"));
        ok(&[
            "generate",
            "image",
            "--model",
            p(m),
            "--class",
            class,
            "--count",
            "3",
            "--seed",
            seed,
            "--out",
            p(&dir.join("grid.png")),
            "--out-dir",
            p(&dir.join("each")),
        ]);
        let each = (0..3)
            .map(|i| std::fs::read(dir.join("each").join(format!("{i:03}.png"))).unwrap())
            .collect();
        (std::fs::read(dir.join("grid.png")).unwrap(), each)
    };
    let a = run("a", "5", "3");
    assert_eq!(
        a,
        run("b", "5", "3"),
        "the same seed gives byte-identical PNGs"
    );
    let c = run("c", "6", "3");
    assert_ne!(a.0, c.0, "another seed gives other images");
    assert_ne!(a.1[0], c.1[0]);
    // Image i of a batch is drawn with seed + i, whatever the batch.
    assert_eq!(a.1[1], c.1[0]);
    assert_eq!(a.1[2], c.1[1]);
    // The class is given to the model: the same dice with another class draw other images.
    let d = run("d", "5", "7");
    assert_ne!(a.1, d.1, "class 7 drew the same three images as class 3");
}

#[test]
fn guidance_is_reproducible_changes_the_draw_and_needs_a_class() {
    let m = p(digits_model());
    let dir = temp("guidance");
    let draw = |name: &str, extra: &[&str]| -> Vec<u8> {
        let out = dir.join(name);
        let mut args = vec![
            "generate",
            "image",
            "--model",
            m,
            "--class",
            "3",
            "--count",
            "4",
            "--seed",
            "9",
            "--out",
            p(&out),
        ];
        args.extend_from_slice(extra);
        ok(&args);
        std::fs::read(&out).unwrap()
    };
    let plain = draw("plain.png", &[]);
    let guided = draw("guided.png", &["--guidance", "4"]);
    assert_eq!(
        guided,
        draw("guided-again.png", &["--guidance", "4"]),
        "the same seed and guidance give the same images"
    );
    assert_ne!(
        plain, guided,
        "guidance 4 drew the same images as the plain model"
    );

    // A model folder's default guidance applies when none is asked for.
    let with_default = dir.join("model-with-default");
    copy_files(digits_model(), &with_default, &[]);
    let config_path = with_default.join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["generation"] = serde_json::json!({"guidance": 4.0});
    std::fs::write(&config_path, config.to_string()).unwrap();
    let by_default = dir.join("by-default.png");
    ok(&[
        "generate",
        "image",
        "--model",
        p(&with_default),
        "--class",
        "3",
        "--count",
        "4",
        "--seed",
        "9",
        "--out",
        p(&by_default),
    ]);
    assert_eq!(
        std::fs::read(&by_default).unwrap(),
        guided,
        "the folder's default guidance 4 was not used"
    );
    config["generation"] = serde_json::json!({"guidance": "strong"});
    std::fs::write(&config_path, config.to_string()).unwrap();

    let out = dir.join("never.png");
    all_fail(vec![
        bad(
            &[
                "generate",
                "image",
                "--model",
                p(&with_default),
                "--class",
                "3",
                "--out",
                p(&by_default),
            ],
            "generation.guidance must be a number",
        ),
        bad(
            &[
                "generate",
                "image",
                "--model",
                m,
                "--guidance",
                "2",
                "--out",
                p(&out),
            ],
            "--class",
        ),
        bad(
            &[
                "generate",
                "image",
                "--model",
                m,
                "--class",
                "3",
                "--guidance",
                "-1",
                "--out",
                p(&out),
            ],
            "at least 0",
        ),
        bad(
            &[
                "generate",
                "image",
                "--model",
                p(mnist_patches_model()),
                "--guidance",
                "2",
                "--class",
                "3",
                "--out",
                p(&out),
            ],
            "class",
        ),
    ]);
    assert!(!out.exists());
}

#[test]
fn completion_keeps_the_given_rows_of_a_real_digit() {
    let m = digits_model();
    // The last digit of the CSV is in the held-out tenth.
    let (pixels, label) = digits_csv().last().unwrap().clone();
    let dir = temp("complete-digit");
    let prompt = dir.join("real.png");
    grey_image(DIGIT, &pixels).save(&prompt).unwrap();
    let (keep, count, scale) = (3u32, 4usize, 2u32);
    ok(&[
        "generate",
        "image",
        "--model",
        p(m),
        "--class",
        &label.to_string(),
        "--prompt-image",
        p(&prompt),
        "--keep-rows",
        &keep.to_string(),
        "--count",
        &count.to_string(),
        "--scale",
        &scale.to_string(),
        "--seed",
        "3",
        "--out",
        p(&dir.join("grid.png")),
        "--out-dir",
        p(&dir.join("each")),
    ]);
    let quantised = grey_image(DIGIT, &pixels.iter().map(|&v| grey4(v)).collect::<Vec<_>>());
    let imgs = natives(&dir.join("each"), count);
    for (i, img) in imgs.iter().enumerate() {
        assert_eq!(
            rows(img, keep),
            rows(&quantised, keep),
            "completion {i} changed the kept rows"
        );
    }
    assert!(
        imgs.iter().any(|img| img != &imgs[0]),
        "the completions are drawn, not copies of one another"
    );

    // One row: the original, then the completions, each with a marker line where the kept part
    // ends (pixel row keep * scale of the tile).
    let g = open_png(&dir.join("grid.png"));
    let cell = DIGIT * scale;
    assert_eq!(g.dimensions(), ((1 + count as u32) * (cell + 1) - 1, cell));
    let marker = keep * scale;
    assert!(
        tile_matches(&g, 0, 0, &grey_image(DIGIT, &pixels), scale, Some(marker)),
        "the first tile is the original"
    );
    for (i, img) in imgs.iter().enumerate() {
        let x0 = (i as u32 + 1) * (cell + 1);
        assert!(
            tile_matches(&g, x0, 0, img, scale, Some(marker)),
            "tile {} is completion {i}",
            i + 1
        );
    }
    let line: Vec<Rgb<u8>> = (0..g.width())
        .filter(|x| (x + 1) % (cell + 1) != 0)
        .map(|x| *g.get_pixel(x, marker))
        .collect();
    assert!(
        line.iter().all(|&px| px == line[0] && px[0] != px[1]),
        "a coloured marker line crosses every tile at row {marker}"
    );
}

#[test]
fn completion_with_blocks_keeps_whole_token_rows_of_an_mnist_digit() {
    let m = mnist_blocks_model();
    let test_images = &mnist_subset().1;
    let dir = temp("complete-mnist");
    let prompt = dir.join("t10k-0.png");
    grey_image(MNIST, &test_images[0]).save(&prompt).unwrap();
    // 2x2 blocks: 15 rows asked for keeps the 7 whole token rows above them, 14 pixel rows.
    ok(&[
        "generate",
        "image",
        "--model",
        p(m),
        "--prompt-image",
        p(&prompt),
        "--keep-rows",
        "15",
        "--count",
        "3",
        "--scale",
        "1",
        "--out",
        p(&dir.join("grid.png")),
        "--out-dir",
        p(&dir.join("each")),
    ]);
    let binary = grey_image(
        MNIST,
        &test_images[0]
            .iter()
            .map(|&v| binarise(v))
            .collect::<Vec<_>>(),
    );
    for (i, img) in natives(&dir.join("each"), 3).iter().enumerate() {
        assert_eq!(img.dimensions(), (MNIST, MNIST));
        assert!(
            img.pixels()
                .all(|px| px[0] == px[1] && px[1] == px[2] && (px[0] == 0 || px[0] == 255))
        );
        assert_eq!(
            rows(img, 14),
            rows(&binary, 14),
            "completion {i} changed the kept rows"
        );
    }
    let g = open_png(&dir.join("grid.png"));
    assert_eq!(g.dimensions(), (4 * (MNIST + 1) - 1, MNIST));
    let marker: Vec<Rgb<u8>> = (0..MNIST).map(|x| *g.get_pixel(x, 14)).collect();
    assert!(
        marker.iter().all(|&px| px == marker[0] && px[0] != px[1]),
        "the marker is at pixel row 14"
    );

    // One pixel row is less than a row of 2x2 blocks.
    fails(
        &[
            "generate",
            "image",
            "--model",
            p(m),
            "--prompt-image",
            p(&prompt),
            "--keep-rows",
            "1",
            "--out",
            p(&dir.join("x.png")),
        ],
        "less than one row of tokens",
    );
}

#[test]
fn wrong_size_prompt_is_resized() {
    // Documented behaviour: a prompt image of another size is resized to the model's size (a
    // triangle filter), not refused. A 16x16 image whose top half is white keeps white top rows.
    let m = digits_model();
    let dir = temp("complete-resized");
    let prompt = dir.join("big.png");
    RgbImage::from_fn(16, 16, |_, y| Rgb([if y < 8 { 255 } else { 0 }; 3]))
        .save(&prompt)
        .unwrap();
    let o = ok(&[
        "generate",
        "image",
        "--model",
        p(m),
        "--prompt-image",
        p(&prompt),
        "--keep-rows",
        "3",
        "--count",
        "2",
        "--scale",
        "1",
        "--out",
        p(&dir.join("grid.png")),
        "--out-dir",
        p(&dir.join("each")),
    ]);
    assert!(!stderr(&o).contains("error"));
    for img in natives(&dir.join("each"), 2) {
        assert_eq!(img.dimensions(), (DIGIT, DIGIT));
        assert!(
            rows(&img, 3).iter().all(|px| px.0 == [255; 3]),
            "the kept rows of the resized prompt are white"
        );
    }
    // The original in the grid is shown at the model's size too.
    assert_eq!(
        open_png(&dir.join("grid.png")).dimensions(),
        (3 * (DIGIT + 1) - 1, DIGIT)
    );
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

fn check_eval_arithmetic(v: &Value, images: usize, tokens_per_image: usize, dims_per_image: usize) {
    assert_eq!(v["images"], images, "{v}");
    // Only pixel tokens are scored: the class / start token is never counted.
    assert_eq!(v["tokens"], images * tokens_per_image, "{v}");
    let tokens = v["tokens"].as_f64().unwrap();
    let nats = v["nats_per_token"].as_f64().unwrap();
    assert!(nats.is_finite() && nats > 0.0);
    let total = nats * tokens;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    assert!(
        close(
            v["bits_per_token"].as_f64().unwrap(),
            nats / std::f64::consts::LN_2
        ),
        "{v}"
    );
    assert!(
        close(v["nats_per_image"].as_f64().unwrap() * images as f64, total),
        "{v}"
    );
    let dims = (images * dims_per_image) as f64;
    assert!(
        close(
            v["bits_per_dim"].as_f64().unwrap(),
            total / std::f64::consts::LN_2 / dims
        ),
        "{v}"
    );
    // What the tokenisation loses: a mean squared error and its PSNR (absent when lossless).
    let mse = v["reconstruction"]["mse"].as_f64().unwrap();
    assert!(mse.is_finite() && mse >= 0.0, "{v}");
    match v["reconstruction"]["psnr_db"].as_f64() {
        Some(psnr) => assert!(close(psnr, 10.0 * (255.0f64 * 255.0 / mse).log10()), "{v}"),
        None => assert_eq!(mse, 0.0, "{v}"),
    }
}

#[test]
fn eval_on_the_digits_csv_scores_its_held_out_tenth() {
    let m = digits_model();
    let csv = shared("images/sklearn_digits.csv.gz");
    let v = ok_json(&[
        "eval",
        "image",
        "--model",
        p(m),
        "--data",
        p(&csv),
        "--format",
        "json",
    ]);
    // The last tenth of the lines (rounded up) is held out.
    let held = digits_csv().len().div_ceil(10);
    check_eval_arithmetic(&v, held, 64, 64);
    // Text format: the same numbers, one per line.
    let o = ok(&["eval", "image", "--model", p(m), "--data", p(&csv)]);
    let text = stdout(&o);
    for key in [
        "tokens",
        "nats_per_token",
        "bits_per_token",
        "nats_per_image",
        "bits_per_dim",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{key}:"))),
            "{key} missing in:\n{text}"
        );
    }
    assert!(text.contains(&v["tokens"].to_string()));
}

#[test]
fn eval_on_an_mnist_folder_reads_the_t10k_files() {
    let m = mnist_blocks_model();
    let v = ok_json(&[
        "eval",
        "image",
        "--model",
        p(m),
        "--data",
        p(&mnist_subset().0),
        "--format",
        "json",
    ]);
    // 28x28 in 2x2 blocks: 196 tokens per image, 784 dimensions (grey).
    check_eval_arithmetic(&v, MNIST_TEST, 196, 784);
}

#[test]
fn stochastic_binarisation_and_scores_with_and_without_the_label() {
    let m = mnist_blocks_model();
    let data = mnist_subset().0.clone();
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "image",
            "--model",
            p(m),
            "--data",
            p(&data),
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        ok_json(&args)
    };
    let plain = eval(&[]);
    check_eval_arithmetic(&plain, MNIST_TEST, 196, 784);
    // The literature's -log p(x) has no label: the classes are summed out (each image scored
    // under every class token). That is never worse than the label-conditioned score (also
    // reported) plus ln 10, and a real mixture is better than that bound.
    let mixture = plain["nats_per_image"].as_f64().unwrap();
    let given = plain["nats_per_image_given_label"].as_f64().unwrap();
    let token = plain["nats_per_image_unconditional_token"]
        .as_f64()
        .unwrap();
    assert!(
        mixture.is_finite() && given.is_finite() && token.is_finite(),
        "{plain}"
    );
    assert!(mixture < given + 10f64.ln(), "{plain}");
    assert!(mixture != token && mixture != given, "{plain}");
    assert!(
        plain["nats_per_image_from"]
            .as_str()
            .unwrap()
            .contains("10 classes summed out")
    );
    // Thresholding at 128 is what the blocks codec does anyway.
    let threshold = eval(&["--binarise", "threshold"]);
    assert_eq!(threshold["nats_per_image"], plain["nats_per_image"]);
    // A stochastic test set is a pure function of its seed, and another seed draws another.
    let a = eval(&["--binarise", "stochastic", "--binarise-seed", "1"]);
    assert_eq!(
        a,
        eval(&["--binarise", "stochastic", "--binarise-seed", "1"])
    );
    let b = eval(&["--binarise", "stochastic", "--binarise-seed", "2"]);
    assert_ne!(a["nats_per_image"], b["nats_per_image"]);
    assert_ne!(a["nats_per_image"], plain["nats_per_image"]);
    assert_eq!(a["binarise"], "stochastic, seed 1");
    check_eval_arithmetic(&a, MNIST_TEST, 196, 784);
    all_fail(vec![
        bad(
            &[
                "eval",
                "image",
                "--model",
                p(m),
                "--data",
                p(&data),
                "--binarise-seed",
                "3",
            ],
            "--binarise-seed goes with --binarise stochastic",
        ),
        bad(
            &[
                "eval",
                "image",
                "--model",
                p(m),
                "--data",
                p(&data),
                "--binarise",
                "threshold",
                "--binarise-seed",
                "3",
            ],
            "not threshold",
        ),
        bad(
            &[
                "eval",
                "image",
                "--model",
                p(m),
                "--data",
                p(&data),
                "--binarise",
                "halftone",
            ],
            "halftone",
        ),
    ]);
}

#[test]
fn dynamic_binarisation_trains_reproducibly() {
    let codec = r#"{"tokens": "blocks:2", "binarise": "dynamic"}"#;
    let run = |name: &str| {
        let out = temp(name);
        train_with("image", &mnist_subset().0, &out, &config(4, 4, 197, codec));
        out
    };
    let (a, b) = (run("dynamic-a"), run("dynamic-b"));
    assert_eq!(
        std::fs::read(a.join("model.safetensors")).unwrap(),
        std::fs::read(b.join("model.safetensors")).unwrap(),
        "the same seed draws the same binarisations"
    );
    let card = std::fs::read_to_string(a.join("MODEL.md")).unwrap();
    assert!(card.contains("dynamic binarisation"), "{card}");
    // A grey tokenisation cannot be binarised dynamically.
    let out = temp("dynamic-grey");
    let file = out.with_extension("json");
    std::fs::write(
        &file,
        config(4, 4, 785, r#"{"tokens": "grey:4", "binarise": "dynamic"}"#),
    )
    .unwrap();
    fails(
        &[
            "train",
            "image",
            "--data",
            p(&mnist_subset().0),
            "--out",
            p(&out),
            "--config",
            p(&file),
        ],
        "needs a binary tokenisation",
    );
}

/// A folder holding only some of the MNIST subset's files (the training pair plain, the t10k
/// pair gzipped, as the subset writes them).
fn mnist_part(name: &str, files: &[&str]) -> PathBuf {
    let dir = temp(name);
    for file in files {
        std::fs::copy(mnist_subset().0.join(file), dir.join(file)).unwrap();
    }
    dir
}

#[test]
fn eval_reads_a_folder_with_only_the_mnist_test_files() {
    let dir = mnist_part(
        "mnist-t10k-only",
        &["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"],
    );
    let m = mnist_blocks_model();
    let args = |data: &Path| -> Vec<String> {
        [
            "eval",
            "image",
            "--model",
            p(m),
            "--data",
            p(data),
            "--format",
            "json",
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |data: &Path| -> Value {
        let a = args(data);
        ok_json(&a)
    };
    let v = run(&dir);
    check_eval_arithmetic(&v, MNIST_TEST, 196, 784);
    // The same scores as from the complete folder, whose t10k files these are.
    let whole = run(&mnist_subset().0);
    for key in ["images", "tokens", "nats_per_token", "bits_per_dim"] {
        assert_eq!(v[key], whole[key], "{key}: {v} vs {whole}");
    }

    // Without training images the class check's references are the test digits.
    let mut a = args(&dir);
    a.extend(["--check-classes", "1"].map(String::from));
    let v = ok_json(&a);
    let check = &v["class_check"];
    let per = check["per_class"].as_array().unwrap();
    assert_eq!(per.len(), 10, "{check}");
    assert!(per.iter().all(|c| c["total"] == 1), "{check}");

    // Training needs the training pair, and says which file is missing.
    let config = scratch().join("t10k-only-train.json");
    std::fs::write(&config, config_text_blocks()).unwrap();
    fails(
        &[
            "train",
            "image",
            "--data",
            p(&dir),
            "--out",
            p(&scratch().join("never-t10k-only")),
            "--config",
            p(&config),
        ],
        "no train-images-idx3-ubyte",
    );
}

#[test]
fn training_reads_a_folder_with_only_the_mnist_training_files() {
    let dir = mnist_part(
        "mnist-train-only",
        &["train-images-idx3-ubyte", "train-labels-idx1-ubyte"],
    );
    let out = scratch().join("mnist-train-only-model");
    let o = train_with("image", &dir, &out, &config_text_blocks());
    // Without the t10k files, every 10th training image is held out.
    let held = (0..MNIST_TRAIN).filter(|i| i % 10 == 9).count();
    let card = std::fs::read_to_string(out.join("MODEL.md")).unwrap();
    assert!(
        card.contains(&format!(
            "{} training images, {held} held out,",
            MNIST_TRAIN - held
        )),
        "MODEL.md does not say {} images were trained on and {held} held out:\n{card}",
        MNIST_TRAIN - held
    );
    assert!(
        stderr(&o).contains(&format!("({} held out)", held * 196)),
        "{}",
        stderr(&o)
    );
    assert!(out.join("model.safetensors").exists());

    // Evaluation needs the test pair, and says which file is missing.
    fails(
        &[
            "eval",
            "image",
            "--model",
            p(mnist_blocks_model()),
            "--data",
            p(&dir),
        ],
        "no t10k-images-idx3-ubyte",
    );
}

/// Two steps of a `blocks:2` model on whole MNIST digits.
fn config_text_blocks() -> String {
    config(2, 2, 197, r#"{"tokens": "blocks:2"}"#)
}

#[test]
fn eval_check_classes_draws_and_classifies_every_class() {
    let m = digits_model();
    let csv = shared("images/sklearn_digits.csv.gz");
    let v = ok_json(&[
        "eval",
        "image",
        "--model",
        p(m),
        "--data",
        p(&csv),
        "--check-classes",
        "2",
        "--format",
        "json",
    ]);
    let check = &v["class_check"];
    assert_eq!(check["samples_per_class"], 2);
    let per = check["per_class"].as_array().unwrap();
    assert_eq!(per.len(), 10);
    assert!(per.iter().all(|c| c["total"] == 2));
    let correct: u64 = per.iter().map(|c| c["correct"].as_u64().unwrap()).sum();
    assert!(
        (check["recognised"].as_f64().unwrap() - correct as f64 / 20.0).abs() < 1e-12,
        "{check}"
    );
    all_fail(vec![
        bad(
            &[
                "eval",
                "image",
                "--model",
                p(m),
                "--data",
                p(&csv),
                "--check-classes",
                "0",
            ],
            "--check-classes",
        ),
        bad(
            &[
                "eval",
                "image",
                "--model",
                p(mnist_patches_model()),
                "--data",
                p(&mnist_subset().0),
                "--check-classes",
                "1",
            ],
            "class-conditional",
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Every tokenisation through the command line.

#[test]
fn blocks_model_draws_binary_mnist_digits_of_a_class() {
    let m = mnist_blocks_model();
    assert_eq!(
        codec_section(m)["classes"].as_array().unwrap().len(),
        10,
        "MNIST has ten labelled classes"
    );
    let dir = temp("gen-blocks");
    ok(&[
        "generate",
        "image",
        "--model",
        p(m),
        "--class",
        "7",
        "--count",
        "2",
        "--out",
        p(&dir.join("g.png")),
        "--out-dir",
        p(&dir.join("each")),
    ]);
    for img in natives(&dir.join("each"), 2) {
        assert_eq!(img.dimensions(), (MNIST, MNIST));
        assert!(
            img.pixels().all(|px| px.0 == [0; 3] || px.0 == [255; 3]),
            "blocks decode to black and white"
        );
    }
}

#[test]
fn palette_model_draws_palette_colours_and_travels_with_its_palette() {
    let m = palette_model();
    // The side file: palette.json with at most 16 colours, named in config.json.
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(m.join("palette.json")).unwrap()).unwrap();
    let palette: Vec<[u8; 3]> = file["colours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let hex = c.as_str().unwrap().trim_start_matches('#');
            let ch = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap();
            [ch(0), ch(2), ch(4)]
        })
        .collect();
    assert!(
        (2..=16).contains(&palette.len()),
        "{} colours",
        palette.len()
    );
    assert!(
        palette.iter().any(|c| c[0] != c[1] || c[1] != c[2]),
        "the icons are in colour"
    );
    assert!(
        codec_section(m)["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "palette.json")
    );

    let dir = temp("gen-palette");
    let draw = |model: &Path, tag: &str| -> Vec<RgbImage> {
        let each = dir.join(tag);
        ok(&[
            "generate",
            "image",
            "--model",
            p(model),
            "--count",
            "3",
            "--seed",
            "4",
            "--out",
            p(&dir.join(format!("{tag}.png"))),
            "--out-dir",
            p(&each),
        ]);
        natives(&each, 3)
    };
    let imgs = draw(m, "here");
    for img in &imgs {
        assert_eq!(img.dimensions(), (16, 16));
        assert!(
            img.pixels().all(|px| palette.contains(&px.0)),
            "a pixel outside the palette"
        );
    }
    // The model folder still works after being copied elsewhere, and draws the same images.
    let moved = scratch().join("moved-palette-model");
    copy_files(m, &moved, &[]);
    assert_eq!(draw(&moved, "moved"), imgs);
    // Without its palette it is a clear error.
    let incomplete = scratch().join("palette-model-without-palette");
    copy_files(m, &incomplete, &["palette.json"]);
    fails(
        &[
            "generate",
            "image",
            "--model",
            p(&incomplete),
            "--out",
            p(&dir.join("x.png")),
        ],
        "palette file",
    );

    // Colour evaluation counts three channels per pixel; every tenth icon is held out.
    let v = ok_json(&[
        "eval",
        "image",
        "--model",
        p(m),
        "--data",
        p(silk_icons()),
        "--format",
        "json",
    ]);
    let held = (0..silk_count()).filter(|i| i % 10 == 9).count();
    check_eval_arithmetic(&v, held, 256, 16 * 16 * 3);
}

#[test]
fn patches_model_draws_codebook_patches_and_travels_with_its_codebook() {
    let m = mnist_patches_model();
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(m.join("codebook.json")).unwrap()).unwrap();
    assert_eq!(file["patch"], 4);
    assert_eq!(file["channels"], 1, "MNIST is grey");
    let book: Vec<Vec<u8>> = serde_json::from_value(file["entries"].clone()).unwrap();
    assert!((2..=32).contains(&book.len()) && book.iter().all(|e| e.len() == 16));
    // Asked for an unconditional model: no classes, and --class is refused.
    assert!(codec_section(m)["classes"].as_array().unwrap().is_empty());

    let dir = temp("gen-patches");
    let draw = |model: &Path, tag: &str| -> Vec<RgbImage> {
        let each = dir.join(tag);
        ok(&[
            "generate",
            "image",
            "--model",
            p(model),
            "--count",
            "2",
            "--seed",
            "9",
            "--out",
            p(&dir.join(format!("{tag}.png"))),
            "--out-dir",
            p(&each),
        ]);
        natives(&each, 2)
    };
    let imgs = draw(m, "here");
    for img in &imgs {
        assert_eq!(img.dimensions(), (MNIST, MNIST));
        for (py, px) in (0..MNIST / 4).flat_map(|y| (0..MNIST / 4).map(move |x| (y, x))) {
            let patch: Vec<u8> = (0..16)
                .map(|i| img.get_pixel(px * 4 + i % 4, py * 4 + i / 4)[0])
                .collect();
            assert!(
                book.contains(&patch),
                "patch ({px}, {py}) is not a codebook entry"
            );
        }
    }
    let moved = scratch().join("moved-patches-model");
    copy_files(m, &moved, &[]);
    assert_eq!(draw(&moved, "moved"), imgs);
    let incomplete = scratch().join("patches-model-without-codebook");
    copy_files(m, &incomplete, &["codebook.json"]);
    let x = dir.join("x.png");
    all_fail(vec![
        bad(
            &[
                "generate",
                "image",
                "--model",
                p(&incomplete),
                "--out",
                p(&x),
            ],
            "codebook",
        ),
        bad(
            &[
                "generate",
                "image",
                "--model",
                p(m),
                "--class",
                "3",
                "--out",
                p(&x),
            ],
            "no class labels",
        ),
    ]);
    let v = ok_json(&[
        "eval",
        "image",
        "--model",
        p(m),
        "--data",
        p(&mnist_subset().0),
        "--format",
        "json",
    ]);
    check_eval_arithmetic(&v, MNIST_TEST, 49, 784);
}

#[test]
fn an_unlabelled_folder_trains_an_unconditional_model() {
    // The default config asks for conditioning; a folder of loose PNGs has no labels, so the
    // model is unconditional: no classes, no class token to ask for.
    let m = palette_model();
    assert!(codec_section(m)["classes"].as_array().unwrap().is_empty());
    let card = std::fs::read_to_string(m.join("MODEL.md")).unwrap();
    assert!(!card.contains("conditioned on"), "{card}");
    fails(
        &[
            "generate",
            "image",
            "--model",
            p(m),
            "--class",
            "1",
            "--out",
            p(&scratch().join("x.png")),
        ],
        "no class labels",
    );
}

#[test]

fn an_explicit_conditional_config_on_unlabelled_data_is_refused() {
    let out = scratch().join("never-conditional");
    let config = scratch().join("conditional-unlabelled.json");
    std::fs::write(&config, config_text_conditional()).unwrap();
    fails(
        &[
            "train",
            "image",
            "--data",
            p(silk_icons()),
            "--out",
            p(&out),
            "--config",
            p(&config),
        ],
        "label",
    );
}

fn config_text_conditional() -> String {
    config(2, 2, 257, r#"{"tokens": "palette:8", "conditional": true}"#)
}

#[test]

fn unknown_codec_keys_are_refused() {
    let out = scratch().join("never-typo");
    let path = scratch().join("codec-typo.json");
    std::fs::write(&path, config(2, 2, 65, r#"{"token": "grey:4"}"#)).unwrap();
    fails(
        &[
            "train",
            "image",
            "--data",
            p(&shared("images/sklearn_digits.csv.gz")),
            "--out",
            p(&out),
            "--config",
            p(&path),
        ],
        "token",
    );
}

// ---------------------------------------------------------------------------------------------
// Bad inputs.

#[test]
fn bad_generate_inputs_get_clear_errors() {
    let m = p(digits_model()).to_string();
    let dir = temp("bad-generate");
    let out = dir.join("x.png");
    let o = p(&out);
    let real = dir.join("real.png");
    grey_image(DIGIT, &digits_csv()[0].0).save(&real).unwrap();
    // `generate image --model M`, then `extra`, then `--out X`.
    let gen_ = |extra: &[&str], needle: &str| {
        let mut args = vec!["generate", "image", "--model", m.as_str()];
        args.extend_from_slice(extra);
        args.extend(["--out", o]);
        bad(&args, needle)
    };

    // Prompt images: unreadable, truncated, missing.
    let text = dir.join("text.png");
    std::fs::write(&text, "not a picture").unwrap();
    let truncated = dir.join("truncated.png");
    let bytes = std::fs::read(&real).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let missing = dir.join("missing.png");
    // A model folder whose config does not match its weights.
    let broken = dir.join("broken-model");
    copy_files(digits_model(), &broken, &[]);
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(broken.join("config.json")).unwrap())
            .unwrap();
    config["codec"]["width"] = Value::from(9);
    std::fs::write(broken.join("config.json"), config.to_string()).unwrap();

    let mut cases = vec![
        gen_(
            &["--prompt-image", p(&text), "--keep-rows", "2"],
            "not a readable PNG",
        ),
        gen_(
            &["--prompt-image", p(&truncated), "--keep-rows", "2"],
            "not a readable PNG",
        ),
        gen_(
            &["--prompt-image", p(&missing), "--keep-rows", "2"],
            "cannot open",
        ),
    ];
    // --keep-rows: 0, the whole height or more, or without a prompt.
    for rows in ["0", "8", "9"] {
        cases.push(gen_(
            &["--prompt-image", p(&real), "--keep-rows", rows],
            "--keep-rows must be between 1 and 7",
        ));
    }
    cases.push(gen_(&["--keep-rows", "2"], "--prompt-image"));
    cases.push(gen_(&["--prompt-image", p(&real)], "--keep-rows"));
    // Classes: unknown by name or index.
    for class in ["10", "cat", ""] {
        cases.push(gen_(&["--class", class], "unknown class"));
    }
    cases.extend([
        // Counts, scales and dice.
        gen_(&["--count", "0"], "--count"),
        gen_(&["--count", "1025"], "at most 1024"),
        gen_(&["--scale", "0"], "--scale"),
        gen_(&["--scale", "65"], "--scale"),
        gen_(&["--temperature", "0"], "temperature"),
        gen_(&["--top-k", "0"], "top-k"),
        // A folder that does not exist for the grid.
        bad(
            &[
                "generate",
                "image",
                "--model",
                &m,
                "--out",
                p(&dir.join("no/such/folder/x.png")),
            ],
            "cannot write",
        ),
        // An image model is not a text or audio model.
        bad(
            &["generate", "text", "--model", &m, "--prompt", "a"],
            "image model",
        ),
        bad(
            &[
                "generate",
                "audio",
                "--model",
                &m,
                "--out",
                p(&dir.join("x.wav")),
            ],
            "image model",
        ),
        bad(
            &[
                "eval",
                "audio",
                "--model",
                &m,
                "--data",
                p(&shared("audio/asterisk_digits")),
                "--format",
                "json",
            ],
            "image model",
        ),
        bad(
            &["eval", "text", "--model", &m, "--data", p(&real)],
            "image model",
        ),
        // Missing and broken model folders.
        bad(
            &[
                "generate",
                "image",
                "--model",
                p(&dir.join("no-model")),
                "--out",
                o,
            ],
            "does not exist",
        ),
        bad(
            &["generate", "image", "--model", p(&broken), "--out", o],
            "tokens_per_image",
        ),
    ]);
    all_fail(cases);
    assert!(!out.exists(), "no failed run wrote the grid");
}

#[test]
fn bad_datasets_get_clear_errors() {
    let dir = temp("bad-data");
    let never = dir.join("never-written");
    let nw = p(&never);
    let train = |data: &Path, needle: &str| {
        bad(
            &[
                "train",
                "image",
                "--data",
                p(data),
                "--out",
                nw,
                "--steps",
                "1",
            ],
            needle,
        )
    };
    let eval = |model: &Path, data: &Path, needle: &str| {
        bad(
            &["eval", "image", "--model", p(model), "--data", p(data)],
            needle,
        )
    };
    let src = &mnist_subset().0;
    let copy_mnist = |name: &str| -> PathBuf {
        let d = dir.join(name);
        copy_files(src, &d, &[]);
        d
    };
    let mut cases = Vec::new();

    // A truncated IDX file (the header promises more pixels than there are); one shorter than
    // its header; one that is not an IDX file at all.
    let images = std::fs::read(src.join("train-images-idx3-ubyte")).unwrap();
    for (name, bytes, needle) in [
        (
            "mnist-1",
            images[..images.len() - 100].to_vec(),
            "truncated",
        ),
        ("mnist-1-short", images[..10].to_vec(), "too short"),
        ("mnist-1-not-idx", vec![7u8; images.len()], "magic number"),
    ] {
        let d = copy_mnist(name);
        std::fs::write(d.join("train-images-idx3-ubyte"), bytes).unwrap();
        cases.push(train(&d, needle));
    }
    // A truncated gzip.
    let gz = copy_mnist("mnist-2");
    let path = gz.join("t10k-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    cases.push(train(&gz, "truncated"));
    cases.push(eval(mnist_blocks_model(), &gz, "truncated"));
    // A missing labels file, and labels that do not match the images.
    let no_labels = copy_mnist("mnist-3");
    std::fs::remove_file(no_labels.join("train-labels-idx1-ubyte")).unwrap();
    cases.push(train(&no_labels, "not a complete MNIST folder"));
    let few_labels = copy_mnist("mnist-4");
    let bytes = std::fs::read(src.join("train-labels-idx1-ubyte")).unwrap();
    std::fs::write(
        few_labels.join("train-labels-idx1-ubyte"),
        idx_prefix(&bytes, 8, 1, 10),
    )
    .unwrap();
    cases.push(train(&few_labels, "600 images but"));

    // Folders with no images (empty, or only a text file), images that are not images, a path
    // that is not there.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let notes = dir.join("notes-only");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("notes.txt"), "no pictures here").unwrap();
    let fake = dir.join("fake-pngs");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("a.png"), "not a png").unwrap();
    cases.extend([
        train(&empty, "no PNG images"),
        train(&notes, "no PNG images"),
        train(&fake, "not a readable PNG"),
        train(&dir.join("no-such-data"), "cannot open the dataset"),
        train(
            &shared("audio/asterisk_digits/3.wav"),
            "cannot tell what dataset",
        ),
        eval(digits_model(), &notes, "no PNG images"),
    ]);

    // A digits CSV with a broken line.
    let csv = dir.join("digits.csv");
    std::fs::write(&csv, "0,1,2\n").unwrap();
    cases.push(train(&csv, "line 1"));

    // Missing labels: PNGs in class folders and loose ones beside them. Labelled data whose
    // classes are not the model's.
    let (mixed, classes) = (dir.join("mixed"), dir.join("other-classes"));
    for (folder, loose) in [(&mixed, true), (&classes, false)] {
        for sub in ["a", "b"] {
            std::fs::create_dir_all(folder.join(sub)).unwrap();
            grey_image(DIGIT, &digits_csv()[0].0)
                .save(folder.join(sub).join("1.png"))
                .unwrap();
        }
        if loose {
            grey_image(DIGIT, &digits_csv()[1].0)
                .save(folder.join("loose.png"))
                .unwrap();
        }
    }
    cases.push(train(&mixed, "move the loose ones into a class folder"));
    cases.push(eval(digits_model(), &classes, "not the model's"));

    // Training configs the data cannot satisfy.
    let csv_gz = shared("images/sklearn_digits.csv.gz");
    let configs = [
        (
            r#"{"codec": {"tokens": "squares:3"}}"#,
            "unknown tokenisation",
        ),
        (r#"{"codec": {"tokens": "blocks:3"}}"#, "do not tile"),
        (r#"{"codec": {"tokens": "palette:3"}}"#, "palette"),
        (r#"{"codec": {"tokens": "grey:1"}}"#, "levels"),
        (r#"{"codec": {"size": [0, 8]}}"#, "codec.size"),
        (
            r#"{"model": {"hidden": 32, "layers": 2, "heads": 4, "context": 20}}"#,
            "must hold a whole image",
        ),
    ];
    for (i, (text, needle)) in configs.into_iter().enumerate() {
        let path = dir.join(format!("config-{i}.json"));
        std::fs::write(&path, text).unwrap();
        cases.push(bad(
            &[
                "train",
                "image",
                "--data",
                p(&csv_gz),
                "--out",
                nw,
                "--config",
                p(&path),
                "--steps",
                "1",
            ],
            needle,
        ));
    }
    all_fail(cases);
    assert!(
        !never.join("model.safetensors").exists(),
        "no failed run wrote a model"
    );
}
