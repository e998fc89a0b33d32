//! Where graded exercises live on disk, and the one way they are written.
//!
//! Everything is under `DATA/classroom`, beside the users' roots and outside
//! every one of them, so neither the contents API nor a kernel's sandbox
//! (which grants only its own folder) reaches it:
//!
//! - `assignments/COURSE/NAME/source.ipynb`: the trainer's notebook, with
//!   solutions and hidden tests; `release.ipynb`: what engineers get;
//!   `data/{released,hidden}/PATH`: its data files (`data`).
//! - `submissions/ID.ipynb`: each submission, written once, never changed.
//! - `graded/GRADING.ipynb`: the notebook a grading ran, with its outputs.
//!
//! Files are written to a temporary name and renamed, mode 0600, so a
//! crash never leaves half a notebook and no other local user reads one.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The classroom's folders, from the data dir.
#[derive(Debug, Clone)]
pub struct Files {
    root: PathBuf,
}

impl Files {
    /// `users_root` is `DATA/users`; the classroom is `DATA/classroom`.
    pub fn beside(users_root: &Path) -> Files {
        Files {
            root: users_root.with_file_name("classroom"),
        }
    }

    pub fn assignment_dir(&self, course: &str, name: &str) -> PathBuf {
        self.root.join("assignments").join(course).join(name)
    }

    pub fn source(&self, course: &str, name: &str) -> PathBuf {
        self.assignment_dir(course, name).join("source.ipynb")
    }

    pub fn release(&self, course: &str, name: &str) -> PathBuf {
        self.assignment_dir(course, name).join("release.ipynb")
    }

    /// The assignment's data files (see `coursework::data`).
    pub fn data(&self, course: &str, name: &str) -> PathBuf {
        self.assignment_dir(course, name).join("data")
    }

    pub fn submission(&self, id: &str) -> PathBuf {
        self.root.join("submissions").join(format!("{id}.ipynb"))
    }

    pub fn graded(&self, grading: i64) -> PathBuf {
        self.root.join("graded").join(format!("{grading}.ipynb"))
    }
}

/// Writes `bytes` to `path` whole or not at all (0600, folders 0700).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("a file path without a folder"))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        uuid::Uuid::new_v4().simple()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename itself survives a crash only once the folder is synced; a
    // row that names this file may be committed right after.
    std::fs::File::open(dir)?.sync_all()
}

use std::os::unix::fs::DirBuilderExt as _;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn files_are_written_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::beside(&dir.path().join("users"));
        let path = files.submission("abc");
        write_atomic(&path, b"{}").unwrap();
        assert!(path.starts_with(dir.path().join("classroom")));
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
