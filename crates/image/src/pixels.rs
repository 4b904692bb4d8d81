//! Small pixel helpers shared by the codecs, the dataset readers and the pictures.
//!
//! Every image in this crate is an [`RgbImage`]: a greyscale image is stored with R = G = B, so
//! one type carries digits and icons alike and any of them can be written as a PNG.

use image::imageops::{self, FilterType};
use image::{DynamicImage, Rgb, RgbImage};

/// The colour of pixels that are not generated yet (a partial decode) or not known.
pub const NEUTRAL: Rgb<u8> = Rgb([128, 128, 128]);

/// Luma of an RGB pixel with the Rec. 709 weights, rounded; a grey pixel keeps its value.
pub fn luma(px: Rgb<u8>) -> u8 {
    let [r, g, b] = px.0;
    ((2126 * r as u32 + 7152 * g as u32 + 722 * b as u32 + 5000) / 10000) as u8
}

/// The image in grey, still stored as RGB (R = G = B = luma).
pub fn to_grey(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for px in out.pixels_mut() {
        let y = luma(*px);
        *px = Rgb([y, y, y]);
    }
    out
}

/// Whether every pixel has R = G = B.
pub fn is_grey(img: &RgbImage) -> bool {
    img.pixels().all(|p| p[0] == p[1] && p[1] == p[2])
}

/// Any image as RGB, with transparent pixels composited onto white (icons and emoji are drawn
/// on a transparent background, which would otherwise turn black).
pub fn on_white(img: &DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let a = a as u32;
        let blend = |c: u8| ((c as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
        Rgb([blend(r), blend(g), blend(b)])
    })
}

/// Resizes to `width` x `height` (no-op when the size already matches). A triangle filter
/// averages when shrinking, so a large drawing still reads as the small image it becomes.
pub fn resize_to(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    if img.dimensions() == (width, height) {
        return img.clone();
    }
    imageops::resize(img, width, height, FilterType::Triangle)
}

/// Nearest-neighbour upscaling by an integer factor, so that every pixel stays a crisp square.
pub fn upscale(img: &RgbImage, scale: u32) -> RgbImage {
    let scale = scale.max(1);
    if scale == 1 {
        return img.clone();
    }
    RgbImage::from_fn(img.width() * scale, img.height() * scale, |x, y| {
        *img.get_pixel(x / scale, y / scale)
    })
}
