//! An assignment's data files: the CSVs, images and weights its notebook
//! reads, each either released (engineers get it beside their copy, and
//! every grading has it) or hidden (only gradings have it: held-out inputs
//! and expected answers that hidden tests compare against).
//!
//! nbgrader releases every file in the source folder beside the notebook
//! and has no hidden files; Otter-Grader keeps test data off the students'
//! side. Both are kept here: a file's [`Visibility`] says which side it is
//! on, and a [`DataPath`] is where it lands, relative to the notebook, the
//! same in an engineer's folder and in a grading's scratch so that
//! `open("data/train.csv")` works in both.

use std::fmt;

/// Most files an assignment may have.
pub const MAX_FILES: usize = 200;
/// Most bytes of data an assignment may have in all (each grading copies
/// them into its scratch).
pub const MAX_TOTAL_BYTES: u64 = 1 << 30;
const MAX_DEPTH: usize = 8;
const MAX_PATH_BYTES: usize = 1024;
/// Below the file system's 255, leaving room for a temporary name.
const MAX_NAME_BYTES: usize = 200;

/// Where a data file lands, relative to the notebook: plain names joined
/// by `/`, none empty, `.` or `..`, none starting with a dot (so no file
/// hides, and none collides with a temporary name), at most 8 deep, and
/// not a notebook (which would replace an engineer's copy).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DataPath(String);

/// Why a path is not a [`DataPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data file path {path:?}: {problem}")]
pub struct DataPathError {
    pub path: String,
    pub problem: &'static str,
}

