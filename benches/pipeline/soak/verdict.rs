//! Warm-up or leak: the first third of a soak is warm-up (pools opening, caches and the
//! allocator's arenas filling); a process that still grows from the middle third to the
//! last, with a rising slope across both, is growing without bound.

/// A series' level in each third of the soak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    pub first: f64,
    /// Mean of the middle third: the level after warm-up.
    pub middle: f64,
    /// Mean of the last third.
    pub last: f64,
    pub end: f64,
    /// Least-squares slope after warm-up (middle and last thirds), per minute.
    pub slope_per_min: f64,
}

/// Growth from the middle third to the last above this share of the level is growth
/// (a page or two of RSS is noise, a percent is not).
const GROWTH_SHARE: f64 = 0.01;
/// Median p99 of the last third above this many times the middle third's is a rise;
/// `P99_SLACK_MS` keeps sub-millisecond figures from counting a 0.2 ms wobble.
const P99_RATIO: f64 = 1.5;
const P99_SLACK_MS: f64 = 1.0;

fn mean(xs: &[(f64, f64)]) -> f64 {
    xs.iter().map(|p| p.1).sum::<f64>() / xs.len() as f64
}

fn median(xs: &[(f64, f64)]) -> f64 {
    let mut v: Vec<f64> = xs.iter().map(|p| p.1).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Least squares over (seconds, value), per minute.
fn slope(xs: &[(f64, f64)]) -> f64 {
    let n = xs.len() as f64;
    let (mt, mv) = (xs.iter().map(|p| p.0).sum::<f64>() / n, mean(xs));
    let cov: f64 = xs.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum();
    let var: f64 = xs.iter().map(|p| (p.0 - mt).powi(2)).sum();
    if var == 0.0 {
        0.0
    } else {
        cov / var * 60.0
    }
}

/// The thirds of `points` (seconds, value); None with fewer than three.
fn thirds(points: &[(f64, f64)]) -> Option<[&[(f64, f64)]; 3]> {
    let n = points.len();
    (n >= 3).then(|| {
        [
            &points[..n / 3],
            &points[n / 3..2 * n / 3],
            &points[2 * n / 3..],
        ]
    })
}

pub fn trend(points: &[(f64, f64)]) -> Option<Trend> {
    let [first, middle, last] = thirds(points)?;
    Some(Trend {
        first: mean(first),
        middle: mean(middle),
        last: mean(last),
        end: points.last()?.1,
        slope_per_min: slope(&points[points.len() / 3..]),
    })
}

/// Whether memory still grew after warm-up: the last third above the middle third by
/// more than `GROWTH_SHARE`, and a positive slope across both.
pub fn grew(t: &Trend) -> bool {
    t.last - t.middle > GROWTH_SHARE * t.middle && t.slope_per_min > 0.0
}

/// (median p99 of the middle third, of the last third, whether it stayed flat).
pub fn p99_flat(points: &[(f64, f64)]) -> Option<(f64, f64, bool)> {
    let [_, middle, last] = thirds(points)?;
    let (m, l) = (median(middle), median(last));
    Some((m, l, l <= m * P99_RATIO + P99_SLACK_MS))
}

/// Checks the verdict on known shapes at the start of every soak (a harness=false bench
/// has no test harness): a plateau after warm-up is not growth, a ramp is, and a p99
/// that quadruples in the last third is not flat.
pub fn self_check() {
    let series = |f: &dyn Fn(f64) -> f64| -> Vec<(f64, f64)> {
        (1..=60)
            .map(|i| (f64::from(i) * 10.0, f(f64::from(i))))
            .collect()
    };
    let plateau = trend(&series(&|i| 18_000.0 + 400.0 * (i / 10.0).min(1.0)));
    assert!(plateau.is_some_and(|t| !grew(&t)), "{plateau:?}");
    let ramp = trend(&series(&|i| 18_000.0 + 20.0 * i));
    assert!(
        ramp.is_some_and(|t| grew(&t) && (t.slope_per_min - 120.0).abs() < 1e-6),
        "{ramp:?}"
    );
    let flat = p99_flat(&series(&|i| 5.0 + i % 3.0));
    assert!(flat.is_some_and(|f| f.2), "{flat:?}");
    let rising = p99_flat(&series(&|i| if i > 40.0 { 20.0 } else { 5.0 }));
    assert!(rising.is_some_and(|f| !f.2), "{rising:?}");
}
