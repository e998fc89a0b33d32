//! Checkpoints, Jupyter's one "checkpoint" per file: a copy kept in
//! `.ipynb_checkpoints` beside it, written atomically as any file.

use serde_json::{Value, json};

use super::error::ContentsError;
use super::{CHECKPOINTS, Inside, Root, atomic_write, io, ts};

impl Root {
    fn checkpoint_file(p: &Inside) -> Inside {
        let (stem, ext) = p.stem_and_ext();
        p.parent()
            .join(CHECKPOINTS)
            .join(&format!("{stem}-checkpoint{ext}"))
    }

    fn checkpoint_model(&self, cp: &Inside) -> Value {
        let modified = self.dir.metadata(&cp.0).and_then(|m| m.modified());
        json!({"id": "checkpoint", "last_modified": ts(modified)})
    }

    pub fn list_checkpoints(&self, api_path: &str) -> Result<Value, ContentsError> {
        let cp = Self::checkpoint_file(&self.resolve(api_path)?);
        Ok(if self.exists(&cp) {
            json!([self.checkpoint_model(&cp)])
        } else {
            json!([])
        })
    }

    pub fn create_checkpoint(&self, api_path: &str) -> Result<Value, ContentsError> {
        let p = self.resolve(api_path)?;
        let bytes = self.read(&p)?;
        let cp = Self::checkpoint_file(&p);
        self.write(&cp, &bytes)?;
        Ok(self.checkpoint_model(&cp))
    }

    /// The checkpoint of `api_path` named `id`, if there is one.
    fn checkpoint(&self, api_path: &str, id: &str) -> Result<(Inside, Inside), ContentsError> {
        let p = self.resolve(api_path)?;
        let cp = Self::checkpoint_file(&p);
        if id != "checkpoint" || !self.exists(&cp) {
            return Err(ContentsError::NotFound(format!(
                "no checkpoint {id:?} for {api_path:?}"
            )));
        }
        Ok((p, cp))
    }

    pub fn restore_checkpoint(&self, api_path: &str, id: &str) -> Result<(), ContentsError> {
        let (p, cp) = self.checkpoint(api_path, id)?;
        let bytes = self.read(&cp)?;
        atomic_write(&self.dir, &p.0, &bytes).map_err(io)
    }

    pub fn delete_checkpoint(&self, api_path: &str, id: &str) -> Result<(), ContentsError> {
        let (_, cp) = self.checkpoint(api_path, id)?;
        self.dir.remove_file(&cp.0).map_err(io)
    }
}
