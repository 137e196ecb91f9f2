//! `--plot FILE.svg`: the latency distribution as a percentile plot, the
//! way HdrHistogram draws it. The x axis counts "nines" (90 %, 99 %,
//! 99.9 %, ...) so the tail, where chat servers differ, gets room.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::BenchReport;

/// Highest percentile the x axis reaches: 99.999 %.
const LAST_NINES: f64 = 100_000.0;

/// Writes the report's latency curve to `path` as SVG.
pub fn latency_svg(report: &BenchReport, title: &str, path: &Path) -> anyhow::Result<()> {
    draw(report, title, path)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("cannot draw {}", path.display()))
}

fn draw(report: &BenchReport, title: &str, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    // (1 / (1 - percentile)): 50 % -> 2, 99 % -> 100, 99.9 % -> 1000.
    let points: Vec<(f64, f64)> = report
        .latency_curve
        .iter()
        .map(|&(percentile, millis)| {
            let nines = (1.0 / (1.0 - percentile / 100.0)).min(LAST_NINES);
            (nines, millis.max(0.001))
        })
        .collect();
    let highest = points.iter().map(|&(_, millis)| millis).fold(1.0, f64::max);

    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (1.0..LAST_NINES).log_scale(),
            (0.001..highest * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|nines| percentile_label(*nines))
        .draw()?;
    chart.draw_series(LineSeries::new(points, BLUE.stroke_width(2)))?;
    root.present()?;
    Ok(())
}

/// 10 -> "90%", 1000 -> "99.9%".
fn percentile_label(nines: f64) -> String {
    let percentile = 100.0 * (1.0 - 1.0 / nines);
    let text = format!("{percentile:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_labelled_by_their_nines() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(1000.0), "99.9%");
    }
}
