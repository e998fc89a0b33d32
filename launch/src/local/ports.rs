//! The five TCP ports of each local kernel, reserved process-wide until the
//! kernel is cleaned up, so that concurrent starts never share one.

use std::net::{IpAddr, Ipv4Addr};

use super::error::LocalError;
use crate::launcher::LaunchError;

/// Ports handed to live kernels, process-wide: concurrent starts, even by two
/// launchers in one process, must never share one.
static RESERVED: std::sync::LazyLock<
    parking_lot::Mutex<std::collections::HashMap<uuid::Uuid, Vec<u16>>>,
> = std::sync::LazyLock::new(Default::default);

/// Five free ports that no other live kernel of this gateway holds.
pub(super) async fn reserve(kernel_id: uuid::Uuid) -> Result<Vec<u16>, LaunchError> {
    for _ in 0..20 {
        let ports = jupyter_zmq_client::peek_ports(IpAddr::V4(Ipv4Addr::LOCALHOST), 5)
            .await
            .map_err(|e| LocalError::Ports(e.to_string()))?;
        let mut reserved = RESERVED.lock();
        let taken = reserved.values().flatten().any(|p| ports.contains(p));
        let distinct = ports.iter().collect::<std::collections::HashSet<_>>().len() == ports.len();
        if !taken && distinct {
            reserved.insert(kernel_id, ports.clone());
            return Ok(ports);
        }
    }
    Err(LocalError::Ports("no five distinct free ports after 20 tries".into()).into())
}

/// Frees the kernel's ports.
pub(super) fn release(kernel_id: uuid::Uuid) {
    RESERVED.lock().remove(&kernel_id);
}
