//! The waveform + spectrogram picture.

mod common;

use common::{shared_audio, sine};
use jielong_audio::{HeldOut, plot, plot_size};

#[test]
fn plot_writes_a_png_of_the_expected_size_with_a_bright_harmonic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clips.png");
    let digits = HeldOut::asterisk_digits(&shared_audio(), 8000).unwrap();
    let seven = &digits.clips()[7].samples;
    let tone = sine(1000.0, 8000, 0.5, 0.8);
    plot(
        &path,
        &[
            ("prompt: seven", &seven[..2000]),
            ("recorded seven", seven),
            ("1 kHz tone", &tone),
        ],
        8000,
    )
    .unwrap();

    let image = image::open(&path).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), plot_size(3));
    assert_eq!(plot_size(3), (1000, 1200));
    // Not blank: white background, dark text and axes, and the colour map's bright yellow.
    let count = |f: &dyn Fn(&image::Rgb<u8>) -> bool| image.pixels().filter(|p| f(p)).count();
    assert!(count(&|p| p.0 == [255, 255, 255]) > 100_000);
    assert!(count(&|p| p.0[0] < 40 && p.0[1] < 40 && p.0[2] < 40) > 5_000);
    // In the tone's panel (the third), the loudest row of the spectrogram sits at 1 kHz:
    // find the brightest pixel row and check it is about a quarter of the way up the plot.
    let (top, bottom) = (2 * 400, 3 * 400);
    let brightness = |y: u32| {
        (100..970)
            .map(|x| {
                image
                    .get_pixel(x, y)
                    .0
                    .iter()
                    .map(|&c| c as u32)
                    .sum::<u32>()
            })
            .sum::<u32>()
    };
    let rows: Vec<u32> = (top + 160..bottom - 40).collect();
    let brightest = *rows.iter().max_by_key(|&&y| brightness(y)).unwrap();
    let plot_top = top + 150 + 6;
    let plot_bottom = bottom - 6 - 30;
    let frac = (plot_bottom - brightest) as f64 / (plot_bottom - plot_top) as f64;
    assert!(
        (frac - 0.25).abs() < 0.05,
        "the 1 kHz line is at {frac} of the height"
    );

    assert!(plot(&dir.path().join("none.png"), &[], 8000).is_err());
    // Empty and very short clips still draw.
    plot(
        &dir.path().join("short.png"),
        &[("empty", &[]), ("one", &[0.5])],
        8000,
    )
    .unwrap();
}
