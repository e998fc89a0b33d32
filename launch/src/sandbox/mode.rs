//! `--sandbox`: how strictly the admin wants local kernels confined.

/// How strictly kernels are confined (`--sandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Confine kernels fully, or refuse to start them (Landlock ABI 6).
    #[default]
    #[serde(alias = "auto", alias = "landlock")]
    Require,
    /// Confine kernels with whatever the running Linux supports, saying
    /// at startup what is lost.
    BestEffort,
    /// Run kernels as plain processes of the gateway's user.
    #[serde(alias = "none")]
    Off,
}

impl std::str::FromStr for SandboxMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "require" | "auto" | "landlock" => Ok(SandboxMode::Require),
            "best-effort" | "besteffort" => Ok(SandboxMode::BestEffort),
            "off" | "none" => Ok(SandboxMode::Off),
            other => Err(format!(
                "unknown sandbox mode {other:?} (require, best-effort, off)"
            )),
        }
    }
}
