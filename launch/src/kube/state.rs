//! What a kernel pod is doing, read from its status, in words a user can act
//! on: waiting for a node, pulling an image, ready, or failed and why.
//!
//! Launch timeouts that nobody can diagnose are Enterprise Gateway's most
//! common complaint on Kubernetes (EG #741, #932), so every state the pod
//! passes through becomes a sentence, and every failure names its cause.

use k8s_openapi::api::core::v1::Pod;

use super::error::KubeFailure;

/// A kernel pod, interpreted.
#[derive(Debug, Clone, PartialEq)]
pub enum PodState {
    /// Not ready yet; what it is doing.
    Waiting(String),
    /// Ready: the kernel listens at this pod IP.
    Ready { ip: String },
    /// It will never become ready.
    Failed(KubeFailure),
}

/// Image problems that will not fix themselves while we wait.
const IMAGE_FAILURES: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// Container set-up problems that will not fix themselves either.
const CONFIG_FAILURES: &[&str] = &[
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

pub fn interpret(pod: &Pod) -> PodState {
    let name = pod.metadata.name.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        return PodState::Failed(KubeFailure::Exited(format!("pod {name} is being deleted")));
    }
    let image = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let Some(status) = &pod.status else {
        return PodState::Waiting("the pod was created; waiting for the scheduler".into());
    };
    let conditions = status.conditions.clone().unwrap_or_default();
    let condition = |kind: &str| conditions.iter().find(|c| c.type_ == kind);
    let container = status
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.first())
        .cloned();
    if let Some(state) = container.as_ref().and_then(|c| c.state.clone()) {
        if let Some(t) = state.terminated {
            let mut why = format!("the kernel exited with code {}", t.exit_code);
            if let Some(reason) = t.reason.filter(|r| !r.is_empty()) {
                why.push_str(&format!(" ({reason})"));
            }
            if let Some(message) = t.message.filter(|m| !m.is_empty()) {
                why.push_str(&format!(": {message}"));
            }
            return PodState::Failed(KubeFailure::Exited(why));
        }
        if let Some(w) = state.waiting {
            let reason = w.reason.unwrap_or_default();
            let message = w.message.unwrap_or_default();
            if IMAGE_FAILURES.contains(&reason.as_str()) {
                return PodState::Failed(KubeFailure::ImagePull {
                    image,
                    reason,
                    message,
                });
            }
            if CONFIG_FAILURES.contains(&reason.as_str()) {
                return PodState::Failed(KubeFailure::Exited(format!("{reason}: {message}")));
            }
        }
    }
    match status.phase.as_deref() {
        Some("Failed") | Some("Succeeded") => {
            let why = status
                .message
                .clone()
                .or(status.reason.clone())
                .unwrap_or_else(|| "the pod ended".into());
            return PodState::Failed(KubeFailure::Exited(why));
        }
        _ => {}
    }
    if let Some(s) = condition("PodScheduled")
        && s.status == "False"
    {
        let message = s.message.clone().unwrap_or_default();
        if s.reason.as_deref() == Some("Unschedulable") {
            return PodState::Failed(KubeFailure::Unschedulable { message });
        }
        return PodState::Waiting(format!("waiting for a node: {message}"));
    }
    let ready = condition("Ready").is_some_and(|c| c.status == "True");
    if ready && let Some(ip) = status.pod_ip.clone().filter(|ip| !ip.is_empty()) {
        return PodState::Ready { ip };
    }
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    match container.as_ref().and_then(|c| c.state.clone()) {
        Some(state) if state.running.is_some() => {
            PodState::Waiting(format!("the kernel is starting on node {node}"))
        }
        _ if node.is_empty() => PodState::Waiting("waiting for a node".into()),
        _ => PodState::Waiting(format!(
            "on node {node}: pulling image {image} (if not cached) and creating the container"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "alice-k"},
            "spec": {"containers": [{"name": "kernel", "image": "registry.example/kernel:1"}],
                     "nodeName": "gpu-1"},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_first_pull_failure_names_the_image_as_a_back_off_does() {
        let p = pod(serde_json::json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "kernel", "ready": false, "restartCount": 0,
                "image": "x", "imageID": "",
                "state": {"waiting": {"reason": "ErrImagePull",
                    "message": "rpc error: code = NotFound desc = manifest unknown"}}}]}));
        assert_eq!(
            interpret(&p),
            PodState::Failed(KubeFailure::ImagePull {
                image: "registry.example/kernel:1".into(),
                reason: "ErrImagePull".into(),
                message: "rpc error: code = NotFound desc = manifest unknown".into(),
            })
        );
    }

    /// Running is not Ready: the kernel may still be opening its ports.
    #[test]
    fn a_running_pod_that_is_not_ready_is_still_starting() {
        let p = pod(serde_json::json!({"phase": "Running", "podIP": "10.0.0.5",
            "conditions": [{"type": "PodScheduled", "status": "True"},
                           {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "kernel", "ready": false, "restartCount": 0,
                "image": "x", "imageID": "",
                "state": {"running": {"startedAt": "2026-12-01T10:00:00Z"}}}]}));
        assert_eq!(
            interpret(&p),
            PodState::Waiting("the kernel is starting on node gpu-1".into())
        );
    }

    #[test]
    fn a_pod_being_deleted_never_becomes_ready() {
        let mut p = pod(serde_json::json!({"phase": "Running"}));
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Default::default(),
        ));
        assert!(matches!(
            interpret(&p),
            PodState::Failed(KubeFailure::Exited(_))
        ));
    }
}
