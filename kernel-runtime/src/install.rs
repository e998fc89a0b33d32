//! Writing the `academy-rust` and `academy-candle` kernelspecs.
//!
//! Jupyter finds kernels as `kernels/<name>/kernel.json` under its data path.
//! `--user`, `--sys-prefix` and `--prefix` pick the same folders as
//! `jupyter kernelspec install`. The spec's `metadata.academy.resources` is
//! what the gateway's admission reads as the kernel's default request;
//! `launch_channel: 1` says the kernel speaks the launch channel (it can
//! wait in the gateway's warm pool; see [`crate::launch`]).

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::{KernelError, Language};

/// Where to install, as `jupyter kernelspec install` offers.
#[derive(Debug, Clone)]
pub enum Target {
    /// The user's Jupyter data dir (`~/.local/share/jupyter`).
    User,
    /// The active Python environment (`$VIRTUAL_ENV` or `$CONDA_PREFIX`).
    SysPrefix,
    /// `<prefix>/share/jupyter`.
    Prefix(PathBuf),
}

impl Target {
    /// The `kernels` folder for this target.
    pub fn kernels_dir(&self) -> Result<PathBuf, KernelError> {
        let data = match self {
            Target::User => match std::env::var_os("JUPYTER_DATA_DIR") {
                Some(d) => PathBuf::from(d),
                None => jupyter_zmq_client::user_data_dir()
                    .map_err(|e| KernelError::InstallTarget(format!("no user data dir: {e}")))?,
            },
            Target::SysPrefix => {
                let prefix = std::env::var_os("VIRTUAL_ENV")
                    .or_else(|| std::env::var_os("CONDA_PREFIX"))
                    .ok_or_else(|| {
                        KernelError::InstallTarget(
                            "--sys-prefix needs an active Python environment (VIRTUAL_ENV or CONDA_PREFIX); use --prefix PATH instead".into(),
                        )
                    })?;
                Path::new(&prefix).join("share/jupyter")
            }
            Target::Prefix(p) => p.join("share/jupyter"),
        };
        Ok(data.join("kernels"))
    }
}

/// The kernel.json of one language, launching `binary`.
pub fn kernel_json(language: Language, binary: &Path) -> serde_json::Value {
    let argv = json!([
        binary.to_string_lossy(),
        match language {
            Language::Rust => "rust",
            Language::Candle => "candle",
        },
        "-f",
        "{connection_file}"
    ]);
    match language {
        Language::Rust => json!({
            "argv": argv,
            "display_name": "Rust (academy)",
            "language": "rust",
            "interrupt_mode": "message",
            "env": {},
            "metadata": {
                "academy": {
                    "resources": {"gpus": 0, "cpu": 2, "memory": "4Gi"},
                    "launch_channel": 1,
                    "description": "Rust evaluated by evcxr; :dep, :vars and :timing work."
                }
            }
        }),
        Language::Candle => json!({
            "argv": argv,
            "display_name": "Candle ML (academy)",
            "language": "rhai",
            "interrupt_mode": "message",
            "env": {},
            "metadata": {
                "academy": {
                    "resources": {"gpus": 1, "cpu": 2, "memory": "8Gi"},
                    "launch_channel": 1,
                    "description": "Interactive ML with candle: instant cells, interruptible, on the admitted GPU."
                }
            }
        }),
    }
}

/// Installs both kernelspecs; returns the folders written.
pub fn install(target: &Target, binary: &Path) -> Result<Vec<PathBuf>, KernelError> {
    let kernels = target.kernels_dir()?;
    let mut written = Vec::new();
    for language in [Language::Rust, Language::Candle] {
        let dir = kernels.join(language.kernelspec_name());
        let io = |source| KernelError::Install {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let spec = serde_json::to_string_pretty(&kernel_json(language, binary))
            .expect("a json! value always serialises");
        // Write then rename, so a half-written kernel.json is never seen.
        let tmp = dir.join(".kernel.json.tmp");
        std::fs::write(&tmp, spec).map_err(io)?;
        std::fs::rename(&tmp, dir.join("kernel.json")).map_err(io)?;
        std::fs::write(dir.join("logo-svg.svg"), LOGO_SVG).map_err(io)?;
        written.push(dir);
    }
    Ok(written)
}

const LOGO_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64"><rect width="64" height="64" rx="12" fill="#1f3a5f"/><text x="32" y="42" font-family="sans-serif" font-size="28" font-weight="bold" fill="#f2a541" text-anchor="middle">AL</text></svg>"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_install_writes_both_specs_with_resources() {
        let dir = tempfile::tempdir().unwrap();
        let written =
            install(&Target::Prefix(dir.path().to_owned()), Path::new("/opt/ak")).unwrap();
        assert_eq!(written.len(), 2);
        let spec: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                dir.path()
                    .join("share/jupyter/kernels/academy-candle/kernel.json"),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            spec["argv"],
            json!(["/opt/ak", "candle", "-f", "{connection_file}"])
        );
        assert_eq!(spec["interrupt_mode"], "message");
        assert_eq!(spec["metadata"]["academy"]["resources"]["gpus"], 1);
    }
}
