//! The contents API over each user's own notebook root.
//!
//! Paths are API paths (`a/b.ipynb`, `/`-separated, relative to the user's
//! root). Every path is checked here and nowhere else: `..` and absolute
//! paths are refused outright, and every file operation goes through the
//! root's directory handle (cap-std), so a symlink that leads out of the
//! root is refused *at the moment of the operation*. A check done first and
//! an operation done later on a plain path could be raced: the user's own
//! kernel writes in this folder and could swap a folder for a symlink in
//! between, and the gateway (which is not sandboxed) would follow it.
//!
//! Writes are atomic (temp file, fsync, rename, fsync of the folder), so a
//! crash never leaves a half-written notebook. Checkpoints are copies kept
//! in `.ipynb_checkpoints`.
//!
//! This module holds the root and path checks and the file operations;
//! `models` builds and saves the API's models, `checkpoints` keeps copies.

use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use chrono::{DateTime, Utc};

pub use error::ContentsError;

mod checkpoints;
mod error;
mod models;

pub use models::ContentsRequest;

const CHECKPOINTS: &str = ".ipynb_checkpoints";

/// A user's notebook root: an open directory every operation is relative to.
pub struct Root {
    dir: Dir,
    /// The largest file [`Root::read`] reads.
    max_file: u64,
}

/// What `max_file` is unless a caller sets it (`limits.contents_file`).
pub const DEFAULT_MAX_FILE: u64 = 100 * 1024 * 1024;

/// A path inside a [`Root`], checked by [`Root::resolve`]: relative, made
/// only of plain names. `.` is the root itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inside(PathBuf);

impl Inside {
    fn is_root(&self) -> bool {
        self.0 == Path::new(".")
    }

    /// The API path (`a/b.ipynb`; empty for the root).
    pub fn api_path(&self) -> String {
        if self.is_root() {
            String::new()
        } else {
            self.0.to_string_lossy().replace('\\', "/")
        }
    }

    fn name(&self) -> String {
        if self.is_root() {
            return String::new();
        }
        self.0
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn parent(&self) -> Inside {
        match self.0.parent() {
            Some(p) if !p.as_os_str().is_empty() => Inside(p.to_path_buf()),
            _ => Inside(PathBuf::from(".")),
        }
    }

    fn join(&self, name: &str) -> Inside {
        if self.is_root() {
            Inside(PathBuf::from(name))
        } else {
            Inside(self.0.join(name))
        }
    }

    fn stem_and_ext(&self) -> (String, String) {
        let stem = self
            .0
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = self
            .0
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        (stem, ext)
    }
}

fn ts(t: std::io::Result<cap_std::time::SystemTime>) -> String {
    let t: DateTime<Utc> = t
        .map(|t| t.into_std().into())
        .unwrap_or_else(|_| Utc::now());
    crate::timefmt::iso(t)
}

/// What a file system entry is, in words.
fn kind_of(meta: &cap_std::fs::Metadata) -> &'static str {
    use cap_std::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device node"
    } else {
        "not a regular file"
    }
}

fn io(e: std::io::Error) -> ContentsError {
    match e.kind() {
        std::io::ErrorKind::NotFound => ContentsError::NotFound("no such file or directory".into()),
        std::io::ErrorKind::AlreadyExists => ContentsError::Exists("it already exists".into()),
        // cap-std's answer to a path that would leave the root.
        std::io::ErrorKind::PermissionDenied => {
            ContentsError::Outside("that path is outside your notebook folder".into())
        }
        _ => ContentsError::Io(e),
    }
}

/// Writes bytes atomically beneath `dir`: a temp file in the same folder,
/// fsync, rename, fsync of the folder.
pub fn atomic_write(dir: &Dir, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => dir.open_dir(p)?,
        _ => dir.try_clone()?,
    };
    let tmp = format!(".~{}.tmp", uuid::Uuid::new_v4().simple());
    let result = (|| {
        let mut f = folder.create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        folder.rename(&tmp, &folder, name)?;
        // The rename is durable once the folder is: fsync it through a
        // descriptor that can be synced (a Dir's is O_PATH).
        let mut read = cap_std::fs::OpenOptions::new();
        read.read(true);
        folder.open_with(".", &read)?.sync_all()
    })();
    if result.is_err() {
        let _ = folder.remove_file(&tmp);
    }
    result
}

