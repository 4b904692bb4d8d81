//! Round trips of the exact tokenisations, on synthetic images and on real digits.

mod common;

use image::{DynamicImage, Rgb, RgbImage, RgbaImage};
use jielong_core::Codec;
use jielong_image::{ImageCodec, pixels};

/// A deterministic image with every grey value somewhere and irregular structure.
fn noise(width: u32, height: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let v = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503) ^ seed.wrapping_mul(97)) % 256;
        Rgb([v as u8; 3])
    })
}

#[test]
fn grey_levels_round_trip_within_half_a_step() {
    for levels in [2u32, 3, 16, 255, 256] {
        for (w, h) in [(7, 5), (1, 1), (28, 28)] {
            let codec = ImageCodec::grey(w, h, levels, vec![]).unwrap();
            let img = noise(w, h, levels);
            let ids = codec.encode(&img).unwrap();
            assert_eq!(ids.len(), (w * h) as usize);
            assert!(ids.iter().all(|&id| id < levels));
            let back = codec.decode(&ids).unwrap();
            assert_eq!(back.dimensions(), (w, h));
            // Every pixel lands within half a grey step of where it started...
            let step = 255.0 / (levels - 1) as f64;
            for (a, b) in img.pixels().zip(back.pixels()) {
                assert!(
                    ((a[0] as f64) - (b[0] as f64)).abs() <= step / 2.0 + 0.5,
                    "levels {levels}: {a:?} -> {b:?}"
                );
                assert_eq!(b[0], b[1]);
            }
            // ...and the decoded image encodes to the same tokens.
            assert_eq!(codec.encode(&back).unwrap(), ids);
        }
    }
}

#[test]
fn grey_256_is_lossless_and_binary_thresholds_at_128() {
    let img = noise(7, 5, 1);
    let codec = ImageCodec::grey(7, 5, 256, vec![]).unwrap();
    assert_eq!(codec.decode(&codec.encode(&img).unwrap()).unwrap(), img);

    let binary = ImageCodec::grey(2, 1, 2, vec![]).unwrap();
    let edge = RgbImage::from_vec(2, 1, vec![127, 127, 127, 128, 128, 128]).unwrap();
    assert_eq!(binary.encode(&edge).unwrap(), vec![0, 1]);
    assert_eq!(
        binary.decode(&[0, 1]).unwrap().into_raw(),
        vec![0, 0, 0, 255, 255, 255]
    );
}

#[test]
fn binary_blocks_match_binarised_pixels_and_document_the_bit_order() {
    // A 2x2 block: top-left is the most significant bit, raster order inside the block.
    let codec = ImageCodec::binary_blocks(4, 2, 2, vec![]).unwrap();
    assert_eq!(codec.tokens_per_image(), 2);
    assert_eq!(codec.vocab().content_size, 16);
    let on = Rgb([255u8; 3]);
    let off = Rgb([0u8; 3]);
    let pattern = [[on, off, off, off], [on, on, on, on]];
    let img = RgbImage::from_fn(4, 2, |x, y| pattern[y as usize][x as usize]);
    assert_eq!(codec.encode(&img).unwrap(), vec![0b1011, 0b0011]);
    assert_eq!(codec.token_label(0b1011), "block 1011");

    // On a real digit, blocks of every size are exactly the binarised image.
    let digit = common::mnist().heldout[0].image.clone();
    let binary = ImageCodec::grey(28, 28, 2, vec![]).unwrap();
    let expected = binary.decode(&binary.encode(&digit).unwrap()).unwrap();
    for block in [1, 2, 4] {
        let codec = ImageCodec::binary_blocks(28, 28, block, vec![]).unwrap();
        let ids = codec.encode(&digit).unwrap();
        assert_eq!(ids.len(), (28 * 28 / (block * block)) as usize);
        assert_eq!(codec.decode(&ids).unwrap(), expected, "block {block}");
    }
    // 3x3 blocks do not tile 28x28: a clear error.
    let err = ImageCodec::binary_blocks(28, 28, 3, vec![])
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not tile 28x28"), "{err}");
    assert!(ImageCodec::binary_blocks(28, 28, 5, vec![]).is_err());
}

