//! What the backend's objects are called and how they are labelled: DNS-1123
//! names made from user names (distinct users never share one), the fixed
//! ports and paths inside a kernel pod, and the labels that mark what this
//! gateway owns. Pure functions; no object is built here.

use crate::kube::config::KubeConfig;
use scheduler::inventory::is_mig_profile;

/// The ports a kernel listens on inside its pod: shell, iopub, stdin,
/// control, heartbeat. Fixed, because the pod has its own network.
pub const KERNEL_PORTS: [u16; 5] = [9000, 9001, 9002, 9003, 9004];
/// Where the kernel image has academy-kernel (gpu-images/kernel.Dockerfile).
pub const KERNEL_BINARY: &str = "/usr/local/bin/academy-kernel";
/// Where the connection file is mounted.
pub const CONNECTION_DIR: &str = "/var/run/academy-lab";
pub const CONNECTION_FILE: &str = "/var/run/academy-lab/connection.json";
/// The kernel's working directory (its notebooks, when a PVC is mounted).
pub const WORK_DIR: &str = "/home/academy/work";

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_KERNEL_ID: &str = "academy-lab.io/kernel-id";
pub const LABEL_USER: &str = "academy-lab.io/user";
pub const LABEL_GROUP: &str = "academy-lab.io/group";
pub const LABEL_KUEUE_QUEUE: &str = "kueue.x-k8s.io/queue-name";
/// On an offline kernel's pod only (a grading kernel: `LaunchSpec::offline`),
/// with the value [`EGRESS_NONE`]. The kernels' NetworkPolicy selects the
/// kernel pods *without* this label, the offline one those *with* it (any
/// value), so every kernel pod is selected by exactly one of the two and an
/// offline pod gets none of the other's allows (policies add up).
pub const LABEL_EGRESS: &str = "academy-lab.io/egress";
/// The value of [`LABEL_EGRESS`] on an offline pod: no egress at all.
pub const EGRESS_NONE: &str = "none";
/// The value of `app.kubernetes.io/managed-by` on everything we create.
pub const MANAGER: &str = "academy-lab-gateway";
/// The label selector of every kernel pod this gateway owns.
pub const OWNED_SELECTOR: &str = "app.kubernetes.io/managed-by=academy-lab-gateway";

/// A DNS-1123 label (at most 63 characters of `[a-z0-9-]`, starting and
/// ending alphanumeric) made from `s`; never empty.
pub fn dns_label(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out.trim_matches('-').chars().take(max).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() { "x".into() } else { out }
}

/// Whether `s` is a DNS-1123 label of at most `max` characters.
fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Hex digits of the hash that tells apart users whose names sanitise alike.
const USER_HASH_LEN: usize = 10;

/// FNV-1a, 64 bits: stable across versions and platforms (the names it
/// makes are kept in the cluster), unlike std's hasher.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether `s` ends as [`user_label`]'s hashed names do: `-` and
/// [`USER_HASH_LEN`] lower-case hex digits.
fn looks_hashed(s: &str) -> bool {
    let Some(split) = s.len().checked_sub(USER_HASH_LEN + 1) else {
        return false;
    };
    let (_, tail) = s.split_at(split);
    tail.starts_with('-')
        && tail[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A user's part of a namespace or volume name: a DNS-1123 label of at most
/// `max` characters (at least `USER_HASH_LEN + 2`), different for different
/// users (issue 13, item 9: `ana.lee`, `ana_lee` and `Ana-Lee` must not
/// share notebooks).
///
/// A name that already is such a label is kept as it is (so the volumes of
/// `alice` or `bob-smith` keep their names), unless it ends like a hashed
/// name does. Any other name becomes its sanitised form, cut to fit, then
/// `-` and a hash of the whole name. Kept names never end like hashed ones,
/// so the two kinds never meet; two hashed names meet only if their
/// sanitised forms and 40-bit hashes both coincide.
pub fn user_label(user: &str, max: usize) -> String {
    let max = max.clamp(USER_HASH_LEN + 2, 63);
    if is_dns_label(user, max) && !looks_hashed(user) {
        return user.to_owned();
    }
    let hash = format!("{:016x}", fnv1a(user));
    let stem = dns_label(user, max - USER_HASH_LEN - 1);
    format!("{stem}-{}", &hash[..USER_HASH_LEN])
}

/// `template` with `{user}` replaced by the user's label, the label cut so
/// that the whole stays a DNS-1123 label (63 characters).
fn user_name_from(template: &str, user: &str) -> String {
    let fixed = template.replace("{user}", "").len();
    template.replace("{user}", &user_label(user, 63usize.saturating_sub(fixed)))
}

/// `<user>-<kernel-id>`: unique by the id, readable by the user.
pub fn pod_name(user: &str, kernel_id: uuid::Uuid) -> String {
    // 36 for the id and one dash leave 26 for the user.
    format!("{}-{kernel_id}", dns_label(user, 26))
}

/// The connection Secret's name.
pub fn secret_name(pod: &str) -> String {
    format!("{pod}-connection")
}

/// The namespace a user's kernels run in.
pub fn namespace_for(config: &KubeConfig, user: &str) -> String {
    match &config.namespace_per_user {
        Some(template) => user_name_from(template, user),
        None => config.namespace.clone(),
    }
}

/// A label value (at most 63 characters of `[A-Za-z0-9-_.]`, alphanumeric at
/// both ends).
pub(super) fn label_value(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The extended resource that holds `model` GPUs: `nvidia.com/gpu`, or a MIG
/// device such as `nvidia.com/mig-1g.10gb`.
pub fn gpu_resource(config: &KubeConfig, model: Option<&str>) -> String {
    match model {
        Some(m) if is_mig_profile(m) => format!("nvidia.com/mig-{m}"),
        _ => config.gpu_resource.clone(),
    }
}

/// The name of a user's notebooks PVC, if the config asks for one.
pub fn notebooks_pvc_name(config: &KubeConfig, user: &str) -> Option<String> {
    config
        .notebooks_pvc
        .as_ref()
        .map(|t| user_name_from(t, user))
}
