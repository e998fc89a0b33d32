//! What a start asks for, and how that request is resolved: the request body,
//! else Enterprise Gateway's `KERNEL_*` variables, else the kernelspec's
//! declared defaults. Pure functions, so every rule is unit-tested here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use scheduler::Grant;
use serde_json::Value;

use super::error::StartError;

/// What a start request asks for (`POST /api/kernels`).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct StartRequest {
    pub name: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// GPUs and CPUs, beyond the kernelspec's defaults.
    #[serde(default)]
    pub resources: Option<ResourceRequest>,
    /// A new process, never one from the warm pool (grading kernels).
    /// Set by the gateway only: a client cannot send it.
    #[serde(skip)]
    pub fresh: bool,
    /// No network, a memory limit (grading kernels); gateway only, too.
    #[serde(skip)]
    pub restrictions: Restrictions,
    /// The folder to start in, relative to the user's (a session's
    /// notebook folder); the user's folder itself when `None`.
    #[serde(skip)]
    pub folder: Option<PathBuf>,
}

/// What the gateway imposes on a kernel beyond the sandbox every kernel
/// gets (grading kernels); never a client's to set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restrictions {
    /// No network: no outbound port, no UDP.
    pub offline: bool,
    /// The most memory each of its processes may allocate, in bytes
    /// (`LaunchSpec::memory_limit`).
    pub memory_limit: Option<u64>,
    /// The longest it may live (`LaunchSpec::deadline`).
    pub deadline: Option<std::time::Duration>,
    /// Folders this kernel alone reads (a code run's competition files),
    /// beside its user's shares (`LaunchSpec::read_only`).
    pub read_only: Vec<launch::ReadOnlyMount>,
}

/// GPUs and CPUs a kernel asks for.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRequest {
    pub gpus: Option<u32>,
    pub gpu_model: Option<String>,
    /// `cpu` as kernelspecs and Kubernetes spell it.
    #[serde(alias = "cpu")]
    pub cpus: Option<f64>,
    /// Memory, as Kubernetes spells it (`8Gi`); used by pod backends.
    pub memory: Option<String>,
}

impl ResourceRequest {
    /// The grant, with the CPU and memory this request asked for.
    pub fn sized(&self, grant: Grant) -> Grant {
        Grant {
            cpu: self.cpus.map(|c| c.to_string()),
            memory: self.memory.clone(),
            ..grant
        }
    }

    /// The GPUs it asks for (none when unsaid).
    pub fn gpu_count(&self) -> u32 {
        self.gpus.unwrap_or(0)
    }
}

/// What a start asks for: the request's resources, else `KERNEL_GPUS`,
/// `KERNEL_CPUS`, `KERNEL_MEMORY` and `KERNEL_GPU_MODEL` (as Enterprise
/// Gateway reads them), else the kernelspec's `metadata.academy.resources`
/// (or `metadata.resources`). A kernelspec's GPUs are a default, not a
/// demand: in a lab without GPUs (`lab_has_gpus` false) its kernels run on CPU.
pub fn resolve(
    spec_name: &str,
    spec: Option<&Value>,
    req: &StartRequest,
    lab_has_gpus: bool,
) -> Result<ResourceRequest, StartError> {
    let declared = spec
        .map(|s| {
            let m = &s["metadata"];
            if m["academy"]["resources"].is_null() {
                m["resources"].clone()
            } else {
                m["academy"]["resources"].clone()
            }
        })
        .filter(|v| !v.is_null())
        .map(serde_json::from_value::<ResourceRequest>)
        .transpose()
        .map_err(|e| StartError::BadSpec {
            spec: spec_name.to_owned(),
            detail: e.to_string(),
        })?
        .unwrap_or_default();
    let env_gpus = env_number::<u32>(&req.env, "KERNEL_GPUS", "a GPU count")?;
    let env_cpus = env_number::<f64>(&req.env, "KERNEL_CPUS", "a CPU count")?;
    let env_memory = req.env.get("KERNEL_MEMORY").map(|m| m.trim().to_owned());
    let body = req.resources.clone().unwrap_or_default();
    let cpus = body.cpus.or(env_cpus).or(declared.cpus);
    if cpus.is_some_and(|c| !(c.is_finite() && c > 0.0 && c <= 1024.0)) {
        return Err(StartError::BadRequest(
            "resources.cpus must be a positive CPU count".into(),
        ));
    }
    let memory = body.memory.or(env_memory).or(declared.memory);
    if let Some(m) = memory.as_deref().filter(|m| !is_quantity(m)) {
        return Err(StartError::BadRequest(format!(
            "resources.memory must be a size such as 512Mi or 8Gi, not {m:?}"
        )));
    }
    Ok(ResourceRequest {
        gpus: body
            .gpus
            .or(env_gpus)
            .or(declared.gpus.filter(|_| lab_has_gpus)),
        gpu_model: body
            .gpu_model
            .or_else(|| req.env.get("KERNEL_GPU_MODEL").cloned())
            .or(declared.gpu_model)
            .filter(|m| !m.is_empty()),
        cpus,
        memory,
    })
}

