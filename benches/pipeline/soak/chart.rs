//! The soak's chart as SVG, drawn here (no plotting tool to install): RSS per process,
//! RSS relative to its level after warm-up (where a leak shows as a slope), and p99.

use super::sample::{series, Sample, NAMES};
use std::fmt::Write;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 30.0;
const GAP: f64 = 50.0;
const COLORS: [&str; 3] = ["#1f77b4", "#d62728", "#2ca02c"];

type Points = Vec<(f64, f64)>;

struct Line {
    name: String,
    points: Points,
}

struct Panel<'a> {
    title: &'a str,
    lines: Vec<Line>,
    /// Log scale, for latencies that span sub-millisecond to seconds.
    log: bool,
}

fn panels(samples: &[Sample]) -> [Panel<'static>; 3] {
    let rss = |i: usize| series(samples, move |s| Some(s.rss_kib[i] as f64 / 1024.0));
    let lines = |f: fn(Points) -> Points| {
        (0..NAMES.len())
            .map(|i| Line {
                name: NAMES[i].to_string(),
                points: f(rss(i)),
            })
            .collect()
    };
    let p99 = |name: &str, f: fn(&Sample) -> Option<f64>| Line {
        name: name.to_string(),
        points: series(samples, f),
    };
    [
        Panel {
            title: "RSS (MiB)",
            lines: lines(|p| p),
            log: false,
        },
        Panel {
            title: "RSS minus its mean over the middle third (KiB)",
            lines: lines(|p| {
                let base = super::verdict::trend(&p).map_or(0.0, |t| t.middle);
                p.iter().map(|&(t, v)| (t, (v - base) * 1024.0)).collect()
            }),
            log: false,
        },
        Panel {
            title: "p99 per 10 s interval (ms, log scale)",
            lines: vec![
                p99("GET", |s| Some(s.get.p99_ms)),
                p99("POST /works", |s| Some(s.post.p99_ms)),
                p99("publish → done", |s| s.done_p99_ms),
            ],
            log: true,
        },
    ]
}

/// The y range with a margin, and the ticks to label.
fn scale(panel: &Panel) -> (f64, f64, Vec<f64>) {
    let values = panel
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if panel.log {
        let (lo, hi) = (lo.max(0.01).log10().floor(), hi.max(0.1).log10().ceil());
        let hi = hi.max(lo + 1.0);
        let ticks = (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect();
        return (lo, hi, ticks);
    }
    // About four steps of 1, 2 or 5 times a power of ten, the range rounded out to them.
    let pad = ((hi - lo) * 0.1).max(0.5);
    let raw = (hi - lo + 2.0 * pad) / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .map(|m| m * magnitude)
        .into_iter()
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let (lo, hi) = (((lo - pad) / step).floor(), ((hi + pad) / step).ceil());
    let ticks = (0..=(hi - lo) as i64)
        .map(|i| (lo + i as f64) * step)
        .collect();
    (lo * step, hi * step, ticks)
}

fn draw(out: &mut String, panel: &Panel, top: f64, t_max: f64) {
    let (lo, hi, ticks) = scale(panel);
    let plot_w = WIDTH - LEFT - RIGHT;
    let y = |v: f64| {
        let v = if panel.log { v.max(0.01).log10() } else { v };
        top + PANEL - (v - lo) / (hi - lo) * PANEL
    };
    let x = |t: f64| LEFT + t / t_max * plot_w;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
        top - 8.0,
        panel.title
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#888"/>"##
    );
    for tick in ticks {
        let ty = y(tick);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{ty:.1}" y2="{ty:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            ty + 4.0,
            label(tick)
        );
    }
    let minutes = (t_max / 60.0).ceil() as u64;
    let step = (minutes / 10).max(1);
    for m in (0..=minutes).step_by(step as usize) {
        let tx = x(m as f64 * 60.0);
        if tx <= LEFT + plot_w + 0.5 {
            let _ = writeln!(
                out,
                r#"<text x="{tx:.1}" y="{}" text-anchor="middle">{m} min</text>"#,
                top + PANEL + 16.0
            );
        }
    }
    for (i, line) in panel.lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = line
            .points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            path.join(" ")
        );
        let ly = top + 16.0 + i as f64 * 18.0;
        let _ = writeln!(
            out,
            r#"<rect x="{}" y="{}" width="12" height="3" fill="{color}"/><text x="{}" y="{ly}">{}</text>"#,
            LEFT + plot_w + 12.0,
            ly - 5.0,
            LEFT + plot_w + 30.0,
            line.name
        );
    }
}

fn label(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn render(samples: &[Sample]) -> String {
    let t_max = samples.last().map_or(1.0, |s| s.at_s.max(1.0));
    let panels = panels(samples);
    let height = TOP + panels.len() as f64 * (PANEL + GAP);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    for (i, panel) in panels.iter().enumerate() {
        draw(&mut out, panel, TOP + i as f64 * (PANEL + GAP), t_max);
    }
    out.push_str("</svg>\n");
    out
}
