//! The usage ledger: which kernel held which resources, from when to when
//! (Unix milliseconds), for reports and quotas over time.

use rusqlite::params;

use super::{Store, StoreError};

/// One kernel's stretch of resource use, in the ledger.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UsageRow {
    pub kernel_id: uuid::Uuid,
    pub user: String,
    pub group: String,
    pub spec: String,
    pub model: Option<String>,
    pub gpus: u32,
    pub cpus: f64,
    /// Unix milliseconds.
    pub started: u64,
    pub ended: Option<u64>,
}

impl Store {
    /// Records that a kernel started holding resources.
    pub fn ledger_start(&self, row: &UsageRow) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO usage (kernel_id, user_name, grp, spec, model, gpus, cpus, started, ended)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)",
                params![
                    row.kernel_id.to_string(),
                    row.user,
                    row.group,
                    row.spec,
                    row.model,
                    row.gpus,
                    row.cpus,
                    row.started as i64
                ],
            )?;
            Ok(())
        })
    }

    /// Records that a kernel stopped holding resources (once).
    pub fn ledger_end(&self, kernel: uuid::Uuid, ended: u64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE usage SET ended = ?1 WHERE kernel_id = ?2 AND ended IS NULL",
                params![ended as i64, kernel.to_string()],
            )?;
            Ok(())
        })
    }

    /// Ledger rows that overlap `[from, to)` (open rows count as running).
    pub fn usage_between(&self, from: u64, to: u64) -> Result<Vec<UsageRow>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT kernel_id, user_name, grp, spec, model, gpus, cpus, started, ended FROM usage
                 WHERE started < ?2 AND (ended IS NULL OR ended > ?1) ORDER BY started",
            )?;
            let rows = stmt
                .query_map(params![from as i64, to as i64], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        UsageRow {
                            kernel_id: uuid::Uuid::nil(),
                            user: r.get(1)?,
                            group: r.get(2)?,
                            spec: r.get(3)?,
                            model: r.get(4)?,
                            gpus: r.get(5)?,
                            cpus: r.get(6)?,
                            started: r.get::<_, i64>(7)? as u64,
                            ended: r.get::<_, Option<i64>>(8)?.map(|e| e as u64),
                        },
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(id, mut row)| {
                    row.kernel_id = id.parse().ok()?;
                    Some(row)
                })
                .collect())
        })
    }

    /// Closes the open rows of kernels that are not running any more.
    pub fn ledger_close_except(
        &self,
        running: &[uuid::Uuid],
        ended: u64,
    ) -> Result<usize, StoreError> {
        let open: Vec<String> = self.with(|c| {
            let mut stmt = c.prepare("SELECT kernel_id FROM usage WHERE ended IS NULL")?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        let mut closed = 0;
        for id in open {
            if let Ok(k) = id.parse::<uuid::Uuid>()
                && !running.contains(&k)
            {
                self.ledger_end(k, ended)?;
                closed += 1;
            }
        }
        Ok(closed)
    }
}
