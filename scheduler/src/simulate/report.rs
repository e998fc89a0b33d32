//! What a simulated term did: admissions, waits, abandonments, GPU
//! utilisation, as numbers, text, an SVG chart and a weekly text chart.

use std::collections::BTreeMap;

use serde::Serialize;

/// What a term looked like.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub users: u64,
    pub sessions: usize,
    pub admitted: usize,
    /// Seconds from asking to getting a GPU, over every GPU session that
    /// was not refused: admitted ones until admitted, and those given up on
    /// until they gave up (so the tail is never capped at the patience).
    pub wait_p50_s: f64,
    pub wait_p95_s: f64,
    pub wait_p99_s: f64,
    pub wait_max_s: f64,
    /// Share of the GPUs' time that kernels held them.
    pub gpu_utilisation: f64,
    pub peak_queue: usize,
    /// Group → limit → refused starts.
    pub refused: BTreeMap<String, BTreeMap<String, u64>>,
    /// Group → starts given up after waiting `patience_minutes`.
    pub abandoned: BTreeMap<String, u64>,
    /// Hourly samples: GPUs in use and queued starts.
    pub hourly: Vec<(u32, u32)>,
    pub capacity: u32,
}

impl Report {
    /// GPUs in use and queued starts over the term, as an SVG chart (empty
    /// when it cannot be drawn; the text report has the same numbers).
    pub fn svg(&self) -> String {
        let mut out = String::new();
        if let Err(e) = self.draw(&mut out) {
            tracing::warn!(error = %e, "cannot draw the simulation chart");
            out.clear();
        }
        out
    }

    fn draw(&self, out: &mut String) -> Result<(), Box<dyn std::error::Error>> {
        use plotters::prelude::*;
        let root = SVGBackend::with_string(out, (900, 360)).into_drawing_area();
        root.fill(&WHITE)?;
        let hours = self.hourly.len().max(1) as f64;
        let top = self
            .hourly
            .iter()
            .map(|(u, q)| (*u).max(*q))
            .max()
            .unwrap_or(0)
            .max(self.capacity) as f64
            * 1.1
            + 1.0;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "GPUs in use and starts waiting, per hour",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..hours / 24.0 / 7.0, 0f64..top)?;
        chart.configure_mesh().x_desc("week").draw()?;
        let week = |h: usize| h as f64 / 24.0 / 7.0;
        chart
            .draw_series(LineSeries::new(
                self.hourly
                    .iter()
                    .enumerate()
                    .map(|(h, (u, _))| (week(h), f64::from(*u))),
                BLUE,
            ))?
            .label("GPUs in use")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLUE));
        chart
            .draw_series(LineSeries::new(
                self.hourly
                    .iter()
                    .enumerate()
                    .map(|(h, (_, q))| (week(h), f64::from(*q))),
                RED,
            ))?
            .label("starts waiting")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], RED));
        let cap = f64::from(self.capacity);
        chart.draw_series(LineSeries::new(
            [(0.0, cap), (hours / 24.0 / 7.0, cap)],
            BLACK.mix(0.4),
        ))?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }

    /// A plain-text summary for the terminal.
    pub fn text(&self) -> String {
        let mut s = format!(
            "users {}\nsessions {}\nadmitted {}\nwait p50 {:.0} s, p95 {:.0} s, p99 {:.0} s, max {:.0} s\nGPU utilisation {:.1}% of {} GPUs\npeak queue {}\n",
            self.users,
            self.sessions,
            self.admitted,
            self.wait_p50_s,
            self.wait_p95_s,
            self.wait_p99_s,
            self.wait_max_s,
            self.gpu_utilisation * 100.0,
            self.capacity,
            self.peak_queue
        );
        if self.refused.is_empty() && self.abandoned.is_empty() {
            s.push_str("no refusals, nobody gave up waiting\n");
        }
        for (g, by) in &self.refused {
            for (limit, n) in by {
                s.push_str(&format!("refused {g}: {n} ({limit})\n"));
            }
        }
        for (g, n) in &self.abandoned {
            s.push_str(&format!("gave up waiting {g}: {n}\n"));
        }
        s.push_str(&self.weekly_chart());
        s
    }

    /// Per week, the mean share of the GPUs in use (a bar), and the peaks of
    /// GPUs in use and of starts waiting: the shape of the term at a glance
    /// in a terminal.
    pub fn weekly_chart(&self) -> String {
        const WIDTH: usize = 40;
        let mut s = format!(
            "week  {:<width$} {:>11} {:>13}\n",
            format!("mean use of the {} GPUs", self.capacity),
            "peak in use",
            "peak waiting",
            width = WIDTH + 5
        );
        for (w, hours) in self.hourly.chunks(24 * 7).enumerate() {
            let mean =
                hours.iter().map(|h| f64::from(h.0)).sum::<f64>() / hours.len().max(1) as f64;
            let share = if self.capacity == 0 {
                0.0
            } else {
                mean / f64::from(self.capacity)
            };
            let filled = ((share * WIDTH as f64).round() as usize).min(WIDTH);
            s.push_str(&format!(
                "{:>4}  {}{} {:>3.0}% {:>11} {:>13}\n",
                w + 1,
                "#".repeat(filled),
                ".".repeat(WIDTH - filled),
                share * 100.0,
                hours.iter().map(|h| h.0).max().unwrap_or(0),
                hours.iter().map(|h| h.1).max().unwrap_or(0),
            ));
        }
        s
    }
}
