//! Grids, completion grids, GIFs and PNGs decode back with the sizes and pixels expected.

use std::io::BufReader;

use image::codecs::gif::GifDecoder;
use image::{AnimationDecoder, Rgb, RgbImage};
use jielong_image::pictures::{MARKER, SEPARATOR};
use jielong_image::{CompletionRow, animate, completion_grid, grid, save_png};

fn tile(w: u32, h: u32, v: u8) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb([v, v, v]))
}

#[test]
fn grid_tiles_upscale_with_separators() {
    let images: Vec<RgbImage> = (0..5).map(|i| tile(28, 28, i * 50)).collect();
    let g = grid(&images, 3, 4).unwrap();
    // 3 columns and 2 rows of 112 px tiles with 1 px between them.
    assert_eq!(g.dimensions(), (3 * 112 + 2, 2 * 112 + 1));
    assert_eq!(*g.get_pixel(0, 0), Rgb([0, 0, 0]));
    assert_eq!(*g.get_pixel(112, 5), SEPARATOR);
    assert_eq!(*g.get_pixel(113, 5), Rgb([50; 3]));
    assert_eq!(*g.get_pixel(113 + 112 + 1 + 111, 111), Rgb([100; 3]));
    assert_eq!(*g.get_pixel(113, 113), Rgb([200; 3]));
    // The missing sixth tile is left as background.
    assert_eq!(*g.get_pixel(2 * 113 + 50, 113 + 50), SEPARATOR);
    // Nearest neighbour keeps single pixels as crisp squares.
    let mut dot = tile(3, 3, 0);
    dot.put_pixel(1, 1, Rgb([255; 3]));
    let g = grid(&[dot], 1, 5).unwrap();
    assert_eq!(*g.get_pixel(5, 5), Rgb([255; 3]));
    assert_eq!(*g.get_pixel(9, 9), Rgb([255; 3]));
    assert_eq!(*g.get_pixel(10, 10), Rgb([0; 3]));

    assert!(grid(&[], 3, 1).is_err());
    assert!(grid(&images, 0, 1).is_err());
    assert!(grid(&images, 3, 0).is_err());
    assert!(grid(&images, 3, 1000).is_err());
}

#[test]
fn completion_grid_shows_the_original_then_completions_and_a_marker() {
    let rows = vec![
        CompletionRow {
            original: tile(8, 8, 10),
            kept_rows: 4,
            completions: vec![tile(8, 8, 20), tile(8, 8, 30)],
        },
        CompletionRow {
            original: tile(8, 8, 40),
            kept_rows: 2,
            completions: vec![tile(8, 8, 50)],
        },
    ];
    let g = completion_grid(&rows, 2, true).unwrap();
    assert_eq!(g.dimensions(), (3 * 16 + 2, 2 * 16 + 1));
    assert_eq!(*g.get_pixel(0, 0), Rgb([10; 3]));
    assert_eq!(*g.get_pixel(17, 0), Rgb([20; 3]));
    assert_eq!(*g.get_pixel(34, 0), Rgb([30; 3]));
    // Marker lines at the end of the kept rows: row 4 (y 8) in the first row, row 2 (y 17 + 4).
    assert_eq!(*g.get_pixel(3, 8), MARKER);
    assert_eq!(*g.get_pixel(20, 8), MARKER);
    assert_eq!(*g.get_pixel(3, 7), Rgb([10; 3]));
    assert_eq!(*g.get_pixel(3, 17 + 4), MARKER);
    // The second row has one completion fewer: its last cell is blank.
    assert_eq!(*g.get_pixel(40, 17 + 10), SEPARATOR);
    let plain = completion_grid(&rows, 2, false).unwrap();
    assert_eq!(*plain.get_pixel(3, 8), Rgb([10; 3]));

    let bad = vec![CompletionRow {
        original: tile(8, 8, 0),
        kept_rows: 1,
        completions: vec![tile(4, 4, 0)],
    }];
    assert!(completion_grid(&bad, 1, true).is_err());
}

#[test]
fn gif_and_png_decode_back() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<RgbImage> = (0..6).map(|i| tile(12, 10, i * 40)).collect();
    let path = dir.path().join("fill.gif");
    animate(&frames, &path, 50).unwrap();
    let decoder = GifDecoder::new(BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();
    let decoded = decoder.into_frames().collect_frames().unwrap();
    assert_eq!(decoded.len(), 6);
    for (f, want) in decoded.iter().zip(&frames) {
        assert_eq!(f.buffer().dimensions(), (12, 10));
        assert_eq!(f.delay().numer_denom_ms(), (50, 1));
        // Few colours: the GIF palette is exact.
        assert_eq!(f.buffer().get_pixel(3, 3)[0], want.get_pixel(3, 3)[0]);
    }
    assert!(animate(&[], &path, 50).is_err());
    assert!(animate(&[tile(2, 2, 0), tile(3, 2, 0)], &path, 50).is_err());

    let png = dir.path().join("one.png");
    let img = RgbImage::from_fn(7, 5, |x, y| Rgb([x as u8 * 30, y as u8 * 40, 9]));
    save_png(&img, &png).unwrap();
    assert_eq!(image::open(&png).unwrap().to_rgb8(), img);
    // Atomic writes leave no temporary file behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}
