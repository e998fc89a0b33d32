//! The contents API over each user's own notebook root.
//!
//! Paths are API paths (`a/b.ipynb`, `/`-separated, relative to the user's
//! root). Every path is resolved here and nowhere else: `..`, absolute paths
//! and symlinks that lead out of the root are refused. Writes are atomic
//! (temp file, fsync, rename, fsync of the folder), so a crash never leaves a
//! half-written notebook. Checkpoints are copies kept in `.ipynb_checkpoints`.

use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;

const CHECKPOINTS: &str = ".ipynb_checkpoints";

/// A user's notebook root.
pub struct Root {
    dir: PathBuf,
}

/// The body of PUT, POST and PATCH.
#[derive(Debug, Default, Deserialize)]
pub struct ContentsRequest {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub format: Option<String>,
    pub content: Option<Value>,
    pub path: Option<String>,
    pub ext: Option<String>,
    pub copy_from: Option<String>,
}

fn ts(t: std::io::Result<std::time::SystemTime>) -> String {
    let t: DateTime<Utc> = t.map(Into::into).unwrap_or_else(|_| Utc::now());
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn io(e: std::io::Error) -> ApiError {
    match e.kind() {
        std::io::ErrorKind::NotFound => ApiError::NotFound("no such file or directory".into()),
        std::io::ErrorKind::AlreadyExists => ApiError::Conflict("it already exists".into()),
        _ => ApiError::Internal(e.to_string()),
    }
}

/// Writes bytes atomically: temp file in the same folder, fsync, rename, fsync the folder.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent folder"))?;
    let tmp = dir.join(format!(".~{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl Root {
    pub fn new(dir: PathBuf) -> Result<Root, ApiError> {
        std::fs::create_dir_all(&dir).map_err(io)?;
        let dir = dir.canonicalize().map_err(io)?;
        Ok(Root { dir })
    }

    /// The file for an API path. Refuses `..`, absolute paths, and anything
    /// whose real location (after symlinks) is outside the root.
    pub fn resolve(&self, api_path: &str) -> Result<PathBuf, ApiError> {
        let refused =
            || ApiError::Forbidden(format!("path {api_path:?} is outside your notebook folder"));
        // API paths are relative to the root; an absolute one is refused.
        if api_path.starts_with('/') || api_path.starts_with('\\') {
            return Err(refused());
        }
        let trimmed = api_path.trim_end_matches('/');
        let rel = Path::new(trimmed);
        if rel.is_absolute() {
            return Err(refused());
        }
        for c in rel.components() {
            match c {
                Component::Normal(_) | Component::CurDir => {}
                _ => return Err(refused()),
            }
        }
        let full = self.dir.join(rel);
        // The deepest existing ancestor must really be inside the root.
        let mut probe = full.as_path();
        loop {
            if probe.exists() || probe.symlink_metadata().is_ok() {
                let real = probe.canonicalize().map_err(|_| refused())?;
                if !real.starts_with(&self.dir) {
                    return Err(refused());
                }
                break;
            }
            match probe.parent() {
                Some(p) => probe = p,
                None => return Err(refused()),
            }
        }
        Ok(full)
    }

    fn api_path(&self, full: &Path) -> String {
        full.strip_prefix(&self.dir)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default()
    }

    /// The model of a file or folder; with `content`, its content too.
    pub fn model(
        &self,
        full: &Path,
        content: bool,
        format: Option<&str>,
    ) -> Result<Value, ApiError> {
        let meta = std::fs::metadata(full).map_err(io)?;
        let path = self.api_path(full);
        let name = full
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = if path.is_empty() { String::new() } else { name };
        let mut m = json!({
            "name": name,
            "path": path,
            "created": ts(meta.created()),
            "last_modified": ts(meta.modified()),
            "writable": !meta.permissions().readonly(),
            "content": null,
            "format": null,
            "mimetype": null,
            "size": if meta.is_file() { json!(meta.len()) } else { Value::Null },
        });
        if meta.is_dir() {
            m["type"] = json!("directory");
            if content {
                let mut items = Vec::new();
                for e in std::fs::read_dir(full).map_err(io)?.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with('.') {
                        continue;
                    }
                    // Symlinks out of the root are not listed.
                    if self.resolve(&self.api_path(&e.path())).is_err() {
                        continue;
                    }
                    if let Ok(item) = self.model(&e.path(), false, None) {
                        items.push(item);
                    }
                }
                items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
                m["content"] = Value::Array(items);
                m["format"] = json!("json");
            }
        } else if path.ends_with(".ipynb") && format != Some("text") && format != Some("base64") {
            m["type"] = json!("notebook");
            if content {
                let text = std::fs::read_to_string(full).map_err(io)?;
                let nb: Value = serde_json::from_str(&text).map_err(|e| {
                    ApiError::BadRequest(format!("{path} is not valid notebook JSON: {e}"))
                })?;
                m["content"] = nb;
                m["format"] = json!("json");
            }
        } else {
            m["type"] = json!("file");
            if content {
                let bytes = std::fs::read(full).map_err(io)?;
                match (format, String::from_utf8(bytes)) {
                    (Some("base64"), Ok(s)) => {
                        m["content"] =
                            json!(base64::engine::general_purpose::STANDARD.encode(s.as_bytes()));
                        m["format"] = json!("base64");
                        m["mimetype"] = json!("application/octet-stream");
                    }
                    (_, Ok(s)) => {
                        m["content"] = json!(s);
                        m["format"] = json!("text");
                        m["mimetype"] = json!("text/plain");
                    }
                    (Some("text"), Err(_)) => {
                        return Err(ApiError::BadRequest(format!("{path} is not UTF-8 text")));
                    }
                    (_, Err(e)) => {
                        m["content"] =
                            json!(base64::engine::general_purpose::STANDARD.encode(e.as_bytes()));
                        m["format"] = json!("base64");
                        m["mimetype"] = json!("application/octet-stream");
                    }
                }
            }
        }
        Ok(m)
    }

    /// PUT: saves a whole model. Returns (created?, model).
    pub fn save(&self, api_path: &str, req: ContentsRequest) -> Result<(bool, Value), ApiError> {
        let full = self.resolve(api_path)?;
        if full == self.dir {
            return Err(ApiError::BadRequest(
                "cannot overwrite the root folder".into(),
            ));
        }
        let created = !full.exists();
        let kind = req
            .kind
            .as_deref()
            .unwrap_or(if api_path.ends_with(".ipynb") {
                "notebook"
            } else {
                "file"
            });
        match kind {
            "directory" => std::fs::create_dir_all(&full).map_err(io)?,
            "notebook" => {
                let nb = req
                    .content
                    .ok_or_else(|| ApiError::BadRequest("a notebook needs content".into()))?;
                if nb.get("cells").is_none_or(|c| !c.is_array()) || nb.get("nbformat").is_none() {
                    return Err(ApiError::BadRequest(
                        "content is not an nbformat 4 notebook".into(),
                    ));
                }
                let text = serde_json::to_string_pretty(&nb)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                atomic_write(&full, format!("{text}\n").as_bytes()).map_err(io)?;
            }
            "file" => {
                let content = req.content.unwrap_or(Value::String(String::new()));
                let text = content
                    .as_str()
                    .ok_or_else(|| ApiError::BadRequest("file content must be a string".into()))?;
                let bytes = match req.format.as_deref() {
                    Some("base64") => base64::engine::general_purpose::STANDARD
                        .decode(text.replace(['\n', '\r'], ""))
                        .map_err(|e| ApiError::BadRequest(format!("invalid base64: {e}")))?,
                    _ => text.as_bytes().to_vec(),
                };
                atomic_write(&full, &bytes).map_err(io)?;
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown content type {other:?}"
                )));
            }
        }
        Ok((created, self.model(&full, false, None)?))
    }

    /// POST into a folder: a new untitled item, or a copy.
    pub fn create(&self, dir_path: &str, req: ContentsRequest) -> Result<Value, ApiError> {
        let dir = self.resolve(dir_path)?;
        if let Some(from) = req.copy_from.as_deref() {
            let src = self.resolve(from)?;
            let stem = src
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ext = src
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_default();
            let target = self.untitled(&dir, &format!("{stem}-Copy"), &ext);
            std::fs::copy(&src, &target).map_err(io)?;
            return self.model(&target, false, None);
        }
        if !dir.is_dir() {
            return Err(ApiError::NotFound(format!("no folder {dir_path:?}")));
        }
        let kind = req.kind.as_deref().unwrap_or("file");
        let target = match kind {
            "directory" => {
                let t = self.untitled(&dir, "Untitled Folder", "");
                std::fs::create_dir(&t).map_err(io)?;
                t
            }
            "notebook" => {
                let t = self.untitled(&dir, "Untitled", ".ipynb");
                let nb = json!({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
                atomic_write(
                    &t,
                    serde_json::to_string_pretty(&nb)
                        .unwrap_or_default()
                        .as_bytes(),
                )
                .map_err(io)?;
                t
            }
            _ => {
                let ext = req.ext.clone().unwrap_or_else(|| ".txt".into());
                let t = self.untitled(&dir, "untitled", &ext);
                atomic_write(&t, b"").map_err(io)?;
                t
            }
        };
        self.model(&target, false, None)
    }

    fn untitled(&self, dir: &Path, stem: &str, ext: &str) -> PathBuf {
        let first = dir.join(format!("{stem}{ext}"));
        if !first.exists() {
            return first;
        }
        (1..)
            .map(|i| dir.join(format!("{stem}{i}{ext}")))
            .find(|p| !p.exists())
            .unwrap_or(first)
    }

    /// PATCH: renames or moves within the root.
    pub fn rename(&self, from: &str, to: &str) -> Result<Value, ApiError> {
        let src = self.resolve(from)?;
        let dst = self.resolve(to)?;
        if !src.exists() {
            return Err(ApiError::NotFound(format!("no file {from:?}")));
        }
        if dst.exists() {
            return Err(ApiError::Conflict(format!("{to:?} already exists")));
        }
        std::fs::rename(&src, &dst).map_err(io)?;
        self.model(&dst, false, None)
    }

    pub fn delete(&self, api_path: &str) -> Result<(), ApiError> {
        let full = self.resolve(api_path)?;
        if full == self.dir {
            return Err(ApiError::BadRequest("cannot delete the root folder".into()));
        }
        let meta = std::fs::symlink_metadata(&full).map_err(io)?;
        if meta.is_dir() {
            std::fs::remove_dir_all(&full).map_err(io)
        } else {
            std::fs::remove_file(&full).map_err(io)
        }
    }

    fn checkpoint_file(&self, full: &Path) -> PathBuf {
        let dir = full.parent().unwrap_or(&self.dir).join(CHECKPOINTS);
        let stem = full
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = full
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        dir.join(format!("{stem}-checkpoint{ext}"))
    }

    fn checkpoint_model(file: &Path) -> Value {
        json!({"id": "checkpoint", "last_modified": ts(std::fs::metadata(file).and_then(|m| m.modified()))})
    }

    pub fn list_checkpoints(&self, api_path: &str) -> Result<Value, ApiError> {
        let full = self.resolve(api_path)?;
        let cp = self.checkpoint_file(&full);
        Ok(if cp.exists() {
            json!([Self::checkpoint_model(&cp)])
        } else {
            json!([])
        })
    }

    pub fn create_checkpoint(&self, api_path: &str) -> Result<Value, ApiError> {
        let full = self.resolve(api_path)?;
        let bytes = std::fs::read(&full).map_err(io)?;
        let cp = self.checkpoint_file(&full);
        if let Some(dir) = cp.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        atomic_write(&cp, &bytes).map_err(io)?;
        Ok(Self::checkpoint_model(&cp))
    }

    pub fn restore_checkpoint(&self, api_path: &str, id: &str) -> Result<(), ApiError> {
        let full = self.resolve(api_path)?;
        let cp = self.checkpoint_file(&full);
        if id != "checkpoint" || !cp.exists() {
            return Err(ApiError::NotFound(format!(
                "no checkpoint {id:?} for {api_path:?}"
            )));
        }
        let bytes = std::fs::read(&cp).map_err(io)?;
        atomic_write(&full, &bytes).map_err(io)
    }

    pub fn delete_checkpoint(&self, api_path: &str, id: &str) -> Result<(), ApiError> {
        let full = self.resolve(api_path)?;
        let cp = self.checkpoint_file(&full);
        if id != "checkpoint" || !cp.exists() {
            return Err(ApiError::NotFound(format!(
                "no checkpoint {id:?} for {api_path:?}"
            )));
        }
        std::fs::remove_file(cp).map_err(io)
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
        for bad in [
            "../bob/secret.ipynb",
            "a/../../bob",
            "/etc/passwd",
            "//etc/passwd",
            "link/secret.ipynb",
            "link",
        ] {
            assert!(
                matches!(root.resolve(bad), Err(ApiError::Forbidden(_))),
                "{bad}"
            );
        }
        assert!(root.resolve("work/new.ipynb").is_ok());
        assert!(root.resolve("").is_ok());
    }

    #[test]
    fn atomic_write_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nb.ipynb");
        atomic_write(&p, b"first").unwrap();
        atomic_write(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