impl DataPath {
    pub fn parse(path: &str) -> Result<DataPath, DataPathError> {
        let refuse = |problem| {
            Err(DataPathError {
                path: path.chars().take(200).collect(),
                problem,
            })
        };
        if path.is_empty() {
            return refuse("empty");
        }
        if path.len() > MAX_PATH_BYTES {
            return refuse("longer than 1024 bytes");
        }
        if path.starts_with('/') {
            return refuse("absolute: give it relative to the notebook");
        }
        let names: Vec<&str> = path.split('/').collect();
        if names.len() > MAX_DEPTH {
            return refuse("more than 8 folders deep");
        }
        for name in &names {
            if name.is_empty() {
                return refuse("an empty name (a doubled or trailing /)");
            }
            if *name == "." || *name == ".." {
                return refuse("\".\" and \"..\" are not allowed");
            }
            if name.starts_with('.') {
                return refuse("a name starting with a dot");
            }
            if name.len() > MAX_NAME_BYTES {
                return refuse("a name longer than 200 bytes");
            }
            if name.to_ascii_lowercase().ends_with(".ipynb") {
                return refuse(
                    "a notebook (or a folder named like one): data files are what the notebook reads",
                );
            }
            if name.chars().any(|c| c.is_control() || c == '\\') {
                return refuse("a control character or a backslash");
            }
        }
        Ok(DataPath(path.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its names, outermost first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for DataPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a data file reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Visibility {
    /// Engineers get it with their copy; validation and grading have it.
    Released,
    /// Only grading has it: not engineers, not Validate (which runs public
    /// tests on the release).
    Hidden,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Released => "released",
            Visibility::Hidden => "hidden",
        }
    }

    /// Whether a run of this kind has the file.
    pub fn reaches(self, run: Run) -> bool {
        match (self, run) {
            (Visibility::Released, _) => true,
            (Visibility::Hidden, Run::Grading) => true,
            (Visibility::Hidden, Run::Engineer | Run::Validation) => false,
        }
    }
}

/// Where an assignment's files are put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// An engineer's copy, in their folder.
    Engineer,
    /// Validate: public tests on the release.
    Validation,
    /// A submission's grading.
    Grading,
}

/// What a new file would make of an assignment's data, or why not: the
/// count and total after putting `size` bytes at `path` among `existing`
/// (a file at the same path is replaced, whatever its visibility).
pub fn check_put(
    existing: &[(DataPath, u64)],
    path: &DataPath,
    size: u64,
) -> Result<(), DataLimitError> {
    let others = existing.iter().filter(|(p, _)| p != path);
    let (count, bytes) = others.fold((1usize, size), |(n, b), (_, s)| (n + 1, b + s));
    if count > MAX_FILES {
        return Err(DataLimitError::TooMany { max: MAX_FILES });
    }
    if bytes > MAX_TOTAL_BYTES {
        return Err(DataLimitError::TooLarge {
            total: bytes,
            max: MAX_TOTAL_BYTES,
        });
    }
    // A file where another one's folder is, or a folder where a file is.
    for (other, _) in existing.iter().filter(|(p, _)| p != path) {
        if is_inside(other, path) || is_inside(path, other) {
            return Err(DataLimitError::Clash {
                path: path.to_string(),
                other: other.to_string(),
            });
        }
    }
    Ok(())
}

/// Whether `inner` lies in the folder `outer` names.
fn is_inside(inner: &DataPath, outer: &DataPath) -> bool {
    inner
        .as_str()
        .strip_prefix(outer.as_str())
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Why an assignment cannot take another file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataLimitError {
    #[error("an assignment has at most {max} data files")]
    TooMany { max: usize },
    #[error("an assignment's data files total at most {max} bytes; with this one, {total}")]
    TooLarge { total: u64, max: u64 },
    #[error(
        "{path:?} and the data file {other:?} cannot both exist: one would be the other's folder"
    )]
    Clash { path: String, other: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths_are_data_paths() {
        for ok in ["data.csv", "data/train.csv", "a b/c-d_e.f.npy", "é/ü.txt"] {
            assert_eq!(DataPath::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn escaping_hidden_and_odd_paths_are_refused() {
        let deep = ["d"; 9].join("/");
        let long = "x".repeat(201);
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            ".env",
            "a/.hidden",
            "a\\b",
            "a\nb",
            "other.ipynb",
            "x/A.IPYNB",
            "hw1.ipynb/x",
            deep.as_str(),
            long.as_str(),
        ] {
            assert!(DataPath::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn hidden_files_reach_only_grading() {
        assert!(Visibility::Released.reaches(Run::Engineer));
        assert!(Visibility::Released.reaches(Run::Validation));
        assert!(Visibility::Released.reaches(Run::Grading));
        assert!(!Visibility::Hidden.reaches(Run::Engineer));
        assert!(!Visibility::Hidden.reaches(Run::Validation));
        assert!(Visibility::Hidden.reaches(Run::Grading));
    }

    #[test]
    fn limits_count_replacements_once_and_refuse_folder_clashes() {
        let p = |s: &str| DataPath::parse(s).unwrap();
        let existing = vec![(p("a.csv"), 10), (p("d/b.csv"), 20)];
        assert_eq!(
            check_put(&existing, &p("a.csv"), MAX_TOTAL_BYTES - 20),
            Ok(())
        );
        assert!(matches!(
            check_put(&existing, &p("c.csv"), MAX_TOTAL_BYTES - 20),
            Err(DataLimitError::TooLarge { .. })
        ));
        assert!(matches!(
            check_put(&existing, &p("d"), 1),
            Err(DataLimitError::Clash { .. })
        ));
        assert!(matches!(
            check_put(&existing, &p("a.csv/x"), 1),
            Err(DataLimitError::Clash { .. })
        ));
        assert_eq!(check_put(&existing, &p("dd/x"), 1), Ok(()));
        let many: Vec<_> = (0..MAX_FILES).map(|i| (p(&format!("f{i}")), 1)).collect();
        assert!(matches!(
            check_put(&many, &p("one-more"), 1),
            Err(DataLimitError::TooMany { .. })
        ));
        assert_eq!(check_put(&many, &p("f3"), 1), Ok(()));
    }
}
