//! A participant's kernels read their competitions' files where every
//! notebook of the competition expects them: `competitions/NAME/` in their
//! own folder, read-only (the launch backend's `ReadOnlyMount`). A code
//! submission's run finds the same files, and the hidden ones, at the same
//! place in its scratch (`runner`), so a notebook runs unchanged in both.
//!
//! Asked at each launch: a kernel started before its user joined sees the
//! files after a restart. Kernels of no person (gradings, code runs, the
//! warm pool) are shown nothing.

use std::path::Path;

use launch::ReadOnlyMount;

use super::Files;
use crate::kernels::Shares;
use crate::store::Store;

/// Where a competition's files are in a kernel's folder.
pub fn place(slug: &str) -> std::path::PathBuf {
    Path::new("competitions").join(slug)
}

/// The participant files of each published competition a user joined.
pub struct ParticipantFiles {
    pub store: Store,
    pub files: Files,
}

impl Shares for ParticipantFiles {
    fn read_only(&self, user: &str) -> Vec<ReadOnlyMount> {
        if user.starts_with('.') {
            return Vec::new();
        }
        let joined = match self.store.joined_competitions(user) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(user, error = %e, "cannot list a user's competitions for their kernel");
                return Vec::new();
            }
        };
        joined
            .into_iter()
            .filter_map(|slug| {
                let source = self.files.data_dir(&slug);
                // Shown from the start, even before staff upload a file.
                std::fs::create_dir_all(&source)
                    .map_err(|e| tracing::warn!(competition = %slug, error = %e, "cannot make a competition's data folder"))
                    .ok()?;
                Some(ReadOnlyMount {
                    source,
                    at: place(&slug),
                })
            })
            .collect()
    }
}
