//! Request counters and latency, exposed in Prometheus text format by `/metrics`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum_seconds: f64,
    /// Cumulative counts per bucket of BUCKETS.
    buckets: [u64; BUCKETS.len()],
}

#[derive(Default)]
pub struct Metrics {
    /// Keyed by (method, route pattern, status): patterns keep the label set bounded.
    requests: Mutex<BTreeMap<(String, String, u16), Series>>,
    works_created: AtomicU64,
}

impl Metrics {
    pub fn work_created(&self) {
        self.works_created.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe(&self, method: &str, route: String, status: u16, seconds: f64) {
        let Ok(mut map) = self.requests.lock() else {
            return;
        };
        let series = map.entry((method.to_string(), route, status)).or_default();
        series.count += 1;
        series.sum_seconds += seconds;
        for (bucket, bound) in series.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    /// Appends this process's series in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# TYPE ppctl_works_created_total counter");
        let _ = writeln!(
            out,
            "ppctl_works_created_total {}",
            self.works_created.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE ppctl_http_request_duration_seconds histogram");
        let Ok(map) = self.requests.lock() else {
            return;
        };
        for ((method, route, status), s) in map.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
            for (count, bound) in s.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "ppctl_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "ppctl_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "ppctl_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum_seconds
            );
            let _ = writeln!(
                out,
                "ppctl_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
    }
}

/// The method as a label: exotic ones share one, so they cannot grow the series.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: times every request and counts it by route pattern and status.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let metrics = req
        .app_data::<web::Data<super::AppState>>()
        .map(|s| s.metrics.clone());
    let response = next.call(req).await?;
    if let Some(metrics) = metrics {
        // The route is known only after routing; unmatched paths share one label so a
        // scanner cannot grow the series without bound.
        let route = response
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string());
        let method = method_label(response.request().method());
        metrics.observe(
            method,
            route,
            response.status().as_u16(),
            start.elapsed().as_secs_f64(),
        );
    }
    Ok(response)
}
