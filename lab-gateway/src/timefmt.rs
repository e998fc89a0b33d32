//! The one timestamp format of the gateway's wire and storage: Jupyter's
//! ISO 8601 with microseconds and a `Z` (`2026-01-01T00:00:00.000000Z`).
//!
//! Why one place: message headers, contents models, kernel models, the
//! database and the server's start time all carry this text, and clients
//! (jupyter_client, JupyterLab) parse it. Spelled out in several files, one
//! copy could drift (drop the microseconds, or the `Z`) without any test
//! noticing. This module only formats; it never reads the clock itself.

use chrono::{DateTime, Utc};

/// `t` as Jupyter writes timestamps: `%Y-%m-%dT%H:%M:%S%.6fZ`, in UTC.
pub fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_has_microseconds_and_a_z() {
        let t = DateTime::from_timestamp(1_767_225_600, 123_456_789).unwrap();
        assert_eq!(iso(t), "2026-01-01T00:00:00.123456Z");
    }
}