impl Root {
    /// Opens (creating it if needed) the folder at `dir`. This is the one
    /// place a root is reached by its path; nothing beneath it ever is.
    pub fn new(dir: PathBuf) -> Result<Root, ContentsError> {
        std::fs::create_dir_all(&dir).map_err(io)?;
        let dir = Dir::open_ambient_dir(&dir, ambient_authority()).map_err(io)?;
        Ok(Root {
            dir,
            max_file: DEFAULT_MAX_FILE,
        })
    }

    /// Sets the largest file [`Root::read`] reads.
    pub fn with_max_file(mut self, max_file: u64) -> Self {
        self.max_file = max_file;
        self
    }

    /// Checks an API path. Refuses `..`, absolute paths, and a path whose
    /// deepest existing part lies outside the root through a symlink (the
    /// operation itself would refuse it too; this gives the clear error
    /// before anything is done).
    pub fn resolve(&self, api_path: &str) -> Result<Inside, ContentsError> {
        let refused =
            || ContentsError::Outside(format!("path {api_path:?} is outside your notebook folder"));
        // API paths are relative to the root; an absolute one is refused.
        if api_path.starts_with('/') || api_path.starts_with('\\') || api_path.contains('\0') {
            return Err(refused());
        }
        let mut rel = PathBuf::new();
        for c in Path::new(api_path.trim_end_matches('/')).components() {
            match c {
                Component::Normal(name) => rel.push(name),
                Component::CurDir => {}
                _ => return Err(refused()),
            }
        }
        let inside = if rel.as_os_str().is_empty() {
            Inside(PathBuf::from("."))
        } else {
            Inside(rel)
        };
        let mut probe = inside.clone();
        loop {
            match self.dir.metadata(&probe.0) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(refused());
                }
                Err(_) if probe.is_root() => break,
                // A dangling or escaping symlink is refused; a plain
                // missing name looks at its parent.
                Err(_) => {
                    if self.dir.symlink_metadata(&probe.0).is_ok() {
                        return Err(refused());
                    }
                    probe = probe.parent();
                }
            }
        }
        Ok(inside)
    }

    pub fn exists(&self, p: &Inside) -> bool {
        self.dir.exists(&p.0)
    }

    /// Reads a whole regular file of at most `max_file` bytes. Anything else
    /// is refused before it is read: a FIFO (whose read would block until
    /// someone writes), a device node or a socket, or a file over the limit
    /// (a sparse file can claim terabytes).
    pub fn read(&self, p: &Inside) -> Result<Vec<u8>, ContentsError> {
        use std::io::Read;
        let refuse = |meta: &cap_std::fs::Metadata| -> Result<(), ContentsError> {
            if !meta.is_file() {
                return Err(ContentsError::Invalid(format!(
                    "{:?} is {}, not a regular file: the contents API reads only files and folders",
                    p.api_path(),
                    kind_of(meta)
                )));
            }
            if meta.len() > self.max_file {
                return Err(self.too_large(p, meta.len()));
            }
            Ok(())
        };
        // By type before opening (opening a device can have effects of its
        // own), and again on what was opened, non-blocking, in case the path
        // was swapped in between.
        refuse(&self.dir.metadata(&p.0).map_err(io)?)?;
        let mut options = cap_std::fs::OpenOptions::new();
        {
            use cap_std::fs::OpenOptionsExt;
            options.read(true).custom_flags(
                (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32,
            );
        }
        let file = self.dir.open_with(&p.0, &options).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        refuse(&meta)?;
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(self.max_file + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        // A file that grew while it was read.
        if bytes.len() as u64 > self.max_file {
            return Err(self.too_large(p, bytes.len() as u64));
        }
        Ok(bytes)
    }

    fn too_large(&self, p: &Inside, len: u64) -> ContentsError {
        ContentsError::TooLarge(format!(
            "{:?} is {len} bytes, over the limit of {} bytes for reading through the contents API (limits.contents_file)",
            p.api_path(),
            self.max_file
        ))
    }

    /// Writes a whole file atomically, creating its folders.
    pub fn write(&self, p: &Inside, bytes: &[u8]) -> Result<(), ContentsError> {
        let parent = p.parent();
        match self.dir.metadata(&parent.0) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ContentsError::Invalid(format!(
                    "{:?} is not a folder",
                    parent.api_path()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.dir.create_dir_all(&parent.0).map_err(io)?
            }
            // Out of the root (a symlink planted since the check), or worse.
            Err(e) => return Err(io(e)),
        }
        atomic_write(&self.dir, &p.0, bytes).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_absolute_paths_and_escaping_symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path().join("alice")).unwrap();
        std::fs::create_dir_all(dir.path().join("bob")).unwrap();
        std::fs::write(dir.path().join("bob/secret.ipynb"), "{}").unwrap();
        std::os::unix::fs::symlink(dir.path().join("bob"), dir.path().join("alice/link")).unwrap();
        std::os::unix::fs::symlink("../bob", dir.path().join("alice/rel")).unwrap();
        for bad in [
            "../bob/secret.ipynb",
            "a/../../bob",
            "/etc/passwd",
            "//etc/passwd",
            "link/secret.ipynb",
            "link",
            "rel/secret.ipynb",
            "link/new.ipynb",
        ] {
            assert!(
                matches!(root.resolve(bad), Err(ContentsError::Outside(_))),
                "{bad}"
            );
        }
        assert!(root.resolve("work/new.ipynb").is_ok());
        assert_eq!(root.resolve("").unwrap().api_path(), "");
        assert_eq!(root.resolve("./a//b/").unwrap().api_path(), "a/b");
    }

    /// A check followed by an operation on a plain path could be raced; an
    /// operation through the root's handle cannot. Here the folder is
    /// swapped for a symlink after `resolve` accepted the path.
    #[test]
    fn a_folder_swapped_for_a_symlink_after_the_check_is_still_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path().join("alice")).unwrap();
        std::fs::create_dir_all(dir.path().join("alice/work")).unwrap();
        std::fs::create_dir_all(dir.path().join("bob")).unwrap();
        std::fs::write(dir.path().join("bob/secret.txt"), "bob's").unwrap();
        let checked = root.resolve("work/secret.txt").unwrap();
        let write_to = root.resolve("work/planted.txt").unwrap();
        std::fs::remove_dir(dir.path().join("alice/work")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("bob"), dir.path().join("alice/work")).unwrap();
        assert!(matches!(
            root.read(&checked),
            Err(ContentsError::Outside(_))
        ));
        assert!(matches!(
            root.write(&write_to, b"x"),
            Err(ContentsError::Outside(_))
        ));
        assert!(!dir.path().join("bob/planted.txt").exists());
        assert!(matches!(
            root.model(&checked, true, None),
            Err(ContentsError::Outside(_))
        ));
    }

    #[test]
    fn symlinks_that_stay_inside_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path().join("alice")).unwrap();
        std::fs::create_dir_all(dir.path().join("alice/real")).unwrap();
        std::fs::write(dir.path().join("alice/real/nb.txt"), "hi").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("alice/alias")).unwrap();
        let p = root.resolve("alias/nb.txt").unwrap();
        assert_eq!(root.read(&p).unwrap(), b"hi");
    }

    #[test]
    fn atomic_write_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = Dir::open_ambient_dir(dir.path(), ambient_authority()).unwrap();
        atomic_write(&root, Path::new("nb.ipynb"), b"first").unwrap();
        atomic_write(&root, Path::new("nb.ipynb"), b"second").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("nb.ipynb")).unwrap(),
            b"second"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
