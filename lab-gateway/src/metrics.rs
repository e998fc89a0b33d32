//! `/metrics` in Prometheus text format.
//!
//! Counters are bumped where things happen (one atomic add per relayed
//! message); the per-kernel gauges are set when Prometheus scrapes, from a
//! [`Snapshot`] the kernel manager hands over, so they can never drift from
//! the kernel table. This module knows no kernel types.

use parking_lot::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What the gauges report, taken when Prometheus scrapes.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Each running kernel's execution state and kernelspec.
    pub kernels: Vec<(String, String)>,
    /// Open kernel websockets.
    pub websockets: usize,
    pub gpus: Vec<scheduler::inventory::GpuUse>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why: a short, fixed label (`StartError::reason`).
    pub reason: &'static str,
    /// For a backend's failure, what failed there (`LaunchError::metric_label`:
    /// `local`, `sandbox`, `kube`, `io`, …); empty otherwise.
    pub backend: &'static str,
}

/// The reasons a launch fails for, shown at 0 before any failure so alerts
/// on the series work from the start.
const LAUNCH_FAILURE_REASONS: [&str; 4] = ["launch", "not_ready", "exited", "not_recorded"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KernelLabels {
    pub state: String,
    pub spec: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabels {
    /// `GPU-<uuid>`.
    pub gpu: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `to_kernel` or `to_client`.
    pub direction: &'static str,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    kernels: Family<KernelLabels, Gauge>,
    websockets: Gauge,
    gpu_utilisation: Family<GpuLabels, Gauge>,
    gpu_memory_used: Family<GpuLabels, Gauge>,
    pub messages: Family<DirectionLabels, Counter>,
    pub bytes: Family<DirectionLabels, Counter>,
    pub launch_seconds: Histogram,
    launch_failures: Family<ReasonLabels, Counter>,
    pub culled: Counter,
    /// Bytes the channel sessions' replay buffers hold (see `replay`).
    replay_bytes: Gauge,
}

pub const TO_KERNEL: DirectionLabels = DirectionLabels {
    direction: "to_kernel",
};
pub const TO_CLIENT: DirectionLabels = DirectionLabels {
    direction: "to_client",
};

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lab");
        let kernels = Family::<KernelLabels, Gauge>::default();
        let websockets = Gauge::default();
        let gpu_utilisation = Family::<GpuLabels, Gauge>::default();
        let gpu_memory_used = Family::<GpuLabels, Gauge>::default();
        registry.register(
            "gpu_utilization_percent",
            "GPU utilisation over NVML's last sample period (real GPUs, where NVML is present)",
            gpu_utilisation.clone(),
        );
        registry.register(
            "gpu_memory_used_bytes",
            "GPU memory in use (real GPUs, where NVML is present)",
            gpu_memory_used.clone(),
        );
        let messages = Family::<DirectionLabels, Counter>::default();
        let bytes = Family::<DirectionLabels, Counter>::default();
        let launch_seconds =
            Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]);
        let launch_failures = Family::<ReasonLabels, Counter>::default();
        for reason in LAUNCH_FAILURE_REASONS {
            launch_failures
                .get_or_create(&ReasonLabels {
                    reason,
                    backend: "",
                })
                .inc_by(0);
        }
        let culled = Counter::default();
        let replay_bytes = Gauge::default();
        registry.register(
            "replay_buffer_bytes",
            "Bytes buffered for websocket clients that are away, all sessions together",
            replay_bytes.clone(),
        );
        registry.register(
            "kernels_culled",
            "Kernels culled for idling or running too long",
            culled.clone(),
        );
        registry.register(
            "kernels",
            "Kernels by execution state and kernelspec",
            kernels.clone(),
        );
        registry.register(
            "websocket_clients",
            "Open kernel websockets",
            websockets.clone(),
        );
        registry.register(
            "messages_relayed",
            "Jupyter messages relayed",
            messages.clone(),
        );
        registry.register(
            "bytes_relayed",
            "Bytes of Jupyter messages relayed",
            bytes.clone(),
        );
        registry.register(
            "kernel_launch_seconds",
            "Kernel start to ready",
            launch_seconds.clone(),
        );
        registry.register(
            "kernel_launch_failures",
            "Kernel launches that failed (starts and the warm pool's), by reason",
            launch_failures.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            kernels,
            websockets,
            gpu_utilisation,
            gpu_memory_used,
            messages,
            bytes,
            launch_seconds,
            launch_failures,
            culled,
            replay_bytes,
        }
    }
}

impl Metrics {
    pub fn relayed(&self, labels: &DirectionLabels, bytes: usize) {
        self.messages.get_or_create(labels).inc();
        self.bytes.get_or_create(labels).inc_by(bytes as u64);
    }

    /// Counts a launch that failed, by why (and, for a backend's failure,
    /// what failed there).
    pub fn launch_failed(&self, reason: &'static str, backend: &'static str) {
        self.launch_failures
            .get_or_create(&ReasonLabels { reason, backend })
            .inc();
    }

    /// The text exposition, with the kernel gauges from `now`.
    pub fn render(&self, now: &Snapshot, replay_bytes: usize) -> String {
        self.kernels.clear();
        for (state, spec) in &now.kernels {
            self.kernels
                .get_or_create(&KernelLabels {
                    state: state.clone(),
                    spec: spec.clone(),
                })
                .inc();
        }
        self.websockets
            .set(i64::try_from(now.websockets).unwrap_or(i64::MAX));
        self.replay_bytes
            .set(i64::try_from(replay_bytes).unwrap_or(i64::MAX));
        self.gpu_utilisation.clear();
        self.gpu_memory_used.clear();
        for g in &now.gpus {
            let labels = GpuLabels { gpu: g.id.clone() };
            self.gpu_utilisation
                .get_or_create(&labels)
                .set(i64::from(g.utilisation_percent));
            self.gpu_memory_used
                .get_or_create(&labels)
                .set((g.memory_used_mb * 1024 * 1024) as i64);
        }
        let mut out = String::new();
        let registry = self.registry.lock();
        if encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}
