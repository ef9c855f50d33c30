//! Drawing reports as one self-contained SVG (no fonts or system libraries
//! needed): the latency percentile curve of every run that timed deliveries,
//! and delivered against offered deliveries/s for every ceiling run.

use std::fmt::Write as _;

use crate::report::{group, Report};

const W: f64 = 1100.0;
const H: f64 = 460.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A plotting area inside the picture.
struct Panel {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Panel {
    fn px(&self, fx: f64) -> f64 {
        self.x + fx.clamp(0.0, 1.0) * self.w
    }
    fn py(&self, fy: f64) -> f64 {
        self.y + self.h - fy.clamp(0.0, 1.0) * self.h
    }
}

/// The SVG document for `reports`: the median run of each scenario and
/// server; latency curves of the broadcast and echo runs, and the ceiling.
pub fn svg(reports: &[Report]) -> String {
    let reports = crate::summary::representative(reports);
    let reports = &reports[..];
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    latency_panel(&mut s, reports);
    ceiling_panel(&mut s, reports);
    s.push_str("</svg>\n");
    s
}

/// x position of a percentile on the "nines" scale: 90% → 1, 99% → 2, …
fn nines(p: f64) -> f64 {
    let rest = (1.0 - p / 100.0).max(1e-6);
    -rest.log10()
}

fn latency_panel(s: &mut String, reports: &[Report]) {
    let panel = Panel {
        x: 70.0,
        y: 40.0,
        w: 420.0,
        h: 340.0,
    };
    title(s, &panel, "Latency by percentile (log scale)");
    let series: Vec<Curve> = reports
        .iter()
        .filter(|r| r.scenario != "ceiling")
        .filter_map(|r| {
            let l = r.latency.as_ref()?;
            Some((
                format!("{} {}", r.label, r.scenario),
                l.curve.clone(),
                color_of(reports, &r.label),
                r.scenario == "echo",
            ))
        })
        .collect();
    if series.is_empty() {
        note(s, &panel, "no latency samples");
        return;
    }
    let lo_us = series
        .iter()
        .flat_map(|(_, c, _, _)| c.iter().map(|p| p.1))
        .min()
        .unwrap_or(1)
        .max(1) as f64;
    let hi_us = series
        .iter()
        .flat_map(|(_, c, _, _)| c.iter().map(|p| p.1))
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let (d0, d1) = (
        lo_us.log10().floor(),
        hi_us.log10().ceil().max(lo_us.log10().floor() + 1.0),
    );
    let fy = |us: f64| (us.max(1.0).log10() - d0) / (d1 - d0);
    let max_x = 6.0;
    frame(s, &panel);
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let x = panel.px(i as f64 / max_x);
        tick_x(s, &panel, x, label);
    }
    let mut d = d0;
    while d <= d1 {
        let y = panel.py(fy(10f64.powf(d)));
        tick_y(s, &panel, y, &duration_label(10f64.powf(d)));
        d += 1.0;
    }
    axis_labels(s, &panel, "percentile", "latency");
    for (i, (name, curve, color, dashed)) in series.iter().enumerate() {
        let dash = if *dashed {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let points: Vec<String> = curve
            .iter()
            .filter(|(p, _)| *p < 100.0)
            .map(|&(p, us)| {
                format!(
                    "{:.1},{:.1}",
                    panel.px(nines(p) / max_x),
                    panel.py(fy(us as f64))
                )
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
            points.join(" ")
        );
        legend(s, &panel, i, color, name);
    }
}

fn ceiling_panel(s: &mut String, reports: &[Report]) {
    let panel = Panel {
        x: 640.0,
        y: 40.0,
        w: 420.0,
        h: 340.0,
    };
    title(s, &panel, "Ceiling: delivered vs offered deliveries/s");
    let runs: Vec<&Report> = reports.iter().filter(|r| !r.steps.is_empty()).collect();
    if runs.is_empty() {
        note(s, &panel, "no ceiling run");
        return;
    }
    // Log-log: baselines near 10^5 and fast servers near 10^6..10^7 share it.
    let values = || {
        runs.iter()
            .flat_map(|r| r.steps.iter())
            .flat_map(|st| [st.offered_deliveries_per_s, st.deliveries_per_s])
            .filter(|v| *v > 0.0)
    };
    let lo = values().fold(f64::MAX, f64::min).max(1.0).log10().floor();
    let hi = values().fold(1.0, f64::max).log10().ceil().max(lo + 1.0);
    let f = |v: f64| (v.max(1.0).log10() - lo) / (hi - lo);
    frame(s, &panel);
    let mut d = lo;
    while d <= hi {
        let v = 10f64.powf(d);
        tick_x(s, &panel, panel.px(f(v)), &short(v));
        tick_y(s, &panel, panel.py(f(v)), &short(v));
        d += 1.0;
    }
    axis_labels(s, &panel, "offered deliveries/s (log)", "delivered/s (log)");
    let _ = writeln!(
        s,
        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="4 4"/>"##,
        panel.px(0.0),
        panel.py(0.0),
        panel.px(1.0),
        panel.py(1.0)
    );
    for (i, r) in runs.iter().enumerate() {
        let color = color_of(reports, &r.label);
        // Runs coincide on the diagonal until they fall off it: earlier ones
        // are drawn wider so later ones on top leave them visible.
        let width = (6.0 - 2.0 * i as f64).max(1.5);
        let radius = (7.0 - 1.5 * i as f64).max(3.0);
        let points: Vec<(f64, f64, bool)> = r
            .steps
            .iter()
            .map(|st| {
                (
                    panel.px(f(st.offered_deliveries_per_s)),
                    panel.py(f(st.deliveries_per_s)),
                    st.sustained,
                )
            })
            .collect();
        let line: Vec<String> = points
            .iter()
            .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="{width:.1}" points="{}"/>"#,
            line.join(" ")
        );
        for (x, y, ok) in points {
            let fill = if ok { color } else { "white" };
            let _ = writeln!(
                s,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="{radius:.1}" fill="{fill}" stroke="{color}" stroke-width="2"/>"#
            );
        }
        let best = r.max_sustained_deliveries_per_s.unwrap_or(0.0);
        legend(
            s,
            &panel,
            i,
            color,
            &format!("{} (max sustained {}/s)", r.label, group(best as u64)),
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" fill="#555">hollow = step missed (delivery or p99)</text>"##,
        panel.x,
        panel.y + panel.h + 62.0
    );
}

/// A latency curve: legend, `[percentile, µs]` points, the colour of its
/// server, and whether to dash it (echo).
type Curve = (String, Vec<(f64, u64)>, &'static str, bool);

/// One colour per server label, the same in both panels.
fn color_of(reports: &[Report], label: &str) -> &'static str {
    let mut labels: Vec<&str> = Vec::new();
    for r in reports {
        if !labels.contains(&r.label.as_str()) {
            labels.push(&r.label);
        }
    }
    let i = labels.iter().position(|l| *l == label).unwrap_or(0);
    COLORS[i % COLORS.len()]
}

fn title(s: &mut String, p: &Panel, text: &str) {
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
        p.x,
        p.y - 14.0,
        escape(text)
    );
}

fn note(s: &mut String, p: &Panel, text: &str) {
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" fill="#777">{}</text>"##,
        p.x + 10.0,
        p.y + 30.0,
        escape(text)
    );
}

