//! Usage reports from the ledger: GPU-seconds and CPU-seconds per day or
//! week, per group or user, as JSON rows, CSV, or an SVG chart for the ops
//! pages.
//!
//! The ledger itself is the `usage` table (see [`crate::store`]): one row per
//! kernel, opened when admission gives it resources and closed when it stops.
//! A report clips each row to the buckets it overlaps, so a kernel running
//! across midnight counts on both days.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use crate::store::UsageRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Day,
    Week,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum By {
    Group,
    User,
}

/// One bucket of one group or user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportRow {
    /// The bucket's first day, `YYYY-MM-DD`.
    pub period: String,
    /// The group or user.
    pub key: String,
    pub gpu_seconds: f64,
    pub cpu_seconds: f64,
    pub kernels: u32,
}

fn bucket_start(t: DateTime<Utc>, bucket: Bucket) -> DateTime<Utc> {
    let day = Utc.from_utc_datetime(&t.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default());
    match bucket {
        Bucket::Day => day,
        Bucket::Week => day - Duration::days(i64::from(t.weekday().num_days_from_monday())),
    }
}

fn step(bucket: Bucket) -> Duration {
    match bucket {
        Bucket::Day => Duration::days(1),
        Bucket::Week => Duration::days(7),
    }
}

/// Sums `rows` into buckets between `from` and `to` (ms), open rows up to `now`.
pub fn report(
    rows: &[UsageRow],
    from: u64,
    to: u64,
    now: u64,
    bucket: Bucket,
    by: By,
) -> Vec<ReportRow> {
    let ms = |t: u64| DateTime::from_timestamp_millis(t as i64).unwrap_or_default();
    let mut out: BTreeMap<(String, String), ReportRow> = BTreeMap::new();
    for row in rows {
        let start = row.started.max(from);
        let end = row.ended.unwrap_or(now).min(to);
        if end <= start {
            continue;
        }
        let key = match by {
            By::Group => row.group.clone(),
            By::User => row.user.clone(),
        };
        let mut b = bucket_start(ms(start), bucket);
        let mut first = true;
        while b.timestamp_millis() < end as i64 {
            let b_end = b + step(bucket);
            let lo = start.max(b.timestamp_millis() as u64);
            let hi = end.min(b_end.timestamp_millis() as u64);
            if hi > lo {
                let secs = (hi - lo) as f64 / 1000.0;
                let period = b.format("%Y-%m-%d").to_string();
                let e = out
                    .entry((period.clone(), key.clone()))
                    .or_insert_with(|| ReportRow {
                        period,
                        key: key.clone(),
                        gpu_seconds: 0.0,
                        cpu_seconds: 0.0,
                        kernels: 0,
                    });
                e.gpu_seconds += secs * f64::from(row.gpus);
                e.cpu_seconds += secs * row.cpus;
                if first {
                    e.kernels += 1;
                    first = false;
                }
            }
            b = b_end;
        }
    }
    out.into_values().collect()
}

/// The report as CSV, with a header line.
pub fn csv(rows: &[ReportRow], by: By) -> String {
    let mut s = format!(
        "period,{},gpu_hours,cpu_hours,kernels\n",
        match by {
            By::Group => "group",
            By::User => "user",
        }
    );
    for r in rows {
        // Keys are validated names (no commas or quotes).
        s.push_str(&format!(
            "{},{},{:.4},{:.4},{}\n",
            r.period,
            r.key,
            r.gpu_seconds / 3600.0,
            r.cpu_seconds / 3600.0,
            r.kernels
        ));
    }
    s
}

/// GPU-hours per bucket, stacked by key, as an SVG bar chart.
pub fn svg(rows: &[ReportRow], title: &str) -> String {
    let periods: Vec<String> = {
        let mut p: Vec<String> = rows.iter().map(|r| r.period.clone()).collect();
        p.sort();
        p.dedup();
        p
    };
    let keys: Vec<String> = {
        let mut k: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
        k.sort();
        k.dedup();
        k
    };
    let mut totals = vec![0.0f64; periods.len()];
    for r in rows {
        if let Ok(i) = periods.binary_search(&r.period) {
            totals[i] += r.gpu_seconds / 3600.0;
        }
    }
    let top = totals.iter().cloned().fold(0.0, f64::max).max(1.0) * 1.1;
    let mut out = String::new();
    if let Err(e) = draw(&mut out, &periods, &keys, rows, top, title) {
        // The chart is a convenience: an empty one says the data is elsewhere.
        tracing::warn!(error = %e, "cannot draw the usage chart");
        out.clear();
    }
    out_or_empty(out)
}

