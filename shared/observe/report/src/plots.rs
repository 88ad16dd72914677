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

/// A small line of `values` (NaN: no point), drawn by hand: 120 × 28, no axes.
pub fn sparkline(values: &[f64], label: &str) -> String {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let n = values.len().max(2) - 1;
    let mut points = String::new();
    let mut dots = String::new();
    for (i, v) in values.iter().enumerate() {
        if v.is_finite() {
            let x = 3.0 + 114.0 * i as f64 / n as f64;
            let y = 25.0 - 22.0 * (v - if hi > lo { lo } else { v - 0.5 }) / span;
            points.push_str(&format!("{x:.1},{y:.1} "));
            dots = format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"#0969da\"/>");
        }
    }
    // The line, and a dot on the latest value (a single value is a dot alone).
    format!(
        "<svg role=\"img\" aria-label=\"{}\" viewBox=\"0 0 120 28\" width=\"120\" height=\"28\" class=\"spark\"><polyline fill=\"none\" stroke=\"#0969da\" stroke-width=\"2\" points=\"{}\"/>{dots}</svg>",
        label.replace('"', "'").replace('<', "&lt;"),
        points.trim_end()
    )
}

/// One line per series over days, values in [0, 1] (NaN: no point that day).
pub fn daily(days: &[String], series: &[(String, Vec<f64>)], label: &str) -> String {
    let n = days.len().max(2);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 300)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..(n - 1) as f64, 0.0f64..1.05);
        let Ok(mut chart) = chart else {
            return String::new();
        };
        let _ = chart
            .configure_mesh()
            .x_labels(6)
            .x_label_formatter(&|x| days.get(x.round() as usize).cloned().unwrap_or_default())
            .light_line_style(WHITE)
            .draw();
        for (i, (name, values)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(x, v)| (x as f64, v.clamp(0.0, 1.05)))
                .collect();
            if let Ok(s) = chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            {
                s.label(name.as_str()).legend(move |(x, y)| {
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
    let names: Vec<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
    accessible(
        svg,
        &format!(
            "{label}, {} to {}: {}",
            days.first().map_or("", |d| d),
            days.last().map_or("", |d| d),
            names.join(", ")
        ),
    )
}

/// Clusters this many get a colour of their own on the map; the rest are grey.
pub const MAP_COLOURS: usize = 10;

/// The night's 2-D map: each trace a dot coloured by its cluster (noise in light grey),
/// the largest clusters numbered at their centre as the table numbers them.
pub fn cluster_map(
    clusters: &[&agentwire_cluster::ClusterRecord],
    members: &[&agentwire_cluster::Member],
) -> String {
    if members.is_empty() {
        return String::new();
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for m in members {
        x0 = x0.min(m.x);
        x1 = x1.max(m.x);
        y0 = y0.min(m.y);
        y1 = y1.max(m.y);
    }
    let pad = |a: f32, b: f32| ((b - a).max(1e-3)) * 0.05;
    let (px, py) = (pad(x0, x1), pad(y0, y1));
    let colour: std::collections::HashMap<&str, usize> = clusters
        .iter()
        .take(MAP_COLOURS)
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 480)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root).margin(12).build_cartesian_2d(
            f64::from(x0 - px)..f64::from(x1 + px),
            f64::from(y0 - py)..f64::from(y1 + py),
        );
        let Ok(mut chart) = chart else {
            return String::new();
        };
        let light = RGBColor(208, 215, 222);
        let _ = chart.draw_series(
            members
                .iter()
                .filter(|m| m.cluster.is_none())
                .map(|m| Circle::new((f64::from(m.x), f64::from(m.y)), 2, light.filled())),
        );
        for m in members.iter().filter(|m| m.cluster.is_some()) {
            let colour = m
                .cluster
                .as_deref()
                .and_then(|c| colour.get(c))
                .map_or(GREY.to_rgba(), |i| Palette99::pick(*i).to_rgba());
            let _ = chart.draw_series([Circle::new(
                (f64::from(m.x), f64::from(m.y)),
                3,
                colour.filled(),
            )]);
        }
        for (i, c) in clusters.iter().take(MAP_COLOURS).enumerate() {
            let _ = chart.draw_series([Text::new(
                format!("{}", i + 1),
                (f64::from(c.x), f64::from(c.y)),
                ("sans-serif", 18).into_font().color(&BLACK),
            )]);
        }
        let _ = root.present();
    }
    let named: Vec<String> = clusters
        .iter()
        .take(MAP_COLOURS)
        .enumerate()
        .map(|(i, c)| format!("{} {} ({} traces)", i + 1, c.label, c.size))
        .collect();
    accessible(
        svg,
        &format!(
            "Map of {} traces by similarity; clusters numbered as in the table: {}",
            members.len(),
            named.join("; ")
        ),
    )
}
