//! What every test starts from: the config, a launch spec, a ready pod, a
//! backend wired to the fake, and the launch helpers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use launch::kube::{KubeConfig, KubeFailure, KubeLauncher, Timeout};
use launch::{LaunchError, LaunchSpec, Launcher};
use serde_json::{Value, json};

use crate::fake::*;

pub(crate) const NS: &str = "academy-lab";
pub(crate) const SELECTOR: &str =
    "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dacademy-lab-gateway";

pub(crate) fn config() -> KubeConfig {
    KubeConfig {
        kernel_image: "registry.academy.example/academy-lab/kernel:0.1.0".into(),
        runtime_class: Some("nvidia".into()),
        gpu_products: BTreeMap::from([("H100-80GB".into(), "NVIDIA-H100-80GB-HBM3".into())]),
        kueue: true,
        launch_timeout: Timeout(Duration::from_secs(5)),
        ..KubeConfig::default()
    }
}

pub(crate) fn spec(user: &str, gpus: u32, model: Option<&str>) -> LaunchSpec {
    LaunchSpec {
        kernel_id: uuid::Uuid::parse_str("4f3c2a1b-0d9e-4c8b-a7f6-5e4d3c2b1a09").unwrap(),
        argv: vec![
            "/usr/local/bin/academy-kernel".into(),
            "candle".into(),
            "-f".into(),
            "{connection_file}".into(),
        ],
        env: BTreeMap::from([
            ("KERNEL_USERNAME".into(), user.into()),
            ("CUDA_VISIBLE_DEVICES".into(), "0".into()),
            ("ACADEMY_VIRTUAL_GPU".into(), "1".into()),
        ]),
        cwd: "/unused".into(),
        workdir: None,
        gpus: (0..gpus).map(|i| i.to_string()).collect(),
        user: user.into(),
        group: Some("Cohort 7".into()),
        gpu_model: model.map(str::to_owned),
        cpu: None,
        memory: None,
        progress: None,
        launch_channel: false,
        offline: false,
        memory_limit: None,
        deadline: None,
        read_only: Vec::new(),
    }
}

pub(crate) const POD: &str = "alice-4f3c2a1b-0d9e-4c8b-a7f6-5e4d3c2b1a09";

pub(crate) fn running_ready(ip: &str) -> Value {
    json!({
        "phase": "Running", "podIP": ip,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
        "containerStatuses": [{"name": "kernel", "ready": true, "restartCount": 0,
            "image": "registry.academy.example/academy-lab/kernel:0.1.0", "imageID": "",
            "state": {"running": {"startedAt": "2026-11-28T10:00:00Z"}}}],
    })
}

pub(crate) async fn launcher_with(config: KubeConfig) -> (ApiServer, Arc<KubeLauncher>) {
    let (server, client) = ApiServer::start();
    let launcher = Arc::new(KubeLauncher::new(client, config));
    server.watching().await;
    (server, launcher)
}

pub(crate) fn launch(
    l: &Arc<KubeLauncher>,
    s: LaunchSpec,
) -> tokio::task::JoinHandle<Result<launch::Launched, LaunchError>> {
    let l = l.clone();
    tokio::spawn(async move { l.launch(s).await })
}

pub(crate) fn kube_failure(r: Result<launch::Launched, LaunchError>) -> KubeFailure {
    match r {
        Err(e) => {
            assert_eq!(e.metric_label(), "kube", "{e:?}");
            e.backend_error::<KubeFailure>()
                .cloned()
                .unwrap_or_else(|| panic!("expected a Kubernetes failure, got {e:?}"))
        }
        Ok(_) => panic!("expected a Kubernetes failure, got a kernel"),
    }
}
