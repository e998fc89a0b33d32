//! Where competitions live on disk: `DATA/competitions/SLUG/`, beside the
//! users' roots and the classroom and outside every one of them, so neither
//! the contents API nor a kernel's sandbox (which grants only its user's
//! folder) reaches the solution:
//!
//! - `solution.csv`: ids, targets, Usage. Read only by the scorer.
//! - `data/NAME`: the participants' files (train set, test features, sample
//!   submission), downloadable by anyone who may see the competition.
//! - `hidden/NAME`: files only code submissions' runs get (the hidden test
//!   features, in place of the participants' sample of the same name).
//! - `runs/ID-ATTEMPT/`: a code run's staged files, while it runs.
//! - `submissions/UUID.csv|ipynb`: each submission as received, written once;
//!   `UUID.ATTEMPT.output.csv` the `submission.csv` a notebook's run wrote
//!   (rescoring reads the scored attempt's).

use std::path::{Path, PathBuf};

use crate::coursework::files::write_atomic;

/// The competitions' folders, from the data dir.
#[derive(Debug, Clone)]
pub struct Files {
    root: PathBuf,
}

impl Files {
    /// `users_root` is `DATA/users`; competitions are `DATA/competitions`.
    pub fn beside(users_root: &Path) -> Files {
        Files {
            root: users_root.with_file_name("competitions"),
        }
    }

    fn dir(&self, slug: &str) -> PathBuf {
        self.root.join(slug)
    }

    pub fn solution(&self, slug: &str) -> PathBuf {
        self.dir(slug).join("solution.csv")
    }

    /// A participant data file; `name` is a checked plain file name.
    pub fn data(&self, slug: &str, name: &str) -> PathBuf {
        self.dir(slug).join("data").join(name)
    }

    pub fn data_dir(&self, slug: &str) -> PathBuf {
        self.dir(slug).join("data")
    }

    /// Files only code submissions' runs get (the hidden test features),
    /// over the participants' of the same name.
    pub fn hidden_dir(&self, slug: &str) -> PathBuf {
        self.dir(slug).join("hidden")
    }

    /// Where competitions are (`DATA/competitions`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A code run's staged files (`staging`): attempt `attempt` of
    /// submission `id`.
    pub fn run_dir(&self, slug: &str, id: i64, attempt: i64) -> PathBuf {
        self.dir(slug).join("runs").join(format!("{id}-{attempt}"))
    }

    pub fn submission(&self, slug: &str, file: &str) -> PathBuf {
        self.dir(slug).join("submissions").join(file)
    }

    /// The name under `submissions/` of what attempt `attempt` of notebook
    /// `file`'s run wrote (per attempt: one taken back never overwrites the
    /// one that counted).
    pub fn output_of(file: &str, attempt: i64) -> String {
        let stem = file.strip_suffix(".ipynb").unwrap_or(file);
        format!("{stem}.{attempt}.output.csv")
    }

    /// Writes `bytes` to `path` whole or not at all (0600).
    pub fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        write_atomic(path, bytes)
    }
}
