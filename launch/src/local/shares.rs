//! Read-only folders shown inside a local kernel's folder: a symlink at
//! the mount's place, whose target the sandbox grants read-only (and
//! nothing beside it). The place is in the user's own folder, which the
//! user's kernels write: whatever a kernel left there is checked, a symlink
//! is replaced, and a real file or folder of the user's is left alone (the
//! mount is then not shown). A kernel that repoints the symlink gains
//! nothing: the sandbox grants the target, not the link.

use std::path::{Component, Path, PathBuf};

use crate::launcher::ReadOnlyMount;

/// Puts `mount` in `cwd`; the folder to grant read-only.
pub(super) fn show(cwd: &Path, mount: &ReadOnlyMount) -> Result<PathBuf, String> {
    if mount.at.as_os_str().is_empty()
        || !mount
            .at
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(format!("{}: not a plain relative path", mount.at.display()));
    }
    let source = mount
        .source
        .canonicalize()
        .map_err(|e| format!("{}: {e}", mount.source.display()))?;
    let link = cwd.join(&mount.at);
    let parent = link.parent().unwrap_or(cwd);
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    // A folder on the way may be a symlink a kernel planted: the link goes
    // in the user's folder or nowhere.
    let root = cwd
        .canonicalize()
        .map_err(|e| format!("{}: {e}", cwd.display()))?;
    let real_parent = parent
        .canonicalize()
        .map_err(|e| format!("{}: {e}", parent.display()))?;
    if !real_parent.starts_with(&root) {
        return Err(format!(
            "{} leads out of the kernel's folder",
            parent.display()
        ));
    }
    let link = real_parent.join(link.file_name().unwrap_or_default());
    match std::fs::symlink_metadata(&link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            if std::fs::read_link(&link).is_ok_and(|to| to == source) {
                return Ok(source);
            }
            std::fs::remove_file(&link).map_err(|e| format!("{}: {e}", link.display()))?;
        }
        Ok(_) => {
            return Err(format!(
                "{} is the user's own; it is left as it is",
                link.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", link.display())),
    }
    std::os::unix::fs::symlink(&source, &link).map_err(|e| format!("{}: {e}", link.display()))?;
    Ok(source)
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
