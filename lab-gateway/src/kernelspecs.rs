//! Kernelspecs: the academy kernels, and every spec on Jupyter's data path.
//!
//! Specs are read as JSON values and served as they are, so fields we do not
//! model (metadata, kernel_protocol_version) reach clients intact. The
//! academy kernels are built in when `academy-kernel` sits beside the `lab`
//! binary, so a fresh checkout offers them without an install step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// One kernelspec: its folder (for resources) and its kernel.json.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub dir: Option<PathBuf>,
    pub json: Value,
}

impl Spec {
    /// The argv to run. Like jupyter_client, a bare `python`/`python3` means
    /// the Python of the environment the spec was installed into.
    pub fn argv(&self) -> Vec<String> {
        let mut argv: Vec<String> = self.json["argv"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let bare_python = argv
            .first()
            .is_some_and(|a| a == "python" || a == "python3");
        if bare_python && let Some(python) = self.environment_python() {
            argv[0] = python.display().to_string();
        }
        argv
    }

    /// `<prefix>/bin/python3` for a spec in `<prefix>/share/jupyter/kernels/<name>`.
    fn environment_python(&self) -> Option<PathBuf> {
        let prefix = self.dir.as_ref()?.parent()?.parent()?.parent()?.parent()?;
        ["bin/python3", "bin/python"]
            .iter()
            .map(|p| prefix.join(p))
            .find(|p| p.is_file())
    }

    pub fn env(&self) -> BTreeMap<String, String> {
        self.json["env"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn interrupt_by_message(&self) -> bool {
        self.json["interrupt_mode"] == "message"
    }

    /// Whether the kernel speaks the launch channel (the academy kernels,
    /// `metadata.academy.launch_channel: 1`): it says when it listens, and
    /// it can wait in the warm pool for its user.
    pub fn launch_channel(&self) -> bool {
        self.json["metadata"]["academy"]["launch_channel"] == 1
    }

    /// The resource files of the spec folder, as `/kernelspecs/...` URLs.
    pub fn resources(&self) -> Value {
        let mut res = serde_json::Map::new();
        if let Some(dir) = &self.dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                if let Some(stem) = file
                    .strip_suffix(".png")
                    .or_else(|| file.strip_suffix(".svg"))
                    && stem.starts_with("logo-")
                {
                    res.insert(
                        stem.to_owned(),
                        json!(format!("/kernelspecs/{}/{file}", self.name)),
                    );
                }
            }
        }
        Value::Object(res)
    }

    pub fn model(&self) -> Value {
        json!({"name": self.name, "spec": self.json, "resources": self.resources()})
    }

    /// A resource file of this spec, if `name` is a plain file name in its folder.
    pub fn resource_path(&self, name: &str) -> Option<PathBuf> {
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return None;
        }
        let path = self.dir.as_ref()?.join(name);
        path.is_file().then_some(path)
    }
}

/// Jupyter's data path: `JUPYTER_PATH` (several dirs), the user's data dir,
/// the active environment, then the system dirs.
pub fn jupyter_data_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("JUPYTER_PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    match std::env::var_os("JUPYTER_DATA_DIR") {
        Some(d) => dirs.push(PathBuf::from(d)),
        None => {
            if let Some(home) = std::env::var_os("HOME") {
                dirs.push(Path::new(&home).join(".local/share/jupyter"));
            }
        }
    }
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = std::env::var_os(var) {
            dirs.push(Path::new(&prefix).join("share/jupyter"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/share/jupyter"));
    dirs.push(PathBuf::from("/usr/share/jupyter"));
    dirs
}

/// All kernelspecs the gateway offers, keyed by name.
#[derive(Debug, Clone, Default)]
pub struct Specs {
    pub specs: BTreeMap<String, Spec>,
}

impl Specs {
    /// Finds specs: built-in academy kernels, then each data dir in order
    /// (earlier dirs win, as in Jupyter).
    pub fn discover(extra_dirs: &[PathBuf], academy_kernel: Option<&Path>) -> Specs {
        let mut specs = BTreeMap::new();
        let mut dirs: Vec<PathBuf> = extra_dirs.to_vec();
        dirs.extend(jupyter_data_dirs());
        for data in dirs {
            let Ok(entries) = std::fs::read_dir(data.join("kernels")) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if specs.contains_key(&name) {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(e.path().join("kernel.json")) else {
                    continue;
                };
                match serde_json::from_str::<Value>(&text) {
                    Ok(json) if json["argv"].is_array() => {
                        specs.insert(
                            name.clone(),
                            Spec {
                                name,
                                dir: Some(e.path()),
                                json,
                            },
                        );
                    }
                    _ => {
                        tracing::warn!(path = %e.path().display(), "skipping an invalid kernelspec")
                    }
                }
            }
        }
        if let Some(binary) = academy_kernel {
            // As `academy-kernel install` writes them (kernel-runtime's
            // install.rs); a test compares the two.
            for (name, lang, display, resources, description) in [
                (
                    "academy-rust",
                    "rust",
                    "Rust (academy)",
                    json!({"gpus": 0, "cpu": 2, "memory": "4Gi"}),
                    "Rust evaluated by evcxr; :dep, :vars and :timing work.",
                ),
                (
                    "academy-candle",
                    "candle",
                    "Candle ML (academy)",
                    json!({"gpus": 1, "cpu": 2, "memory": "8Gi"}),
                    "Interactive ML with candle: instant cells, interruptible, on the admitted GPU.",
                ),
            ] {
                specs.entry(name.to_owned()).or_insert_with(|| Spec {
                    name: name.to_owned(),
                    dir: None,
                    json: json!({
                        "argv": [binary.display().to_string(), lang, "-f", "{connection_file}"],
                        "display_name": display,
                        "language": if lang == "rust" { "rust" } else { "rhai" },
                        "interrupt_mode": "message",
                        "env": {},
                        "metadata": {"academy": {"resources": resources, "description": description, "launch_channel": 1}}
                    }),
                });
            }
        }
        Specs { specs }
    }

    pub fn get(&self, name: &str) -> Option<&Spec> {
        self.specs.get(name)
    }

    /// The default kernel: academy-candle when present, else python3, else the first.
    pub fn default_name(&self) -> Option<&str> {
        ["academy-candle", "python3"]
            .into_iter()
            .find(|n| self.specs.contains_key(*n))
            .or_else(|| self.specs.keys().next().map(String::as_str))
    }

    pub fn model(&self) -> Value {
        let all: serde_json::Map<String, Value> = self
            .specs
            .iter()
            .map(|(k, s)| (k.clone(), s.model()))
            .collect();
        json!({"default": self.default_name(), "kernelspecs": all})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_python_runs_the_python_of_the_specs_environment() {
        let prefix = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(prefix.path().join("bin")).unwrap();
        std::fs::write(prefix.path().join("bin/python3"), "").unwrap();
        let kdir = prefix.path().join("share/jupyter/kernels/py");
        std::fs::create_dir_all(&kdir).unwrap();
        std::fs::write(
            kdir.join("kernel.json"),
            r#"{"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]}"#,
        )
        .unwrap();
        let specs = Specs::discover(&[prefix.path().join("share/jupyter")], None);
        let argv = specs.get("py").unwrap().argv();
        assert_eq!(
            argv[0],
            prefix.path().join("bin/python3").display().to_string()
        );
    }
}
