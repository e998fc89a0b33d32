//! A code run's files: the competition's files staged for it, read-only,
//! where its kernel reads them (`competitions/SLUG/`, as in a participant's
//! own folder), and the `submission.csv` it wrote read back without
//! trusting anything the run left in its scratch.
//!
//! The staged folder is `DATA/competitions/SLUG/runs/ID-ATTEMPT`: the
//! participant files, then the hidden ones over them (a hidden `test.csv`
//! replaces the public sample of the same name), copied (a link would
//! share the originals' inode, whose mode the run's kernel could change). It is
//! outside every user's folder and shown to the run's kernel as a
//! read-only mount (`launch::ReadOnlyMount`: a symlink the local sandbox
//! grants read-only, a read-only subPath of the shared claim for a pod),
//! so the run can neither change the hidden files nor reach the solution
//! beside them.

use std::path::Path;

use super::runner::OWNER_PREFIX;

/// Links (or copies) the participant files, then the hidden ones over
/// them, into `into`, made afresh; each read-only.
pub(super) fn stage(public: &Path, hidden: &Path, into: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(into);
    std::fs::create_dir_all(into).map_err(|e| e.to_string())?;
    for dir in [public, hidden] {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.')
                || !entry.file_type().is_ok_and(|t| t.is_file())
            {
                continue;
            }
            let to = into.join(&name);
            let _ = std::fs::remove_file(&to);
            // A copy, not a link: a run's kernel (the gateway's uid on the
            // local backend, which Landlock does not stop from chmod) must
            // not reach the originals' inode.
            std::fs::copy(entry.path(), &to).map_err(|e| format!("{}: {e}", to.display()))?;
            let mut perms = std::fs::metadata(&to)
                .map_err(|e| e.to_string())?
                .permissions();
            perms.set_readonly(true);
            std::fs::set_permissions(&to, perms).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The file at `rel` in `scratch` if there is one, up to `max` bytes and
/// one more (so the checks can say it is too large); `None` when there is
/// no regular file there or it cannot be read. The run wrote the scratch,
/// so anything in the way may be a symlink, a loop or a locked folder: the
/// path must resolve inside the scratch, the file is opened without
/// following a last symlink, and whatever fails is the notebook's (no
/// file), never the platform's (which would give the run back for free).
pub(super) fn read_capped(scratch: &Path, rel: &Path, max: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let root = scratch.canonicalize().ok()?;
    let path = scratch.join(rel);
    let parent = path.parent()?.canonicalize().ok()?;
    if !parent.starts_with(&root) {
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(parent.join(path.file_name()?))
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Removes the scratch folders of runs a stopped gateway left.
pub(super) fn remove_scratches(users_root: &Path) {
    let Ok(entries) = std::fs::read_dir(users_root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(OWNER_PREFIX)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Removes the staged folders of runs a stopped gateway left
/// (`DATA/competitions/*/runs`).
pub(super) fn remove_staged(competitions_root: &Path) {
    let Ok(entries) = std::fs::read_dir(competitions_root) else {
        return;
    };
    for entry in entries.flatten() {
        let _ = std::fs::remove_dir_all(entry.path().join("runs"));
    }
}

/// Removes a run's staged folder when the run is over, however it ends.
pub(super) struct Staged(pub std::path::PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        // Links and small folders: quick, and a panic still cleans up.
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::debug!(folder = %self.0.display(), error = %e, "a run's staged files were not removed");
        }
    }
}
