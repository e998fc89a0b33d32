//! Versioned settings (the quota config): a value and a version number
//! bumped on every write, so readers can tell a change.

use rusqlite::{OptionalExtension as _, params};

use super::{Store, StoreError};

impl Store {
    /// A setting and its version (bumped on every write), if set.
    pub fn setting(&self, key: &str) -> Result<Option<(String, i64)>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT value, version FROM settings WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<i64, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "INSERT INTO settings (key, value, version) VALUES (?1, ?2, 1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = version + 1
                 RETURNING version",
                params![key, value],
                |r| r.get(0),
            )?)
        })
    }
}
