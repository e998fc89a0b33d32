//! What a newcomer finds on the first start: the example notebooks as the
//! course `getting-started`, and the example assignments released in the
//! course `demo`, both owned by the first admin, so the first page is not
//! empty and the whole teaching flow can be tried at once.
//!
//! It happens once per data dir (the setting `seeded` records it): a
//! course ops delete does not come back at the next start. The examples are
//! compiled into the binary, so a `lab` installed anywhere has them.

use std::path::Path;

use classroom::{Policy, Source};

use crate::coursework::files::{Files, write_atomic};
use crate::store::{Store, StoreError};

/// The course the example notebooks are published to.
pub const GETTING_STARTED: &str = "getting-started";
/// The course the example assignments are released in.
pub const DEMO: &str = "demo";

const NOTEBOOKS: &[(&str, &[u8])] = &[
    (
        "01-rust-basics.ipynb",
        include_bytes!("../../examples/01-rust-basics.ipynb"),
    ),
    (
        "02-candle-in-rust.ipynb",
        include_bytes!("../../examples/02-candle-in-rust.ipynb"),
    ),
    (
        "03-candle-tensors.ipynb",
        include_bytes!("../../examples/03-candle-tensors.ipynb"),
    ),
    (
        "04-linear-regression.ipynb",
        include_bytes!("../../examples/04-linear-regression.ipynb"),
    ),
    (
        "05-mlp-classifier.ipynb",
        include_bytes!("../../examples/05-mlp-classifier.ipynb"),
    ),
    (
        "06-gpu-matmul-throughput.ipynb",
        include_bytes!("../../examples/06-gpu-matmul-throughput.ipynb"),
    ),
];

const ASSIGNMENTS: &[(&str, &[u8])] = &[
    (
        "rust-basics",
        include_bytes!("../../examples/assignments/rust-basics/source.ipynb"),
    ),
    (
        "tensors-and-broadcasting",
        include_bytes!("../../examples/assignments/tensors-and-broadcasting/source.ipynb"),
    ),
    (
        "mlp-hidden-threshold",
        include_bytes!("../../examples/assignments/mlp-hidden-threshold/source.ipynb"),
    ),
];

const SEEDED: &str = "seeded";

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("example assignment {name}: {reason}")]
    Example { name: &'static str, reason: String },
}

/// Publishes the examples for `owner` unless this data dir had its first
/// start already; whether it did now.
pub fn first_start(store: &Store, users_root: &Path, owner: &str) -> Result<bool, SeedError> {
    if store.setting(SEEDED)?.is_some() {
        return Ok(false);
    }
    let write = |path: std::path::PathBuf, bytes: &[u8]| {
        write_atomic(&path, bytes).map_err(|source| SeedError::Io {
            path: path.display().to_string(),
            source,
        })
    };
    // A data dir from before this release may have courses of these names:
    // theirs are left alone.
    let taken = |course: &str| -> Result<bool, SeedError> {
        Ok(store.course_staff(course)?.is_some()
            || users_root.with_file_name("courses").join(course).exists()
            || !store.assignments(Some(course))?.is_empty())
    };
    let courses = users_root.with_file_name("courses").join(GETTING_STARTED);
    if !taken(GETTING_STARTED)? {
        for (name, bytes) in NOTEBOOKS {
            write(courses.join(name), bytes)?;
        }
        store.claim_course(GETTING_STARTED, owner)?;
    }
    if taken(DEMO)? {
        store.set_setting(SEEDED, &crate::timefmt::iso(chrono::Utc::now()))?;
        return Ok(true);
    }

    let files = Files::beside(users_root);
    let policy = serde_json::to_string(&Policy::default()).map_err(|e| SeedError::Example {
        name: "policy",
        reason: e.to_string(),
    })?;
    for (name, bytes) in ASSIGNMENTS {
        let source = Source::parse(bytes).map_err(|e| SeedError::Example {
            name,
            reason: e.to_string(),
        })?;
        write(files.source(DEMO, name), &source.notebook().to_bytes())?;
        write(files.release(DEMO, name), &source.release().to_bytes())?;
        store.save_assignment(DEMO, name, &policy, source.max_score())?;
        store.set_released(DEMO, name, true)?;
    }
    store.claim_course(DEMO, owner)?;
    store.set_setting(SEEDED, &crate::timefmt::iso(chrono::Utc::now()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_start_publishes_the_examples_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        let users = dir.path().join("users");
        assert!(first_start(&store, &users, "admin").unwrap());
        let course = dir.path().join("courses").join(GETTING_STARTED);
        assert_eq!(std::fs::read_dir(&course).unwrap().count(), NOTEBOOKS.len());
        let demo = store.assignments(Some(DEMO)).unwrap();
        assert_eq!(demo.len(), ASSIGNMENTS.len());
        assert!(
            demo.iter()
                .all(|a| a.released.is_some() && a.max_score > 0.0)
        );
        assert_eq!(store.course_staff(DEMO).unwrap().unwrap().owner, "admin");
        // Not again: what ops removed stays removed.
        std::fs::remove_file(course.join(NOTEBOOKS[0].0)).unwrap();
        assert!(!first_start(&store, &users, "admin").unwrap());
        assert_eq!(
            std::fs::read_dir(&course).unwrap().count(),
            NOTEBOOKS.len() - 1
        );
    }
}
