//! The loss curves of a run as an SVG chart (`--plot FILE.svg` while running, `nst plot
//! LOG.jsonl FILE.svg` afterwards): the total and the three unweighted terms against the
//! evaluation number, on a log scale, with the coarse-to-fine stage boundaries marked. Drawn
//! with `plotters`' SVG backend, written atomically.

use crate::image_io::{write_atomically, ImageIoError};
use plotters::prelude::*;
use std::path::Path;

/// One evaluation's losses, as the run reports them and `--log-json` records them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossPoint {
    /// Evaluation number, 1-based, counted over all stages.
    pub eval: usize,
    /// The total `α·L_c + β·L_s + γ·L_tv`.
    pub total: f32,
    /// `L_c`, unweighted.
    pub content: f32,
    /// `L_s`, unweighted.
    pub style: f32,
    /// `L_tv`, unweighted.
    pub tv: f32,
    /// Coarse-to-fine stage, 1-based.
    pub stage: usize,
    /// The stage's image width and height.
    pub size: (u32, u32),
}

/// Drawing or writing the chart failed.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Nothing to draw.
    #[error("no evaluations to plot")]
    Empty,
    /// `plotters` could not draw.
    #[error("cannot draw the chart: {0}")]
    Draw(String),
    /// The file could not be written.
    #[error(transparent)]
    Write(#[from] ImageIoError),
}

/// Chart size in pixels.
const SIZE: (u32, u32) = (960, 560);

/// Draws `points` to the SVG file `path` (see the module documentation). Terms that are zero or
/// not finite at an evaluation (a log scale cannot show them) leave a gap there; lines are not
/// joined across stages.
pub fn write_loss_svg(points: &[LossPoint], path: &Path) -> Result<(), PlotError> {
    let svg = loss_svg(points)?;
    write_atomically(path, svg.as_bytes())?;
    Ok(())
}

/// The chart of [`write_loss_svg`] as SVG text.
pub fn loss_svg(points: &[LossPoint]) -> Result<String, PlotError> {
    type Term = (&'static str, fn(&LossPoint) -> f32, RGBColor);
    let terms: [Term; 4] = [
        ("total", |p| p.total, BLACK),
        ("content Lc", |p| p.content, RGBColor(0x1f, 0x77, 0xb4)),
        ("style Ls", |p| p.style, RGBColor(0xd6, 0x27, 0x28)),
        ("tv Ltv", |p| p.tv, RGBColor(0x2c, 0xa0, 0x2c)),
    ];
    let shown = |v: f32| v.is_finite() && v > 0.0;
    let values = points
        .iter()
        .flat_map(|p| terms.iter().map(move |t| (t.1)(p)))
        .filter(|&v| shown(v));
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v as f64), hi.max(v as f64))
    });
    if points.is_empty() || !lo.is_finite() {
        return Err(PlotError::Empty);
    }
    // A decade of room on each side keeps flat curves off the frame.
    let (lo, hi) = (lo / 2.0, hi * 2.0);
    let last = points.iter().map(|p| p.eval).max().unwrap_or(1).max(2);
    let draw = |e: String| PlotError::Draw(e);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Loss per evaluation", ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d(1f64..last as f64, (lo..hi).log_scale())
            .map_err(|e| draw(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("evaluation")
            .y_desc("loss (log scale)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()
            .map_err(|e| draw(e.to_string()))?;
        for (name, value, color) in terms {
            // One line per run of consecutive drawable values within a stage (stages are
            // different problems: their losses are not joined).
            let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for (i, p) in points.iter().enumerate() {
                let v = value(p);
                let new_stage = i > 0 && points[i - 1].stage != p.stage;
                if new_stage && !runs.last().expect("one run").is_empty() {
                    runs.push(Vec::new());
                }
                if shown(v) {
                    runs.last_mut()
                        .expect("one run")
                        .push((p.eval as f64, v as f64));
                } else if !runs.last().expect("one run").is_empty() {
                    runs.push(Vec::new());
                }
            }
            let style = ShapeStyle::from(&color).stroke_width(2);
            let mut first = true;
            for run in runs.into_iter().filter(|r| !r.is_empty()) {
                let series = chart
                    .draw_series(LineSeries::new(run, style))
                    .map_err(|e| draw(e.to_string()))?;
                if std::mem::take(&mut first) {
                    series
                        .label(name)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
                }
            }
        }
        // Stage boundaries: a dashed line before the first evaluation of each later stage.
        for pair in points.windows(2).filter(|w| w[1].stage != w[0].stage) {
            let x = pair[1].eval as f64 - 0.5;
            let grey = ShapeStyle::from(&RGBColor(0x70, 0x70, 0x70)).stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(vec![(x, lo), (x, hi)], 6, 4, grey))
                .map_err(|e| draw(e.to_string()))?;
            let (w, h) = pair[1].size;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" stage {} ({w}×{h})", pair[1].stage),
                    (x, hi / 4.0),
                    ("sans-serif", 14).into_font().color(&grey.color),
                )))
                .map_err(|e| draw(e.to_string()))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| draw(e.to_string()))?;
        root.present().map_err(|e| draw(e.to_string()))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(eval: usize, stage: usize) -> LossPoint {
        LossPoint {
            eval,
            total: 1e6 / eval as f32,
            content: 10.0 * eval as f32,
            style: 2e3 / eval as f32,
            // Zero (undrawable on a log scale) at every seventh evaluation: gaps in its line.
            tv: if eval.is_multiple_of(7) { 0.0 } else { 5.0 },
            stage,
            size: (256 * stage as u32, 192 * stage as u32),
        }
    }

    #[test]
    fn the_chart_has_each_term_and_the_stage_boundary() {
        let points: Vec<_> = (1..=30)
            .map(|e| point(e, if e <= 20 { 1 } else { 2 }))
            .collect();
        let svg = loss_svg(&points).expect("drawn");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for label in [
            "total",
            "content Lc",
            "style Ls",
            "tv Ltv",
            "evaluation",
            "stage 2 (512×384)",
        ] {
            assert!(svg.contains(label), "missing {label}");
        }
        // total, content, style, and tv in five pieces (gaps at 7, 14, 21, 28).
        assert!(
            svg.matches("<polyline").count() >= 3 + 5,
            "{}",
            svg.matches("<polyline").count()
        );
    }

    #[test]
    fn one_stage_has_no_boundary() {
        let points: Vec<_> = (1..=10).map(|e| point(e, 1)).collect();
        let svg = loss_svg(&points).expect("drawn");
        assert!(!svg.contains("stage "));
    }

    #[test]
    fn nothing_to_plot_is_an_error() {
        assert!(matches!(loss_svg(&[]), Err(PlotError::Empty)));
        let mut p = point(1, 1);
        (p.total, p.content, p.style, p.tv) = (0.0, f32::NAN, 0.0, -1.0);
        assert!(matches!(loss_svg(&[p]), Err(PlotError::Empty)));
    }
}
