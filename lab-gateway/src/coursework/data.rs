//! An assignment's data files on disk, and copying them to where a run
//! needs them (what each run gets is `classroom::Visibility::reaches`).
//!
//! They live in the assignment's folder under `DATA/classroom`, out of
//! every user's and every kernel's reach: `data/released/PATH` and
//! `data/hidden/PATH`. A path is in one of the two at most: putting it
//! with the other visibility moves it. Files are written like every other
//! classroom file (whole, 0600); a run gets copies, never links, so a
//! grading kernel that writes to its copy changes nothing here.

use std::path::{Path, PathBuf};

use classroom::{DataLimitError, DataPath, Run, Visibility};
use parking_lot::Mutex;

use super::files::write_atomic;

/// Serialises changes, so two uploads at once cannot both pass the limits.
static CHANGES: Mutex<()> = Mutex::new(());

/// One data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    pub path: DataPath,
    pub visibility: Visibility,
    pub size: u64,
}

impl DataFile {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.path.as_str(),
            "hidden": self.visibility == Visibility::Hidden,
            "size": self.size,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Limit(#[from] DataLimitError),
    #[error("{doing}: {source}")]
    Io {
        doing: String,
        source: std::io::Error,
    },
}

fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> DataError {
    let doing = doing.into();
    move |source| DataError::Io { doing, source }
}

const BOTH: [Visibility; 2] = [Visibility::Released, Visibility::Hidden];

/// A path that names nothing here: missing, a folder, or through a file.
fn absent(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{IsADirectory, NotADirectory, NotFound};
    matches!(e.kind(), NotFound | NotADirectory | IsADirectory)
}

fn side(dir: &Path, visibility: Visibility) -> PathBuf {
    dir.join(visibility.as_str())
}

fn on_disk(dir: &Path, visibility: Visibility, path: &DataPath) -> PathBuf {
    path.names().fold(side(dir, visibility), |p, n| p.join(n))
}

/// Every data file under `dir` (an assignment's `data` folder), by path.
/// Only regular files with valid paths count (a temporary file of a write
/// in progress does not).
pub fn list(dir: &Path) -> Result<Vec<DataFile>, DataError> {
    let mut out = Vec::new();
    for visibility in BOTH {
        let root = side(dir, visibility);
        let mut stack = vec![(root.clone(), String::new())];
        while let Some((folder, prefix)) = stack.pop() {
            let entries = match std::fs::read_dir(&folder) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(format!("list {}", folder.display()))(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io(format!("list {}", folder.display())))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let rel = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let meta = entry
                    .metadata()
                    .map_err(io(format!("look at {}", entry.path().display())))?;
                if meta.is_dir() {
                    stack.push((entry.path(), rel));
                } else if let (true, Ok(path)) = (meta.is_file(), DataPath::parse(&rel)) {
                    out.push(DataFile {
                        path,
                        visibility,
                        size: meta.len(),
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Puts `bytes` at `path` with `visibility`, replacing the file at that
/// path whichever side it was on, within the assignment's limits.
pub fn put(
    dir: &Path,
    path: &DataPath,
    visibility: Visibility,
    bytes: &[u8],
) -> Result<(), DataError> {
    let _one_at_a_time = CHANGES.lock();
    let existing: Vec<(DataPath, u64)> = list(dir)?.into_iter().map(|f| (f.path, f.size)).collect();
    classroom::data::check_put(&existing, path, bytes.len() as u64)?;
    let target = on_disk(dir, visibility, path);
    write_atomic(&target, bytes).map_err(io(format!("write the data file {path}")))?;
    for other in BOTH.into_iter().filter(|v| *v != visibility) {
        remove_one(dir, other, path)?;
    }
    Ok(())
}

/// Removes the file at `path`; whether there was one.
pub fn remove(dir: &Path, path: &DataPath) -> Result<bool, DataError> {
    let _one_at_a_time = CHANGES.lock();
    let mut removed = false;
    for visibility in BOTH {
        removed |= remove_one(dir, visibility, path)?;
    }
    Ok(removed)
}

fn remove_one(dir: &Path, visibility: Visibility, path: &DataPath) -> Result<bool, DataError> {
    let file = on_disk(dir, visibility, path);
    match std::fs::remove_file(&file) {
        Ok(()) => {}
        Err(e) if absent(&e) => return Ok(false),
        Err(e) => return Err(io(format!("remove the data file {path}"))(e)),
    }
    // Its folders, as far up as they are empty.
    let top = side(dir, visibility);
    let mut folder = file.parent().map(Path::to_path_buf);
    while let Some(f) = folder.filter(|f| f.starts_with(&top) && *f != top) {
        if std::fs::remove_dir(&f).is_err() {
            break;
        }
        folder = f.parent().map(Path::to_path_buf);
    }
    Ok(true)
}

/// The file at `path` if `run` may have it (`None` for a hidden file
/// asked for by anyone but a grading, as for a missing one).
pub fn read(dir: &Path, path: &DataPath, run: Run) -> Result<Option<Vec<u8>>, DataError> {
    for visibility in BOTH.into_iter().filter(|v| v.reaches(run)) {
        match std::fs::read(on_disk(dir, visibility, path)) {
            Ok(bytes) => return Ok(Some(bytes)),
            Err(e) if absent(&e) => {}
            Err(e) => return Err(io(format!("read the data file {path}"))(e)),
        }
    }
    Ok(None)
}

/// Copies every file `run` may have into `into` (a grading's scratch,
/// which nothing else has written to), each at its path; how many.
pub fn stage(dir: &Path, run: Run, into: &Path) -> Result<usize, DataError> {
    let files = list(dir)?;
    let mut n = 0;
    for f in files.iter().filter(|f| f.visibility.reaches(run)) {
        let target = f.path.names().fold(into.to_path_buf(), |p, n| p.join(n));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("make the folder for {}", f.path)))?;
        }
        std::fs::copy(on_disk(dir, f.visibility, &f.path), &target)
            .map_err(io(format!("copy the data file {}", f.path)))?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DataPath {
        DataPath::parse(s).unwrap()
    }

    #[test]
    fn a_path_is_on_one_side_and_runs_get_what_they_may_have() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        put(&data, &p("train.csv"), Visibility::Released, b"x,y\n1,2\n").unwrap();
        put(&data, &p("held/out.csv"), Visibility::Released, b"secret").unwrap();
        // Moved to the hidden side: no longer released.
        put(&data, &p("held/out.csv"), Visibility::Hidden, b"secret!").unwrap();
        let all = list(&data).unwrap();
        assert_eq!(
            all.iter()
                .map(|f| (f.path.as_str(), f.visibility, f.size))
                .collect::<Vec<_>>(),
            vec![
                ("held/out.csv", Visibility::Hidden, 7),
                ("train.csv", Visibility::Released, 8)
            ]
        );
        assert!(
            !data.join("released/held").exists(),
            "an emptied folder stays"
        );
        assert_eq!(
            read(&data, &p("held/out.csv"), Run::Engineer).unwrap(),
            None
        );
        assert_eq!(
            read(&data, &p("held/out.csv"), Run::Validation).unwrap(),
            None
        );
        assert_eq!(
            read(&data, &p("held/out.csv"), Run::Grading)
                .unwrap()
                .unwrap(),
            b"secret!"
        );

        let scratch = dir.path().join("scratch");
        assert_eq!(stage(&data, Run::Validation, &scratch).unwrap(), 1);
        assert!(scratch.join("train.csv").is_file());
        assert!(!scratch.join("held").exists());
        let graded = dir.path().join("graded");
        assert_eq!(stage(&data, Run::Grading, &graded).unwrap(), 2);
        assert_eq!(
            std::fs::read(graded.join("held/out.csv")).unwrap(),
            b"secret!"
        );
        // A copy, not a link: writing it leaves the original.
        std::fs::write(graded.join("train.csv"), "changed").unwrap();
        assert_eq!(
            read(&data, &p("train.csv"), Run::Engineer)
                .unwrap()
                .unwrap(),
            b"x,y\n1,2\n"
        );

        assert!(remove(&data, &p("held/out.csv")).unwrap());
        assert!(!remove(&data, &p("held/out.csv")).unwrap());
        assert_eq!(list(&data).unwrap().len(), 1);
    }

    #[test]
    fn a_file_where_a_folder_is_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), &p("d/a.csv"), Visibility::Hidden, b"1").unwrap();
        let err = put(dir.path(), &p("d"), Visibility::Released, b"2").unwrap_err();
        assert!(
            matches!(err, DataError::Limit(DataLimitError::Clash { .. })),
            "{err}"
        );
        assert_eq!(list(dir.path()).unwrap().len(), 1);
    }
}
