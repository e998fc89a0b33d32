//! The contents API's models (Jupyter's `type`, `format`, `content`
//! objects) and the operations on them: get, save, create, rename, delete.
//! Every file access goes through the checked paths of the parent module.

use serde::Deserialize;
use serde_json::{Value, json};

use base64::Engine as _;

use super::error::ContentsError;
use super::{Inside, Root, atomic_write, io, ts};

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

impl Root {
    /// The model of a file or folder; with `content`, its content too.
    pub fn model(
        &self,
        p: &Inside,
        content: bool,
        format: Option<&str>,
    ) -> Result<Value, ContentsError> {
        let meta = self.dir.metadata(&p.0).map_err(io)?;
        let path = p.api_path();
        let mut m = json!({
            "name": p.name(),
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
                for e in self.dir.read_dir(&p.0).map_err(io)?.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with('.') {
                        continue;
                    }
                    // Symlinks out of the root fail here and are not listed.
                    if let Ok(item) = self.model(&p.join(&n), false, None) {
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
                let text = String::from_utf8(self.read(p)?).map_err(|_| {
                    ContentsError::Invalid(format!("{path} is not valid notebook JSON: not UTF-8"))
                })?;
                let nb: Value = serde_json::from_str(&text).map_err(|e| {
                    ContentsError::Invalid(format!("{path} is not valid notebook JSON: {e}"))
                })?;
                m["content"] = nb;
                m["format"] = json!("json");
            }
        } else {
            m["type"] = json!("file");
            if content {
                let bytes = self.read(p)?;
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
                        return Err(ContentsError::Invalid(format!("{path} is not UTF-8 text")));
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
    pub fn save(
        &self,
        api_path: &str,
        req: ContentsRequest,
    ) -> Result<(bool, Value), ContentsError> {
        let p = self.resolve(api_path)?;
        if p.is_root() {
            return Err(ContentsError::Invalid(
                "cannot overwrite the root folder".into(),
            ));
        }
        let created = !self.exists(&p);
        let kind = req
            .kind
            .as_deref()
            .unwrap_or(if api_path.ends_with(".ipynb") {
                "notebook"
            } else {
                "file"
            });
        match kind {
            "directory" => self.dir.create_dir_all(&p.0).map_err(io)?,
            "notebook" => {
                let nb = req
                    .content
                    .ok_or_else(|| ContentsError::Invalid("a notebook needs content".into()))?;
                if nb.get("cells").is_none_or(|c| !c.is_array()) || nb.get("nbformat").is_none() {
                    return Err(ContentsError::Invalid(
                        "content is not an nbformat 4 notebook".into(),
                    ));
                }
                let text = serde_json::to_string_pretty(&nb).map_err(ContentsError::Encode)?;
                atomic_write(&self.dir, &p.0, format!("{text}\n").as_bytes()).map_err(io)?;
            }
            "file" => {
                let content = req.content.unwrap_or(Value::String(String::new()));
                let text = content.as_str().ok_or_else(|| {
                    ContentsError::Invalid("file content must be a string".into())
                })?;
                let bytes = match req.format.as_deref() {
                    Some("base64") => base64::engine::general_purpose::STANDARD
                        .decode(text.replace(['\n', '\r'], ""))
                        .map_err(|e| ContentsError::Invalid(format!("invalid base64: {e}")))?,
                    _ => text.as_bytes().to_vec(),
                };
                atomic_write(&self.dir, &p.0, &bytes).map_err(io)?;
            }
            other => {
                return Err(ContentsError::Invalid(format!(
                    "unknown content type {other:?}"
                )));
            }
        }
        Ok((created, self.model(&p, false, None)?))
    }

    /// POST into a folder: a new untitled item, or a copy.
    pub fn create(&self, dir_path: &str, req: ContentsRequest) -> Result<Value, ContentsError> {
        let dir = self.resolve(dir_path)?;
        if let Some(from) = req.copy_from.as_deref() {
            let src = self.resolve(from)?;
            let (stem, ext) = src.stem_and_ext();
            let target = self.untitled(&dir, &format!("{stem}-Copy"), &ext);
            // Through `read`: a FIFO, a device or an oversized file is refused.
            let bytes = self.read(&src)?;
            self.write(&target, &bytes)?;
            return self.model(&target, false, None);
        }
        if !self.dir.is_dir(&dir.0) {
            return Err(ContentsError::NotFound(format!("no folder {dir_path:?}")));
        }
        let kind = req.kind.as_deref().unwrap_or("file");
        let target = match kind {
            "directory" => {
                let t = self.untitled(&dir, "Untitled Folder", "");
                self.dir.create_dir(&t.0).map_err(io)?;
                t
            }
            "notebook" => {
                let t = self.untitled(&dir, "Untitled", ".ipynb");
                let nb = json!({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
                let text = serde_json::to_string_pretty(&nb).unwrap_or_default();
                atomic_write(&self.dir, &t.0, text.as_bytes()).map_err(io)?;
                t
            }
            _ => {
                let ext = req.ext.clone().unwrap_or_else(|| ".txt".into());
                let t = self.untitled(&dir, "untitled", &ext);
                atomic_write(&self.dir, &t.0, b"").map_err(io)?;
                t
            }
        };
        self.model(&target, false, None)
    }

    /// `stem ext` in `dir`, else the first free `stem sep N ext` (N from 1):
    /// Jupyter's `Untitled1.ipynb`, or a course copy's `lesson-1.ipynb`.
    fn first_free(&self, dir: &Inside, stem: &str, sep: &str, ext: &str) -> Inside {
        let first = dir.join(&format!("{stem}{ext}"));
        if !self.exists(&first) {
            return first;
        }
        (1..)
            .map(|i| dir.join(&format!("{stem}{sep}{i}{ext}")))
            .find(|p| !self.exists(p))
            .unwrap_or(first)
    }

    fn untitled(&self, dir: &Inside, stem: &str, ext: &str) -> Inside {
        self.first_free(dir, stem, "", ext)
    }

    /// A free name for a new file: `path` itself, else `stem-1.ext`, ….
    pub fn free_name(&self, p: &Inside) -> Inside {
        let (stem, ext) = p.stem_and_ext();
        self.first_free(&p.parent(), &stem, "-", &ext)
    }

    /// PATCH: renames or moves within the root.
    pub fn rename(&self, from: &str, to: &str) -> Result<Value, ContentsError> {
        let src = self.resolve(from)?;
        let dst = self.resolve(to)?;
        if src.is_root() || dst.is_root() {
            return Err(ContentsError::Invalid("cannot move the root folder".into()));
        }
        if self.dir.symlink_metadata(&src.0).is_err() {
            return Err(ContentsError::NotFound(format!("no file {from:?}")));
        }
        if self.dir.symlink_metadata(&dst.0).is_ok() {
            return Err(ContentsError::Exists(format!("{to:?} already exists")));
        }
        self.dir.rename(&src.0, &self.dir, &dst.0).map_err(io)?;
        self.model(&dst, false, None)
    }

    pub fn delete(&self, api_path: &str) -> Result<(), ContentsError> {
        let p = self.resolve(api_path)?;
        if p.is_root() {
            return Err(ContentsError::Invalid(
                "cannot delete the root folder".into(),
            ));
        }
        let meta = self.dir.symlink_metadata(&p.0).map_err(io)?;
        if meta.is_dir() {
            self.dir.remove_dir_all(&p.0).map_err(io)
        } else {
            self.dir.remove_file(&p.0).map_err(io)
        }
    }
}
