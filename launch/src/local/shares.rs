//! Read-only folders shown inside a local kernel's folder: a symlink at
//! the mount's place, whose target the sandbox grants read-only (and
//! nothing beside it). The place is in the user's own folder, which the
//! user's kernels write: whatever a kernel left there is checked, a symlink
//! is replaced, and a real file or folder of the user's is left alone (the
//! mount is then not shown). A kernel that repoints the symlink gains
//! nothing: the sandbox grants the target, not the link.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::launcher::ReadOnlyMount;

/// Puts `mount` in `cwd`; the folder to grant read-only.
///
/// Every step is taken relative to a folder already opened, each opened
/// without following a symlink: another kernel of the same user may swap a
/// folder on the way for a symlink at any moment, and the gateway must
/// never create or remove anything outside the user's folder.
pub(super) fn show(cwd: &Path, mount: &ReadOnlyMount) -> Result<PathBuf, String> {
    let names: Vec<&std::ffi::OsStr> = mount
        .at
        .components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(()),
        })
        .collect::<Result<_, _>>()
        .map_err(|()| format!("{}: not a plain relative path", mount.at.display()))?;
    let Some((last, folders)) = names.split_last() else {
        return Err("an empty path".into());
    };
    let source = mount
        .source
        .canonicalize()
        .map_err(|e| format!("{}: {e}", mount.source.display()))?;
    let fail = |what: &dyn std::fmt::Display, e: Errno| format!("{what}: {e}");
    let dir_flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY;
    let mut dir: OwnedFd =
        rustix::fs::open(cwd, dir_flags, Mode::empty()).map_err(|e| fail(&cwd.display(), e))?;
    for name in folders {
        match rustix::fs::mkdirat(&dir, *name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(fail(&name.to_string_lossy(), e)),
        }
        // A symlink here (planted, or swapped in since) fails with ELOOP.
        dir = rustix::fs::openat(&dir, *name, dir_flags, Mode::empty())
            .map_err(|e| fail(&name.to_string_lossy(), e))?;
    }
    for _ in 0..2 {
        match rustix::fs::readlinkat(&dir, *last, Vec::new()) {
            Ok(to) if Path::new(std::ffi::OsStr::from_bytes(to.as_bytes())) == source => {
                return Ok(source);
            }
            // Another link: the gateway's to put back.
            Ok(_) => rustix::fs::unlinkat(&dir, *last, AtFlags::empty())
                .map_err(|e| fail(&last.to_string_lossy(), e))?,
            Err(Errno::NOENT) => {}
            // Not a link (EINVAL): something of the user's, left alone.
            Err(Errno::INVAL) => {
                return Err(format!(
                    "{} is the user's own; it is left as it is",
                    mount.at.display()
                ));
            }
            Err(e) => return Err(fail(&last.to_string_lossy(), e)),
        }
        match rustix::fs::symlinkat(&source, dir.as_fd(), *last) {
            Ok(()) => return Ok(source),
            // Made meanwhile (another launch of the user's): looked at again.
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(fail(&last.to_string_lossy(), e)),
        }
    }
    Err(format!(
        "{}: changed while the link was made",
        mount.at.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(source: &Path, at: &str) -> ReadOnlyMount {
        ReadOnlyMount {
            source: source.to_owned(),
            at: PathBuf::from(at),
        }
    }

    #[test]
    fn a_mount_is_a_symlink_in_the_folder_and_a_users_own_file_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (home, data) = (dir.path().join("home"), dir.path().join("data"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("train.csv"), "x").unwrap();
        let granted = show(&home, &mount(&data, "competitions/c")).unwrap();
        assert_eq!(granted, data.canonicalize().unwrap());
        assert_eq!(
            std::fs::read_to_string(home.join("competitions/c/train.csv")).unwrap(),
            "x"
        );
        // Again: the same link stays; a repointed one is put back.
        show(&home, &mount(&data, "competitions/c")).unwrap();
        std::fs::remove_file(home.join("competitions/c")).unwrap();
        std::os::unix::fs::symlink("/etc", home.join("competitions/c")).unwrap();
        show(&home, &mount(&data, "competitions/c")).unwrap();
        assert_eq!(
            std::fs::read_link(home.join("competitions/c")).unwrap(),
            granted
        );
        // A real folder of the user's is left alone.
        std::fs::create_dir_all(home.join("competitions/mine")).unwrap();
        assert!(show(&home, &mount(&data, "competitions/mine")).is_err());
        assert!(home.join("competitions/mine").is_dir());
    }

    #[test]
    fn a_mount_never_lands_outside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (home, data, other) = (
            dir.path().join("home"),
            dir.path().join("data"),
            dir.path().join("other"),
        );
        for d in [&home, &data, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(&other, home.join("competitions")).unwrap();
        assert!(show(&home, &mount(&data, "competitions/c")).is_err());
        assert!(std::fs::read_dir(&other).unwrap().next().is_none());
        assert!(show(&home, &mount(&data, "../c")).is_err());
        assert!(show(&home, &mount(&data, "/abs")).is_err());
    }
}
