//! What a local kernel starts with: an environment built from scratch (a
//! few inherited variables, then the spec's and the user's), so none of the
//! gateway's secrets reach it, and where its program and toolchain are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Variables of the gateway's own environment a kernel may inherit.
const INHERITED: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "RUSTUP_HOME",
    "CARGO_HOME",
    // Where the CUDA libraries are, for GPU kernels.
    "LD_LIBRARY_PATH",
];

/// The environment a kernel starts with: a few inherited variables, then
/// the spec's and the user's.
pub fn kernel_env(spec_env: &BTreeMap<String, String>, home: &Path) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = INHERITED
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect();
    // Cargo and rustup find their toolchains under the real HOME; a kernel
    // whose HOME is its notebook root would lose them.
    if let Ok(real_home) = std::env::var("HOME") {
        env.entry("CARGO_HOME".into())
            .or_insert_with(|| format!("{real_home}/.cargo"));
        env.entry("RUSTUP_HOME".into())
            .or_insert_with(|| format!("{real_home}/.rustup"));
    }
    env.insert("HOME".into(), home.display().to_string());
    env.extend(spec_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Where `program` is: itself when it names a path, else its first match
/// on `path` (the kernel's `PATH`).
pub(super) fn find_program(program: &str, path: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The dirs a kernel runs its tools from, to be readable in the sandbox:
/// its `PATH` and `LD_LIBRARY_PATH` entries and `RUSTUP_HOME`.
pub(super) fn toolchain_dirs(env: &BTreeMap<String, String>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["PATH", "LD_LIBRARY_PATH"]
        .iter()
        .filter_map(|k| env.get(*k))
        .flat_map(std::env::split_paths)
        .filter(|p| p.is_absolute())
        .collect();
    dirs.extend(env.get("RUSTUP_HOME").map(PathBuf::from));
    dirs
}
