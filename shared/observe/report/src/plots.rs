//! The report's plots, drawn with plotters into SVG strings.

use std::collections::BTreeMap;

use agentwire_evals::Summary;
use agentwire_evals::compare::Comparison;
use agentwire_evals::run::lower_is_better;
use plotters::prelude::*;

const BLUE: RGBColor = RGBColor(9, 105, 218);
const GREY: RGBColor = RGBColor(140, 149, 159);

/// An SVG with an accessible name, sized by its viewBox (the page scales it).
fn accessible(svg: String, label: &str) -> String {
    svg.replacen(
        "<svg ",
        &format!(
            "<svg role=\"img\" aria-label=\"{}\" ",
            label.replace('"', "'")
        ),
        1,
    )
}

/// Dot and whisker per measure in [0, 1] (not latency or cost): this run's mean and
/// interval in blue, the baseline's in grey.
pub fn measures(summary: &Summary, baseline: Option<&Comparison>) -> String {
    let metrics: Vec<_> = summary
        .metrics
        .iter()
        .filter(|m| !lower_is_better(&m.name) && m.passed.is_some())
        .collect();
    let n = metrics.len().max(1);
    let height = 60 + 26 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, height)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(250)
            .build_cartesian_2d(-0.02f64..1.02, -0.5f64..(n as f64 - 0.5));
        let Ok(mut chart) = chart else {
            return String::new();
        };
        let names: Vec<String> = metrics.iter().map(|m| m.name.clone()).collect();
        let _ = chart
            .configure_mesh()
            .y_labels(n)
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("mean (95 % interval)")
            .light_line_style(WHITE)
            .draw();
        for (i, metric) in metrics.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            if let Some(before) = baseline.and_then(|c| c.measure(&metric.name)) {
                let at = y - 0.18;
                let _ = chart.draw_series(LineSeries::new(
                    [(before.a.ci.low, at), (before.a.ci.high, at)],
                    GREY.stroke_width(2),
                ));
                let _ = chart.draw_series([Circle::new((before.a.mean, at), 4, GREY.filled())]);
            }
            let at = if baseline.is_some() { y + 0.18 } else { y };
            if metric.ci.low.is_finite() && metric.ci.high.is_finite() {
                let _ = chart.draw_series(LineSeries::new(
                    [(metric.ci.low, at), (metric.ci.high, at)],
                    BLUE.stroke_width(2),
                ));
            }
            if metric.mean.is_finite() {
                let _ = chart.draw_series([Circle::new((metric.mean, at), 5, BLUE.filled())]);
            }
        }
        let _ = root.present();
    }
    // Reversed above so the first measure is at the top; the label formatter reads the
    // same order back.
    let order: Vec<&str> = metrics.iter().rev().map(|m| m.name.as_str()).collect();
    accessible(
        svg,
        &format!("Means with 95 % intervals of {}", order.join(", ")),
    )
}

/// One line per headline measure over runs (oldest first), values in [0, 1].
pub fn trend(history: &[(String, BTreeMap<String, f64>)]) -> String {
    let mut names: Vec<&String> = history.iter().flat_map(|(_, m)| m.keys()).collect();
    names.sort();
    names.dedup();
    let runs = history.len();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 320)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..(runs.max(2) - 1) as f64, 0.0f64..1.05);
        let Ok(mut chart) = chart else {
            return String::new();
        };
        let _ = chart
            .configure_mesh()
            .x_labels(runs.min(10))
            .x_label_formatter(&|x| format!("run {}", x.round() as i64 + 1))
            .light_line_style(WHITE)
            .draw();
        for (i, name) in names.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = history
                .iter()
                .enumerate()
                .filter_map(|(x, (_, means))| {
                    means
                        .get(*name)
                        .filter(|v| v.is_finite())
                        .map(|v| (x as f64, v.clamp(0.0, 1.05)))
                })
                .collect();
            if let Ok(series) =
                chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            {
                series.label(name.as_str()).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
            }
            let _ = chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())));
        }
        let _ = chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(GREY)
            .position(SeriesLabelPosition::LowerLeft)
            .draw();
        let _ = root.present();
    }
    accessible(
        svg,
        &format!(
            "Means of {} over the last {runs} runs",
            names
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}
