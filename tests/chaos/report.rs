//! The chaos table: one row per scenario, what went wrong, and its rendering.

use std::fmt::Write;
use std::time::Duration;

/// One line of the chaos table, plus what went wrong.
#[derive(Debug, Default, Clone)]
pub struct Row {
    pub scenario: String,
    /// Demands sent: by the producer (--count), by the suite itself, or POST /works.
    pub published: u64,
    /// Confirmed by the broker (or 201 from the API).
    pub confirmed: u64,
    /// Works in the database.
    pub stored: u64,
    /// Demands with more than one work, works completed more than once.
    pub duplicates: u64,
    /// Confirmed good demands without a finished work.
    pub lost: u64,
    pub dead_lettered: u64,
    /// Longest time the done count stood still while demands were outstanding.
    pub stall: Option<f64>,
    pub recovery: Option<f64>,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

impl Row {
    pub fn new(scenario: &str) -> Self {
        Self {
            scenario: scenario.into(),
            ..Self::default()
        }
    }

    pub fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }

    pub fn check(&mut self, ok: bool, p: impl FnOnce() -> String) {
        if !ok {
            self.problem(p());
        }
    }
}

pub fn render(rows: &[Row], elapsed: Duration) -> String {
    let mut out = String::new();
    let header = [
        "scenario",
        "published",
        "confirmed",
        "stored",
        "duplicates",
        "lost",
        "dead-lettered",
        "longest stall s",
        "recovery s",
        "result",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.scenario.clone(),
                r.published.to_string(),
                r.confirmed.to_string(),
                r.stored.to_string(),
                r.duplicates.to_string(),
                r.lost.to_string(),
                r.dead_lettered.to_string(),
                r.stall.map_or("-".into(), |s| format!("{s:.2}")),
                r.recovery.map_or("-".into(), |s| format!("{s:.2}")),
                if r.problems.is_empty() { "ok" } else { "FAIL" }.into(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |out: &mut String, row: &[String]| {
        let parts: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        let _ = writeln!(out, "| {} |", parts.join(" | "));
    };
    line(&mut out, &header.map(String::from));
    let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let _ = writeln!(out, "|-{}-|", sep.join("-|-"));
    for c in &cells {
        line(&mut out, c);
    }
    let _ = writeln!(out, "total time: {:.0}s", elapsed.as_secs_f64());
    for r in rows {
        for n in &r.notes {
            let _ = writeln!(out, "note [{}]: {n}", r.scenario);
        }
    }
    for r in rows {
        for p in &r.problems {
            let _ = writeln!(out, "FAIL [{}]: {p}", r.scenario);
        }
    }
    out
}
