//! Which device a kernel computes on.
//!
//! The launcher admits a kernel onto GPUs and says so through
//! `CUDA_VISIBLE_DEVICES`; the kernel then sees them renumbered from 0. With
//! none admitted, or in a build without the `cuda` feature, it computes on
//! the CPU, and the banner says which and why, so a user never guesses.

use candle_core::Device;

/// The device chosen at start, with the sentence the banner shows.
#[derive(Debug, Clone)]
pub struct DeviceChoice {
    pub device: Device,
    pub description: String,
}

/// The GPUs the launcher admitted, as listed in `CUDA_VISIBLE_DEVICES`.
pub fn admitted_gpus() -> Vec<String> {
    parse_visible_devices(std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref())
}

fn parse_visible_devices(value: Option<&str>) -> Vec<String> {
    match value {
        None => Vec::new(),
        Some(v) => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "-1" && *s != "NoDevFiles")
            .map(str::to_owned)
            .collect(),
    }
}

/// Picks the device: the first admitted GPU, else the CPU.
pub fn select() -> DeviceChoice {
    let gpus = admitted_gpus();
    let model = std::env::var("ACADEMY_GPU_MODEL").ok();
    if gpus.is_empty() {
        return DeviceChoice {
            device: Device::Cpu,
            description: "Device: CPU (no GPU admitted)".to_owned(),
        };
    }
    let listed = gpus.join(",");
    if std::env::var_os("ACADEMY_VIRTUAL_GPU").is_some() {
        return DeviceChoice {
            device: Device::Cpu,
            description: format!(
                "Device: CPU (admitted virtual GPU {listed}{} of a modelled cluster)",
                model.map(|m| format!(", {m}")).unwrap_or_default()
            ),
        };
    }
    if cfg!(feature = "cuda") {
        match Device::new_cuda(0) {
            Ok(device) => DeviceChoice {
                device,
                description: format!(
                    "Device: GPU cuda:0{} (CUDA_VISIBLE_DEVICES={listed})",
                    model.map(|m| format!(", {m}")).unwrap_or_default()
                ),
            },
            Err(e) => DeviceChoice {
                device: Device::Cpu,
                description: format!("Device: CPU (GPU {listed} admitted, but CUDA failed: {e})"),
            },
        }
    } else {
        DeviceChoice {
            device: Device::Cpu,
            description: format!(
                "Device: CPU (GPU {listed} admitted, but this build has no CUDA support)"
            ),
        }
    }
}

/// A short name for a device: `cpu` or `cuda:N`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_owned(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_devices_list_ignores_placeholders() {
        assert!(parse_visible_devices(None).is_empty());
        assert!(parse_visible_devices(Some("")).is_empty());
        assert!(parse_visible_devices(Some("-1")).is_empty());
        assert_eq!(parse_visible_devices(Some("2, 3")), vec!["2", "3"]);
        assert_eq!(
            parse_visible_devices(Some("MIG-7f0e1c2a")),
            vec!["MIG-7f0e1c2a"]
        );
    }
}
