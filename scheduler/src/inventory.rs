//! What GPUs there are: found on this machine through the CUDA driver, or
//! modelled from configuration.
//!
//! Admission only ever sees a [`Cluster`]: pools of nodes, each node a list
//! of devices of one model. A real machine is one pool per GPU model on one
//! node; a modelled cluster ("16x8 H100-80GB; 2x7 1g.10gb") is accounted for
//! exactly the same way, so the whole system can be exercised on a laptop.
//! A device's `id` is what goes into `CUDA_VISIBLE_DEVICES`: the driver's
//! `GPU-<uuid>` for a real GPU, the index on its node for a modelled one.

use serde::{Deserialize, Serialize};

/// One GPU (or MIG instance) a kernel can be given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The `CUDA_VISIBLE_DEVICES` token.
    pub id: String,
    pub memory_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub devices: Vec<Device>,
}

/// Nodes with GPUs of one model (or one MIG profile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    /// The model requests and quotas name: `H100-80GB`, or a MIG profile
    /// such as `1g.10gb`.
    pub model: String,
    /// Whether its devices are MIG instances.
    pub mig: bool,
    /// Whether the devices exist (found by the driver) or are modelled.
    pub real: bool,
    pub nodes: Vec<Node>,
    /// Compute capability of a real device, such as `9.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_capability: Option<String>,
}

impl Pool {
    pub fn gpus(&self) -> usize {
        self.nodes.iter().map(|n| n.devices.len()).sum()
    }

    /// The most devices one kernel can get here (kernels do not span nodes).
    pub fn largest_node(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| n.devices.len())
            .max()
            .unwrap_or(0)
    }
}

/// Every GPU admission can hand out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub pools: Vec<Pool>,
}

/// A modelled cluster description that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read the cluster description {text:?}: {why} (expected e.g. \"16x8 H100-80GB; 2x7 1g.10gb\")"
)]
pub struct ClusterSpecError {
    text: String,
    why: String,
}

impl Cluster {
    pub fn gpus(&self) -> usize {
        self.pools.iter().map(Pool::gpus).sum()
    }

    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.pools.iter().map(|p| p.model.as_str())
    }

    /// Total devices of `model`.
    pub fn capacity(&self, model: &str) -> usize {
        self.pools
            .iter()
            .filter(|p| p.model == model)
            .map(Pool::gpus)
            .sum()
    }

    /// Parses a modelled cluster: `;`-separated groups of
    /// `NODES x GPUS MODEL`, where MODEL is a GPU model (`H100-80GB`) or a MIG
    /// profile (`1g.10gb`). `16 nodes × 8 H100-80GB` is accepted too.
    pub fn parse(text: &str) -> Result<Cluster, ClusterSpecError> {
        let err = |why: String| ClusterSpecError {
            text: text.to_owned(),
            why,
        };
        let mut pools: Vec<Pool> = Vec::new();
        for part in text
            .split([';', ','])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let normal = part
                .replace('×', "x")
                .replace(" nodes", "")
                .replace(" node", "");
            let (counts, model) = normal
                .trim()
                .rsplit_once(char::is_whitespace)
                .ok_or_else(|| err(format!("{part:?} has no model")))?;
            let counts: String = counts.chars().filter(|c| !c.is_whitespace()).collect();
            let (nodes, per_node) = match counts.split_once(['x', 'X', '*']) {
                Some((n, g)) => (n, g),
                None => ("1", counts.as_str()),
            };
            let nodes: usize = nodes
                .parse()
                .map_err(|_| err(format!("{nodes:?} is not a node count")))?;
            let per_node: usize = per_node
                .parse()
                .map_err(|_| err(format!("{per_node:?} is not a GPU count")))?;
            if nodes == 0 || per_node == 0 {
                return Err(err(format!("{part:?} has no GPUs")));
            }
            if nodes * per_node > 1_000_000 {
                return Err(err(format!("{part:?} is larger than a million GPUs")));
            }
            let model = model.trim().to_owned();
            let mig = is_mig_profile(&model);
            let memory_mb = memory_from_model(&model).unwrap_or(0);
            let index = pools.len();
            let name = format!("{}-{index}", model.to_ascii_lowercase());
            pools.push(Pool {
                nodes: (0..nodes)
                    .map(|n| Node {
                        name: format!("{name}-node{n}"),
                        devices: (0..per_node)
                            .map(|d| Device {
                                id: d.to_string(),
                                memory_mb,
                            })
                            .collect(),
                    })
                    .collect(),
                name,
                model,
                mig,
                real: false,
                compute_capability: None,
            });
        }
        Ok(Cluster { pools })
    }
}