/// The number in the start request's variable `name`, if it is set.
fn env_number<T: std::str::FromStr>(
    env: &BTreeMap<String, String>,
    name: &str,
    what: &str,
) -> Result<Option<T>, StartError> {
    env.get(name)
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|_| StartError::BadRequest(format!("{name} must be {what}, not {v:?}")))
        })
        .transpose()
}

/// A memory size as Kubernetes spells it: digits, then an optional
/// suffix (`512Mi`, `8Gi`, `1G`, `1500000000`).
fn is_quantity(m: &str) -> bool {
    let digits = m.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &m[digits.len()..];
    !digits.is_empty()
        && digits.len() <= 18
        && digits.chars().all(|c| c.is_ascii_digit())
        && ["", "Ki", "Mi", "Gi", "Ti", "Pi", "k", "M", "G", "T", "P"].contains(&suffix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(env: &[(&str, &str)], resources: Option<ResourceRequest>) -> StartRequest {
        StartRequest {
            name: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            resources,
            fresh: false,
            restrictions: Restrictions::default(),
            folder: None,
        }
    }

    #[test]
    fn the_body_beats_the_variables_which_beat_the_kernelspec() {
        let spec = json!({"metadata": {"academy": {"resources": {"gpus": 1, "cpu": 2.0, "memory": "4Gi"}}}});
        let body = ResourceRequest {
            gpus: Some(2),
            ..Default::default()
        };
        let r = resolve(
            "s",
            Some(&spec),
            &req(&[("KERNEL_GPUS", "3"), ("KERNEL_CPUS", "4")], Some(body)),
            true,
        )
        .unwrap();
        assert_eq!(r.gpus, Some(2));
        assert_eq!(r.cpus, Some(4.0));
        assert_eq!(r.memory.as_deref(), Some("4Gi"));
        let r = resolve("s", Some(&spec), &req(&[], None), true).unwrap();
        assert_eq!((r.gpus, r.cpus), (Some(1), Some(2.0)));
    }

    #[test]
    fn a_kernelspecs_gpus_are_a_default_that_a_lab_without_gpus_ignores() {
        let spec = json!({"metadata": {"resources": {"gpus": 1}}});
        let r = resolve("s", Some(&spec), &req(&[], None), false).unwrap();
        assert_eq!(r.gpus, None);
        // Asked for explicitly, they are a demand admission answers.
        let r = resolve("s", Some(&spec), &req(&[("KERNEL_GPUS", "1")], None), false).unwrap();
        assert_eq!(r.gpus, Some(1));
    }

    #[test]
    fn malformed_requests_and_kernelspecs_get_typed_errors() {
        let bad = |env: &[(&str, &str)]| resolve("s", None, &req(env, None), true).unwrap_err();
        assert!(
            matches!(bad(&[("KERNEL_GPUS", "two")]), StartError::BadRequest(m) if m.contains("KERNEL_GPUS"))
        );
        assert!(matches!(
            bad(&[("KERNEL_CPUS", "-1")]),
            StartError::BadRequest(_)
        ));
        assert!(matches!(
            bad(&[("KERNEL_CPUS", "NaN")]),
            StartError::BadRequest(_)
        ));
        assert!(
            matches!(bad(&[("KERNEL_MEMORY", "8 GB")]), StartError::BadRequest(m) if m.contains("8Gi"))
        );
        let spec = json!({"metadata": {"resources": {"gpus": "many"}}});
        let e = resolve("s", Some(&spec), &req(&[], None), true).unwrap_err();
        assert_eq!(e.reason(), "bad_spec");
    }

    #[test]
    fn memory_sizes_are_spelt_as_kubernetes_spells_them() {
        for ok in ["512Mi", "8Gi", "1G", "1500000000", "2k"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "8gb", "1.5Gi", "8 Gi", "9999999999999999999"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn an_empty_gpu_model_means_any() {
        let r = resolve("s", None, &req(&[("KERNEL_GPU_MODEL", "")], None), true).unwrap();
        assert_eq!(r.gpu_model, None);
    }
}
