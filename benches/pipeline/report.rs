//! The bench table: each figure with its baseline or target, printed and saved with
//! the date and the machine's core count.

use std::fmt::Write;

struct Row {
    metric: String,
    value: String,
    against: String,
    ratio: String,
    target: String,
    /// None for a figure shown without a target (a contrast).
    met: Option<bool>,
}

pub struct Report {
    smoke: bool,
    rows: Vec<Row>,
    notes: Vec<String>,
    /// (figure, per second, the durability it carries).
    per_core: Vec<(String, f64, String)>,
}

/// Published figures of peers, as their projects state them: not measured here, on
/// other machines, with other durability.
const PEERS: &[&str] = &[
    "River: about 46k jobs/s (8-core M2, no-op jobs)",
    "Graphile Worker: about 183k jobs/s (i9-14900K, batched, unreplicated)",
    "Oban: about 16.7k jobs/s",
    "Sidekiq: 23.5k jobs/s",
];

impl Report {
    pub fn new(smoke: bool) -> Self {
        Self {
            smoke,
            rows: Vec::new(),
            notes: Vec::new(),
            per_core: Vec::new(),
        }
    }

    /// A throughput for the per-core summary, with the settings that make it true.
    pub fn per_core(&mut self, figure: &str, per_sec: f64, durability: &str) {
        self.per_core
            .push((figure.into(), per_sec, durability.into()));
    }

    /// A figure as a ratio against a baseline measured in the same run.
    pub fn ratio(&mut self, metric: &str, value: f64, baseline: &str, base: f64, target: f64) {
        let ratio = value / base;
        self.rows.push(Row {
            metric: metric.into(),
            value: format!("{value:.0}"),
            against: format!("{baseline}: {base:.0}"),
            ratio: format!("{ratio:.2}"),
            target: format!(">= {target}"),
            met: Some(ratio >= target),
        });
    }

    /// A figure as a ratio against a baseline, with no target: what something costs.
    pub fn contrast(&mut self, metric: &str, value: f64, baseline: &str, base: f64) {
        self.rows.push(Row {
            metric: metric.into(),
            value: format!("{value:.0}"),
            against: format!("{baseline}: {base:.0}"),
            ratio: format!("{:.2}", value / base),
            target: "-".into(),
            met: None,
        });
    }

    /// A figure with an upper bound (latency, errors, memory).
    pub fn target_below(&mut self, metric: &str, value: f64, bound: f64, detail: String) {
        self.rows.push(Row {
            metric: metric.into(),
            value: format!("{value:.1}"),
            against: detail,
            ratio: "-".into(),
            target: format!("< {bound}"),
            met: Some(value < bound),
        });
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    fn render(&self) -> String {
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let mut out = String::new();
        let kind = if self.smoke {
            "bench-smoke (tiny sizes: figures are not meaningful)"
        } else {
            "bench"
        };
        let _ = writeln!(out, "### ppctl {kind}, {date}, {cores} cores\n");
        let _ = writeln!(
            out,
            "| metric | ppctl | baseline / detail | ratio | target | met |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for r in &self.rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {met} |",
                r.metric, r.value, r.against, r.ratio, r.target
            );
        }
        out.push('\n');
        if !self.per_core.is_empty() {
            let _ = writeln!(out, "Per core ({cores} cores):\n");
            let _ = writeln!(out, "| figure | per s | per core | durability |");
            let _ = writeln!(out, "|---|---|---|---|");
            for (figure, per_sec, durability) in &self.per_core {
                let per_core = per_sec / cores.max(1) as f64;
                let _ = writeln!(
                    out,
                    "| {figure} | {per_sec:.0} | {per_core:.0} | {durability} |"
                );
            }
            let _ = writeln!(
                out,
                "\nPeers, as published by their projects (not measured here): {}.\n",
                PEERS.join("; ")
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "- {n}");
        }
        out
    }

    pub fn print(&self) {
        println!("{}", self.render());
    }

    /// A phase run alone (`--only`): to target/, so a partial table never replaces the
    /// full run's in bench/results.
    pub fn save_alone(&self, name: &str) -> std::io::Result<()> {
        std::fs::write(format!("target/bench-{name}.md"), self.render())
    }

    /// Full runs go to bench/results (latest.md, and appended to history.md); smoke
    /// runs only to target/.
    pub fn save(&self, smoke: bool) -> std::io::Result<()> {
        let text = self.render();
        if smoke {
            return std::fs::write("target/bench-smoke.md", text);
        }
        std::fs::create_dir_all("bench/results")?;
        std::fs::write("bench/results/latest.md", &text)?;
        let mut history = std::fs::read_to_string("bench/results/history.md").unwrap_or_default();
        history.push_str(&text);
        history.push('\n');
        std::fs::write("bench/results/history.md", history)
    }
}