#[test]
fn wrong_sizes_and_bad_tokens_are_clear_errors() {
    let codec = ImageCodec::grey(28, 28, 16, vec![]).unwrap();
    let err = codec
        .encode(&RgbImage::new(30, 28))
        .unwrap_err()
        .to_string();
    assert_eq!(err, "image is 30x28, this model's images are 28x28");
    let err = codec.decode(&[0; 10]).unwrap_err().to_string();
    assert!(err.contains("784 tokens"), "{err}");
    let bos = codec.vocab().bos.unwrap();
    let mut ids = vec![0; 784];
    ids[3] = bos;
    let err = codec.decode(&ids).unwrap_err().to_string();
    assert!(err.contains("[BOS]") && err.contains("position 3"), "{err}");
    assert!(ImageCodec::grey(28, 28, 1, vec![]).is_err());
    assert!(ImageCodec::grey(28, 28, 257, vec![]).is_err());
    assert!(ImageCodec::grey(0, 28, 2, vec![]).is_err());
}

#[test]
fn vocabulary_and_labels_follow_the_classes() {
    let classes: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let codec = ImageCodec::grey(28, 28, 4, classes).unwrap();
    let v = codec.vocab();
    assert_eq!(
        (
            v.content_size,
            v.bos,
            v.unconditional,
            v.first_class,
            v.size()
        ),
        (4, None, Some(4), 5, 15)
    );
    assert_eq!(codec.token_label(3), "level 3 (grey 255)");
    assert_eq!(codec.token_label(4), "[UNCOND]");
    assert_eq!(codec.token_label(12), "[CLASS 7]");
    assert!(codec.token_label(99).contains("outside"));

    // Without classes the start token is BOS, since a sequence must start with something.
    let plain = ImageCodec::grey(28, 28, 4, vec![]).unwrap();
    assert_eq!(plain.vocab().start_token(None).unwrap(), Some(4));
    assert_eq!(plain.token_label(4), "[BOS]");
}

#[test]
fn partial_decodes_paint_the_rest_neutral() {
    let codec = ImageCodec::binary_blocks(4, 4, 2, vec![]).unwrap();
    let img = codec.decode_partial(&[15]).unwrap();
    assert_eq!(*img.get_pixel(1, 1), Rgb([255; 3]));
    assert_eq!(*img.get_pixel(2, 0), pixels::NEUTRAL);
    assert_eq!(*img.get_pixel(0, 3), pixels::NEUTRAL);
    assert_eq!(
        codec.decode_partial(&[]).unwrap(),
        RgbImage::from_pixel(4, 4, pixels::NEUTRAL)
    );
    assert!(codec.decode_partial(&[0; 5]).is_err());
    // Rows of tokens and rows of pixels.
    assert_eq!(codec.tokens_for_rows(3), 2);
    assert_eq!(codec.rows_for_tokens(3), 2);
    assert_eq!(codec.tokens_for_rows(100), 4);
}

#[test]
fn bits_per_dim_counts_every_pixel_and_channel() {
    let codec = ImageCodec::grey(28, 28, 256, vec![]).unwrap();
    // A uniform model over 256 levels costs 8 bits per pixel.
    let nats = 10.0 * 784.0 * (256f64).ln();
    assert!((codec.bits_per_dim(nats, 10) - 8.0).abs() < 1e-9);
}

#[test]
fn fit_image_resizes_composites_and_greys() {
    let codec = ImageCodec::grey(8, 8, 256, vec![]).unwrap();
    let mut rgba = RgbaImage::from_pixel(32, 16, image::Rgba([200, 0, 0, 255]));
    rgba.put_pixel(0, 0, image::Rgba([0, 0, 0, 0]));
    let fitted = codec.fit_image(&DynamicImage::ImageRgba8(rgba.clone()));
    assert_eq!(fitted.dimensions(), (8, 8));
    assert!(pixels::is_grey(&fitted));
    assert_eq!(fitted.get_pixel(4, 4)[0], pixels::luma(Rgb([200, 0, 0])));
    assert!(codec.encode(&fitted).is_ok());
    // A transparent pixel becomes white, not black.
    let same = ImageCodec::grey(32, 16, 256, vec![])
        .unwrap()
        .fit_image(&DynamicImage::ImageRgba8(rgba));
    assert_eq!(*same.get_pixel(0, 0), Rgb([255; 3]));

    // From a file, as a prompt image: a PNG written here, and a file that is not an image.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prompt.png");
    jielong_image::save_png(&RgbImage::from_pixel(16, 16, Rgb([0, 0, 255])), &path).unwrap();
    let opened = codec.open_image(&path).unwrap();
    assert_eq!(
        opened,
        RgbImage::from_pixel(8, 8, Rgb([pixels::luma(Rgb([0, 0, 255])); 3]))
    );
    std::fs::write(dir.path().join("text.png"), "hello").unwrap();
    let err = format!(
        "{:#}",
        codec.open_image(&dir.path().join("text.png")).unwrap_err()
    );
    assert!(err.contains("text.png"), "{err}");
}
