//! Pictures of training: the loss curve.

use std::path::Path;

use anyhow::{Result, bail};
use jielong_train::Metrics;
use plotters::prelude::*;

/// Registers the vendored DejaVu Sans so text renders the same everywhere (no system fonts).
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../../assets/DejaVuSans.ttf");
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

/// Draws training and held-out loss (nats/token) against the step, written atomically.
pub fn loss_curve(path: &Path, metrics: &[Metrics]) -> Result<()> {
    if metrics.is_empty() {
        bail!("no metrics to plot");
    }
    register_font();
    let (w, h) = (800u32, 480u32);
    let mut pixels = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let last = metrics.last().map_or(1, |m| m.step).max(2) as f64;
        let losses = metrics
            .iter()
            .flat_map(|m| std::iter::once(m.train_loss).chain(m.eval_loss));
        let (lo, hi) = losses.fold((f64::MAX, f64::MIN), |(lo, hi), l| (lo.min(l), hi.max(l)));
        let pad = ((hi - lo) * 0.05).max(1e-3);
        let mut chart = ChartBuilder::on(&root)
            .caption("loss", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..last, (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("nats / token")
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                metrics.iter().map(|m| (m.step as f64, m.train_loss)),
                BLUE.mix(0.5),
            ))?
            .label("training batch")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        let eval: Vec<(f64, f64)> = metrics
            .iter()
            .filter_map(|m| m.eval_loss.map(|e| (m.step as f64, e)))
            .collect();
        chart
            .draw_series(LineSeries::new(eval.clone(), RED.stroke_width(2)).point_size(3))?
            .label("held out")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
        root.present()?;
    }
    save_png(path, w, h, pixels)
}

/// Encodes an RGB buffer as PNG and writes it atomically.
pub fn save_png(path: &Path, w: u32, h: u32, pixels: Vec<u8>) -> Result<()> {
    let img = image::RgbImage::from_raw(w, h, pixels)
        .ok_or_else(|| anyhow::anyhow!("bad picture buffer"))?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)?;
    jielong_core::write_atomic(path, &bytes.into_inner())
}