fn draw(
    out: &mut String,
    periods: &[String],
    keys: &[String],
    rows: &[ReportRow],
    top: f64,
    title: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    {
        let root = SVGBackend::with_string(out, (720, 360)).into_drawing_area();
        root.fill(&WHITE)?;
        let n = periods.len().max(1);
        let chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..n as f64, 0f64..top);
        let mut chart = chart?;
        let labels = periods.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.min(12))
            .x_label_formatter(&|x| labels.get(x.floor() as usize).cloned().unwrap_or_default())
            .y_desc("GPU-hours")
            .draw()?;
        let mut base = vec![0.0f64; periods.len()];
        for (ki, key) in keys.iter().enumerate() {
            let color = Palette99::pick(ki).to_rgba();
            let bars: Vec<Rectangle<(f64, f64)>> = rows
                .iter()
                .filter(|r| &r.key == key)
                .filter_map(|r| {
                    let i = periods.binary_search(&r.period).ok()?;
                    let h = r.gpu_seconds / 3600.0;
                    let rect = Rectangle::new(
                        [(i as f64 + 0.15, base[i]), (i as f64 + 0.85, base[i] + h)],
                        color.filled(),
                    );
                    base[i] += h;
                    Some(rect)
                })
                .collect();
            chart
                .draw_series(bars)?
                .label(key.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        if !keys.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
    }
    Ok(())
}

fn out_or_empty(out: String) -> String {
    if out.is_empty() {
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_owned()
    } else {
        out
    }
}

/// `YYYY-MM-DD` → ms at 00:00 UTC.
pub fn parse_day(s: &str) -> Option<u64> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(
        Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?)
            .timestamp_millis()
            .max(0) as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: &str, group: &str, gpus: u32, started: u64, ended: Option<u64>) -> UsageRow {
        UsageRow {
            kernel_id: uuid::Uuid::new_v4(),
            user: user.into(),
            group: group.into(),
            spec: "academy-candle".into(),
            model: Some("H100-80GB".into()),
            gpus,
            cpus: 1.0,
            started,
            ended,
        }
    }

    #[test]
    fn rows_are_clipped_to_days_and_summed() {
        let day = 86_400_000;
        let d0 = parse_day("2026-11-23").unwrap(); // a Monday
        let rows = vec![
            // 2 GPUs from 23:00 to 01:00: one hour on each day.
            row(
                "ada",
                "a",
                2,
                d0 + 23 * 3_600_000,
                Some(d0 + day + 3_600_000),
            ),
            row("bob", "a", 1, d0 + day, Some(d0 + day + 1_800_000)),
            // Still running at `now`.
            row("cy", "b", 1, d0 + 2 * day, None),
        ];
        let now = d0 + 2 * day + 3_600_000;
        let r = report(&rows, d0, d0 + 7 * day, now, Bucket::Day, By::Group);
        let get = |p: &str, k: &str| r.iter().find(|x| x.period == p && x.key == k).unwrap();
        assert_eq!(get("2026-11-23", "a").gpu_seconds, 7200.0);
        assert_eq!(get("2026-11-24", "a").gpu_seconds, 7200.0 + 1800.0);
        assert_eq!(
            get("2026-11-24", "a").kernels,
            1,
            "a kernel counts on its first day only"
        );
        assert_eq!(get("2026-11-25", "b").gpu_seconds, 3600.0);
        let w = report(&rows, d0, d0 + 7 * day, now, Bucket::Week, By::User);
        assert_eq!(
            w.iter().find(|x| x.key == "ada").unwrap().gpu_seconds,
            14400.0
        );
        assert_eq!(w[0].period, "2026-11-23");
        let text = csv(&r, By::Group);
        assert!(text.starts_with("period,group,gpu_hours"));
        assert!(text.contains("2026-11-23,a,2.0000,1.0000,1"), "{text}");
        let chart = svg(&r, "GPU-hours per day");
        assert!(
            chart.starts_with("<svg") && chart.contains("<rect"),
            "{chart}"
        );
    }
}
