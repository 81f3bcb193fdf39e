//! The p50 and p99 of a benchmark's samples, as the scale benchmarks print them.

use std::time::Duration;

use serde_json::json;

/// Microseconds per second, for [`p50_p99`].
#[allow(dead_code, reason = "scale_log reports milliseconds only")]
pub(crate) const MICROSECONDS: f64 = 1e6;
/// Milliseconds per second, for [`p50_p99`].
#[allow(dead_code, reason = "only scale_log reports milliseconds")]
pub(crate) const MILLISECONDS: f64 = 1e3;

/// `{"p50": …, "p99": …}` of `samples`, in units of which a second holds `per_second`
/// ([`MICROSECONDS`] or [`MILLISECONDS`]).
pub(crate) fn p50_p99(mut samples: Vec<Duration>, per_second: f64) -> serde_json::Value {
    samples.sort();
    let at = |p: f64| {
        let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[index].as_secs_f64() * per_second
    };
    json!({ "p50": at(0.5), "p99": at(0.99) })
}
