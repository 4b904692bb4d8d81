//! The fitted tokenisations (palette, patch codebook) on small real samples: deterministic,
//! bounded reconstruction error, better with more tokens.

mod common;

use image::RgbImage;
use jielong_core::Codec;
use jielong_image::{Codebook, ImageCodec, Palette, open_dataset};

fn silk_icons(n: usize) -> Vec<RgbImage> {
    let dir = tempfile::tempdir().unwrap();
    common::untar_silk(dir.path(), n);
    let data = open_dataset(dir.path()).unwrap();
    assert_eq!((data.width, data.height), (16, 16));
    assert!(!data.grey, "silk icons are in colour");
    data.train
        .into_iter()
        .chain(data.heldout)
        .map(|l| l.image)
        .collect()
}

fn digits(n: usize) -> Vec<RgbImage> {
    common::mnist().train[..n]
        .iter()
        .map(|l| l.image.clone())
        .collect()
}

#[test]
fn palette_error_is_bounded_and_shrinks_as_k_grows() {
    let icons = silk_icons(50);
    let mut errors = Vec::new();
    for k in [8, 32, 128] {
        let palette = Palette::fit(&icons, k, 42).unwrap();
        assert!(
            palette.len() <= k && palette.len() > k / 2,
            "k {k}: {} colours",
            palette.len()
        );
        assert_eq!(
            palette,
            Palette::fit(&icons, k, 42).unwrap(),
            "fitting is deterministic"
        );
        let codec = ImageCodec::palette(16, 16, palette, vec![]).unwrap();
        assert_eq!(codec.channels(), 3);
        assert_eq!(codec.tokens_per_image(), 256);
        let ids = codec.encode(&icons[0]).unwrap();
        assert!(
            ids.iter()
                .all(|&id| (id as usize) < codec.vocab().content_size)
        );
        // Tokens are exact on the decoded image: every palette colour is its own nearest.
        assert_eq!(codec.encode(&codec.decode(&ids).unwrap()).unwrap(), ids);
        let label = codec.token_label(ids[0]);
        assert!(
            label.starts_with(&format!("palette {} #", ids[0])),
            "{label}"
        );
        errors.push(codec.reconstruction_error(&icons).unwrap());
    }
    eprintln!("palette 8/32/128 on 50 icons: {errors:?}");
    assert!(
        errors[0].mse > errors[1].mse && errors[1].mse > errors[2].mse,
        "{errors:?}"
    );
    assert!(
        errors[0].psnr > 20.0,
        "8 colours already give a recognisable icon: {errors:?}"
    );
    assert!(errors[2].psnr > 30.0, "{errors:?}");
}

#[test]
fn palette_sizes_outside_the_range_are_refused() {
    let icons = silk_icons(3);
    assert!(
        Palette::fit(&icons, 4, 0)
            .unwrap_err()
            .to_string()
            .contains("8 to 512")
    );
    assert!(Palette::fit(&icons, 1024, 0).is_err());
    assert!(Palette::fit(&[] as &[RgbImage], 8, 0).is_err());
}

#[test]
fn codebook_error_is_bounded_and_shrinks_as_k_grows() {
    let sample = digits(200);
    let heldout: Vec<RgbImage> = common::mnist().heldout[..100]
        .iter()
        .map(|l| l.image.clone())
        .collect();
    let mut errors = Vec::new();
    for k in [16, 64, 256] {
        let book = Codebook::fit(&sample, 4, 1, k, 7).unwrap();
        assert_eq!(
            book,
            Codebook::fit(&sample, 4, 1, k, 7).unwrap(),
            "fitting is deterministic"
        );
        assert!(book.len() <= k && book.len() > k / 2);
        let codec = ImageCodec::patches(28, 28, book, vec![]).unwrap();
        assert_eq!(codec.tokens_per_image(), 49);
        assert_eq!(codec.token_grid(), (7, 7));
        let ids = codec.encode(&heldout[0]).unwrap();
        assert_eq!(codec.token_label(ids[0]), format!("patch {}", ids[0]));
        errors.push(codec.reconstruction_error(&heldout).unwrap());
    }
    eprintln!("4x4 patches 16/64/256 on 100 held-out digits: {errors:?}");
    assert!(
        errors[0].mse > errors[1].mse && errors[1].mse > errors[2].mse,
        "{errors:?}"
    );
    // The largest book is far better than painting every digit black (MSE about 11,000).
    assert!(errors[2].psnr > 17.0, "{errors:?}");
}

#[test]
fn colour_patches_and_bad_patch_sizes() {
    let icons = silk_icons(30);
    let book = Codebook::fit(&icons, 4, 3, 64, 1).unwrap();
    assert_eq!((book.patch(), book.channels(), book.dim()), (4, 3, 48));
    let codec = ImageCodec::patches(16, 16, book, vec![]).unwrap();
    assert_eq!((codec.channels(), codec.tokens_per_image()), (3, 16));
    let err = codec.reconstruction_error(&icons).unwrap();
    assert!(err.psnr > 12.0 && err.psnr.is_finite(), "{err:?}");

    let sample = digits(5);
    let err = Codebook::fit(&sample, 3, 1, 16, 0).unwrap_err().to_string();
    assert!(err.contains("do not tile 28x28"), "{err}");
    assert!(Codebook::fit(&sample, 4, 2, 16, 0).is_err());
}
