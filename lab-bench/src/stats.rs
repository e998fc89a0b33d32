//! Medians, p99s and throughputs, as the report prints them.

use std::time::Duration;

use crate::client::Seen;

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub median_ms: f64,
    pub p99_ms: f64,
    pub n: usize,
}

impl Stats {
    /// Panics on an empty sample: every scenario measures at least once.
    pub fn of(mut xs: Vec<Duration>) -> Stats {
        assert!(!xs.is_empty(), "no samples");
        xs.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let n = xs.len();
        Stats {
            median_ms: ms(xs[n / 2]),
            p99_ms: ms(xs[((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1]),
            n,
        }
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Throughput {
    pub messages: u64,
    /// Lines of output received: a gateway that drops output shows here.
    #[serde(default)]
    pub lines: u64,
    /// Whether the cell's idle status arrived; rates then cover what arrived
    /// until the last message.
    #[serde(default = "yes")]
    pub complete: bool,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub seconds: f64,
}

impl Throughput {
    pub fn of(seen: &Seen) -> Throughput {
        let secs = seen.elapsed.as_secs_f64();
        Throughput {
            messages: seen.messages,
            lines: seen.lines,
            complete: seen.complete,
            msgs_per_s: seen.messages as f64 / secs,
            mb_per_s: seen.bytes as f64 / secs / 1e6,
            seconds: secs,
        }
    }
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99_of_a_hundred() {
        let s = Stats::of((1..=100).map(Duration::from_millis).collect());
        assert_eq!(s.n, 100);
        assert_eq!(s.median_ms, 51.0);
        assert_eq!(s.p99_ms, 99.0);
    }
}