/// `1g.10gb`, `3g.40gb`: MIG profiles are `<n>g.<m>gb`.
pub fn is_mig_profile(model: &str) -> bool {
    let Some((g, mem)) = model.split_once('.') else {
        return false;
    };
    g.strip_suffix('g')
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        && mem.ends_with("gb")
}

/// `H100-80GB` → 80 GiB; `1g.10gb` → 10 GiB.
fn memory_from_model(model: &str) -> Option<u64> {
    let lower = model.to_ascii_lowercase();
    let digits: String = lower
        .strip_suffix("gb")?
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let gb: u64 = digits.chars().rev().collect::<String>().parse().ok()?;
    Some(gb * 1024)
}

/// What the CUDA driver says about one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundGpu {
    pub ordinal: i32,
    pub name: String,
    pub uuid: String,
    pub memory_mb: u64,
    pub compute_capability: String,
}

/// Why no GPU was found; every case means "run without GPUs".
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("no CUDA driver library (libcuda) on this machine")]
    NoDriver,
    #[error("the CUDA driver failed: {0}")]
    Driver(String),
}

/// The GPUs the CUDA driver reports, through cudarc. A machine without the
/// driver library gets `NoDriver` (cudarc would panic on first use, so its
/// presence is checked first).
pub fn detect_gpus() -> Result<Vec<FoundGpu>, DetectError> {
    use cudarc::driver::result::device;
    use cudarc::driver::sys::CUdevice_attribute as Attr;
    // SAFETY: only tries to dlopen the library; nothing is called.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(DetectError::NoDriver);
    }
    // A driver too old for a symbol cudarc looks up panics; keep that a plain error.
    std::panic::catch_unwind(|| -> Result<Vec<FoundGpu>, DetectError> {
        let driver = |e: cudarc::driver::DriverError| DetectError::Driver(e.to_string());
        cudarc::driver::result::init().map_err(driver)?;
        let count = device::get_count().map_err(driver)?;
        let mut found = Vec::new();
        for ordinal in 0..count {
            let dev = device::get(ordinal).map_err(driver)?;
            let name = device::get_name(dev).map_err(driver)?;
            let uuid = device::get_uuid(dev).map_err(driver)?;
            // SAFETY: `dev` came from `device::get`.
            let (memory, major, minor) = unsafe {
                (
                    device::total_mem(dev).map_err(driver)?,
                    device::get_attribute(dev, Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
                        .map_err(driver)?,
                    device::get_attribute(dev, Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
                        .map_err(driver)?,
                )
            };
            found.push(FoundGpu {
                ordinal,
                name,
                uuid: format_uuid(&uuid.bytes),
                memory_mb: (memory / (1024 * 1024)) as u64,
                compute_capability: format!("{major}.{minor}"),
            });
        }
        Ok(found)
    })
    .unwrap_or_else(|_| {
        Err(DetectError::Driver(
            "the CUDA driver lacks a needed function".into(),
        ))
    })
}

/// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, as nvidia-smi and
/// `CUDA_VISIBLE_DEVICES` spell a GPU's UUID.
fn format_uuid(bytes: &[std::ffi::c_char; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{:02x}", *b as u8)).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The driver's name as a model key: `NVIDIA H200` → `NVIDIA-H200`.
pub fn model_key(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join("-")
}

impl Cluster {
    /// This machine's GPUs as a cluster of one node (one pool per model).
    pub fn from_found(host: &str, found: &[FoundGpu]) -> Cluster {
        let mut pools: Vec<Pool> = Vec::new();
        for gpu in found {
            let model = model_key(&gpu.name);
            let device = Device {
                id: gpu.uuid.clone(),
                memory_mb: gpu.memory_mb,
            };
            match pools.iter_mut().find(|p| p.model == model) {
                Some(pool) => pool.nodes[0].devices.push(device),
                None => pools.push(Pool {
                    name: model.to_ascii_lowercase(),
                    model,
                    mig: false,
                    real: true,
                    nodes: vec![Node {
                        name: host.to_owned(),
                        devices: vec![device],
                    }],
                    compute_capability: Some(gpu.compute_capability.clone()),
                }),
            }
        }
        Cluster { pools }
    }

    /// This machine's GPUs, or none (with the reason logged).
    pub fn detect(host: &str) -> Cluster {
        match detect_gpus() {
            Ok(found) => {
                for gpu in &found {
                    tracing::info!(name = %gpu.name, uuid = %gpu.uuid, memory_mb = gpu.memory_mb,
                        compute_capability = %gpu.compute_capability, "found a GPU");
                }
                Cluster::from_found(host, &found)
            }
            Err(e) => {
                tracing::info!("no GPUs: {e}");
                Cluster::default()
            }
        }
    }
}

/// How busy one real GPU is now, as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuUse {
    /// `GPU-<uuid>`, as [`Device::id`] names a real GPU.
    pub id: String,
    /// Percent of the last sample period a kernel ran on the GPU.
    pub utilisation_percent: u32,
    pub memory_used_mb: u64,
    pub memory_total_mb: u64,
}

/// Live utilisation of this machine's GPUs, through NVML (the library
/// behind nvidia-smi). The driver API (cudarc) says what GPUs exist; only
/// NVML says how busy they are. A machine without `libnvidia-ml.so.1` gets
/// a monitor that reports nothing.
pub struct GpuMonitor {
    nvml: Option<nvml_wrapper::Nvml>,
}

impl GpuMonitor {
    /// Loads NVML if it is present; never fails.
    pub fn open() -> GpuMonitor {
        // nvml-wrapper loads the library with libloading and returns an
        // error when it is missing; a panic in a binding is kept an error too.
        let nvml = std::panic::catch_unwind(nvml_wrapper::Nvml::init)
            .map_err(|_| "NVML panicked while loading".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match nvml {
            Ok(n) => GpuMonitor { nvml: Some(n) },
            Err(e) => {
                tracing::info!("no GPU utilisation: NVML is not available ({e})");
                GpuMonitor { nvml: None }
            }
        }
    }

    /// A monitor that reports nothing (modelled clusters, tests).
    pub fn none() -> GpuMonitor {
        GpuMonitor { nvml: None }
    }

    pub fn available(&self) -> bool {
        self.nvml.is_some()
    }

    /// Each GPU NVML can read now; a GPU it cannot read is left out.
    pub fn read(&self) -> Vec<GpuUse> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        let read = || -> Vec<GpuUse> {
            let count = nvml.device_count().unwrap_or(0);
            (0..count)
                .filter_map(|i| {
                    let d = nvml.device_by_index(i).ok()?;
                    let memory = d.memory_info().ok()?;
                    Some(GpuUse {
                        id: d.uuid().ok()?,
                        utilisation_percent: d.utilization_rates().map_or(0, |u| u.gpu),
                        memory_used_mb: memory.used / (1024 * 1024),
                        memory_total_mb: memory.total / (1024 * 1024),
                    })
                })
                .collect()
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_example() {
        let c = Cluster::parse("16 nodes × 8 H100-80GB; 2 nodes x 7 1g.10gb").unwrap();
        assert_eq!(c.pools.len(), 2);
        assert_eq!(c.capacity("H100-80GB"), 128);
        assert_eq!(c.capacity("1g.10gb"), 14);
        assert!(c.pools[1].mig && !c.pools[0].mig);
        assert_eq!(c.pools[0].largest_node(), 8);
        assert_eq!(c.pools[0].nodes[0].devices[0].memory_mb, 80 * 1024);
        let short = Cluster::parse("16x8 H100-80GB;2x7 1g.10gb").unwrap();
        assert_eq!(short, c);
        assert_eq!(
            Cluster::parse("4 A100-40GB").unwrap().capacity("A100-40GB"),
            4
        );
    }

    #[test]
    fn rejects_nonsense_with_the_reason() {
        for bad in ["x8 H100", "16x8", "0x8 H100", "ax8 H100", "2x0 H100"] {
            let e = Cluster::parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected e.g."), "{bad}: {e}");
        }
    }

    #[test]
    fn mig_profiles() {
        assert!(is_mig_profile("1g.10gb") && is_mig_profile("3g.40gb"));
        assert!(!is_mig_profile("H100-80GB") && !is_mig_profile("g.10gb"));
    }

    #[test]
    fn uuid_format() {
        let bytes: [std::ffi::c_char; 16] = [0x12u8 as _; 16];
        assert_eq!(
            format_uuid(&bytes),
            "GPU-12121212-1212-1212-1212-121212121212"
        );
    }

    #[test]
    fn without_nvml_the_monitor_reports_nothing() {
        let none = GpuMonitor::none();
        assert!(!none.available() && none.read().is_empty());
        // Here: NVML loads (a GPU host) and reads every GPU, or is absent.
        let found = detect_gpus().unwrap_or_default();
        let monitor = GpuMonitor::open();
        if monitor.available() {
            let read = monitor.read();
            assert_eq!(read.len(), found.len(), "{read:?}");
            for g in &read {
                assert!(
                    g.id.starts_with("GPU-") && g.utilisation_percent <= 100,
                    "{g:?}"
                );
                assert!(g.memory_total_mb > 0, "{g:?}");
            }
        } else {
            assert!(monitor.read().is_empty());
        }
    }

    #[test]
    fn detection_never_panics() {
        // On a machine without the driver this is NoDriver; with one, a list.
        match detect_gpus() {
            Ok(gpus) => assert!(gpus.iter().all(|g| g.uuid.starts_with("GPU-"))),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}
