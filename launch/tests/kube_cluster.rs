//! The kubernetes backend against a real cluster: k3d or kind, with the
//! kernel image imported and a node patched to advertise `nvidia.com/gpu`
//! (README, "Deploy on Kubernetes"). Ignored by default; run it with
//!
//! ```sh
//! KUBECONFIG=~/.kube/config cargo test -p launch --test kube_cluster -- --ignored
//! ```
//!
//! `LAB_K8S_NAMESPACE` (default `academy-lab`) and `LAB_K8S_KERNEL_IMAGE`
//! (default `academy-lab/kernel:dev`) say where and what to run.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use launch::kube::{KubeConfig, KubeFailure, KubeLauncher, Timeout};
use launch::{KernelLocator, KernelSignal, LaunchError, LaunchSpec, Launcher};

fn config() -> KubeConfig {
    KubeConfig {
        namespace: std::env::var("LAB_K8S_NAMESPACE").unwrap_or_else(|_| "academy-lab".into()),
        kernel_image: std::env::var("LAB_K8S_KERNEL_IMAGE")
            .unwrap_or_else(|_| "academy-lab/kernel:dev".into()),
        image_pull_policy: Some("IfNotPresent".into()),
        cpu: "250m".into(),
        memory: "512Mi".into(),
        launch_timeout: Timeout(Duration::from_secs(180)),
        ..KubeConfig::default()
    }
}

fn spec(gpus: u32) -> LaunchSpec {
    LaunchSpec {
        kernel_id: uuid::Uuid::new_v4(),
        argv: vec![
            launch::kube::pod::KERNEL_BINARY.into(),
            "candle".into(),
            "-f".into(),
            "{connection_file}".into(),
        ],
        env: BTreeMap::from([("KERNEL_USERNAME".into(), "e2e".into())]),
        cwd: "/unused".into(),
        workdir: None,
        gpus: (0..gpus).map(|i| i.to_string()).collect(),
        user: "e2e".into(),
        group: None,
        gpu_model: None,
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

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn a_kernel_pod_starts_on_a_fake_gpu_node_and_goes_with_its_secret() {
    let launcher = KubeLauncher::from_env(config()).await.expect("a cluster");
    let s = spec(1);
    let id = s.kernel_id;
    let launched = launcher
        .launch(s)
        .await
        .expect("the kernel pod became ready");
    let KernelLocator::Pod { namespace, name } = &launched.locator else {
        panic!("a pod locator");
    };
    assert!(launcher.is_alive(&launched.locator).await);
    let log = launcher.log_tail(id, 4000).await;
    eprintln!("kernel log:\n{log}");
    let secrets: Api<Secret> =
        Api::namespaced(kube::Client::try_default().await.unwrap(), namespace);
    let secret_name = format!("{name}-connection");
    assert!(secrets.get_opt(&secret_name).await.unwrap().is_some());

    // A second gateway adopting with this kernel unknown deletes it.
    let orphaned = launcher.adopt(&HashSet::new()).await.unwrap();
    assert!(orphaned.contains(&id));
    launcher
        .signal(&launched.locator, KernelSignal::Kill)
        .await
        .unwrap();
    // The Secret is garbage-collected with its owner.
    for _ in 0..60 {
        if secrets.get_opt(&secret_name).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("the pod's Secret outlived it");
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG and run with --ignored"]
async fn too_many_gpus_and_a_missing_image_fail_with_their_reasons() {
    let launcher = KubeLauncher::from_env(config()).await.expect("a cluster");
    let r = launcher.launch(spec(64)).await;
    match r.as_ref().err().and_then(LaunchError::backend_error) {
        Some(KubeFailure::Unschedulable { message }) => {
            assert!(message.contains("nvidia.com/gpu"), "{message}")
        }
        _ => panic!("expected Unschedulable, got {r:?}"),
    }
    let mut c = config();
    c.kernel_image = "academy-lab/no-such-kernel:0".into();
    let launcher = KubeLauncher::from_env(c).await.unwrap();
    let r = launcher.launch(spec(0)).await;
    match r.as_ref().err().and_then(LaunchError::backend_error) {
        Some(KubeFailure::ImagePull { image, .. }) => {
            assert_eq!(image, "academy-lab/no-such-kernel:0")
        }
        _ => panic!("expected an image pull failure, got {r:?}"),
    }
}