fn frame(s: &mut String, p: &Panel) {
    let _ = writeln!(
        s,
        r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#333"/>"##,
        p.x, p.y, p.w, p.h
    );
}

fn tick_x(s: &mut String, p: &Panel, x: f64, label: &str) {
    let _ = writeln!(
        s,
        r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
        p.y,
        p.y + p.h,
        p.y + p.h + 16.0,
        escape(label)
    );
}

fn tick_y(s: &mut String, p: &Panel, y: f64, label: &str) {
    let _ = writeln!(
        s,
        r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
        p.x,
        p.x + p.w,
        p.x - 6.0,
        y + 4.0,
        escape(label)
    );
}

fn axis_labels(s: &mut String, p: &Panel, x: &str, y: &str) {
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        p.x + p.w / 2.0,
        p.y + p.h + 34.0,
        escape(x)
    );
    let (yx, yy) = (p.x - 52.0, p.y + p.h / 2.0);
    let _ = writeln!(
        s,
        r#"<text x="{yx:.1}" y="{yy:.1}" text-anchor="middle" transform="rotate(-90 {yx:.1} {yy:.1})">{}</text>"#,
        escape(y)
    );
}

fn legend(s: &mut String, p: &Panel, i: usize, color: &str, name: &str) {
    let y = p.y + 16.0 + i as f64 * 16.0;
    let _ = writeln!(
        s,
        r#"<rect x="{:.1}" y="{:.1}" width="14" height="4" fill="{color}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
        p.x + 10.0,
        y - 4.0,
        p.x + 30.0,
        y,
        escape(name)
    );
}

/// 1 → "1µs", 1000 → "1ms", 1e6 → "1s".
fn duration_label(us: f64) -> String {
    if us >= 1e6 {
        format!("{}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{}ms", us / 1e3)
    } else {
        format!("{us}µs")
    }
}

/// 1500000 → "1.5M".
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Step;
    use crate::stats::LatencySummary;

    fn with_latency(label: &str) -> Report {
        Report {
            latency: Some(LatencySummary {
                samples: 3,
                mean_us: 200.0,
                p50_us: 150,
                p90_us: 300,
                p99_us: 900,
                p999_us: 1200,
                max_us: 5000,
                curve: vec![(0.0, 100), (50.0, 150), (99.0, 900), (100.0, 5000)],
            }),
            ..Report::new("broadcast", label, "ws://127.0.0.1:1/")
        }
    }

    #[test]
    fn draws_a_curve_per_timed_run_and_a_line_per_ceiling() {
        let mut ceiling = Report::new("ceiling", "seed-node", "ws://127.0.0.1:2/");
        ceiling.steps = vec![
            Step {
                offered_deliveries_per_s: 100_000.0,
                deliveries_per_s: 100_000.0,
                sustained: true,
                ..Step::default()
            },
            Step {
                offered_deliveries_per_s: 200_000.0,
                deliveries_per_s: 150_000.0,
                sustained: false,
                ..Step::default()
            },
        ];
        let doc = svg(&[
            with_latency("attractio"),
            with_latency("seed<node>"),
            ceiling,
        ]);
        assert!(doc.starts_with("<svg"));
        assert!(doc.trim_end().ends_with("</svg>"));
        assert_eq!(doc.matches("<polyline").count(), 2 + 1);
        assert_eq!(doc.matches("<circle").count(), 2);
        assert!(doc.contains("seed&lt;node&gt;"), "labels are escaped");
    }

    #[test]
    fn empty_panels_say_so() {
        let doc = svg(&[]);
        assert!(doc.contains("no latency samples"));
        assert!(doc.contains("no ceiling run"));
    }

    #[test]
    fn scales_round_to_readable_values() {
        assert_eq!(short(1_500_000.0), "1.5M");
        assert_eq!(duration_label(1000.0), "1ms");
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
    }
}
