//! Kernel lifetimes at the edges: a start whose record cannot be written,
//! kernels left running with no record, and what a dropped gateway leaves
//! behind. Real academy-candle kernels, a real SQLite failure (a trigger
//! that aborts writes to the kernels table), real processes looked up in /proc.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use lab_gateway::kernels::CullPolicy;
use lab_gateway::scheduling::Scheduling;
use lab_gateway::store::{Role, Store};
use scheduler::Cluster;
use serde_json::json;

/// Live (not zombie) processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(needle) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.trim().chars().next());
        if !matches!(state, Some('Z') | Some('X') | None) {
            found.push(pid);
        }
    }
    found
}

/// The kernel processes a gateway started in its data dir.
fn kernels_of(g: &Gateway) -> Vec<i32> {
    processes_mentioning(&g.data.path().join("runtime").display().to_string())
}

/// Waits until `pred` holds, or panics after `timeout`.
async fn wait_until(what: &str, timeout: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A gateway over one modelled GPU, with no culling.
async fn one_gpu_gateway() -> Gateway {
    let cluster = Cluster::parse("1x1 H100-80GB").unwrap();
    start_gateway_configured(move |k, store: &Store| {
        let s = Arc::new(
            Scheduling::new(
                cluster,
                store.clone(),
                Default::default(),
                Default::default(),
            )
            .unwrap(),
        );
        k.with_scheduling(s)
            .with_queue_wait(Duration::ZERO)
            .with_cull(CullPolicy {
                idle_gpu: None,
                idle_cpu: None,
                max_runtime: None,
                ..CullPolicy::default()
            })
    })
    .await
}

/// Makes every write to the kernels table fail, as a full disk or a
/// read-only database would, through a second connection to the same file.
fn break_kernel_writes(g: &Gateway) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(g.data.path().join("lab.db")).unwrap();
    c.execute_batch(
        "CREATE TRIGGER test_no_kernels BEFORE INSERT ON kernels
         BEGIN SELECT RAISE(ABORT, 'database or disk is full (test)'); END;",
    )
    .unwrap();
    c
}

#[tokio::test]
async fn a_kernel_whose_record_cannot_be_written_is_stopped_before_its_gpu_is_handed_on() {
    let g = one_gpu_gateway().await;
    let ana = g.user_in("ana", Role::Engineer, None);
    let ben = g.user_in("ben", Role::Engineer, None);
    let db = break_kernel_writes(&g);

    let (status, body) = g
        .post(
            "/api/kernels",
            &ana,
            json!({"name": "academy-candle", "resources": {"gpus": 1}}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("could not be recorded")),
        "{body}"
    );
    // The answer comes only once the unrecorded process is gone.
    assert_eq!(
        kernels_of(&g),
        Vec::<i32>::new(),
        "an unrecorded kernel runs on"
    );

    // Its GPU is free again: the next start gets it.
    db.execute_batch("DROP TRIGGER test_no_kernels").unwrap();
    let (status, model) = g
        .post(
            "/api/kernels",
            &ben,
            json!({"name": "academy-candle", "resources": {"gpus": 1}}),
        )
        .await;
    assert_eq!(status, 201, "{model}");
    assert_eq!(model["resources"]["gpus"], 1, "{model}");
    assert_eq!(kernels_of(&g).len(), 1);
}

#[tokio::test]
async fn a_test_gateway_that_is_dropped_leaves_no_kernel_running() {
    let g = start_gateway().await;
    let ana = g.user("ana");
    g.start_kernel(&ana, "academy-candle").await;
    let runtime = g.data.path().join("runtime").display().to_string();
    assert_eq!(kernels_of(&g).len(), 1);
    drop(g);
    wait_until("the kernel to be gone", Duration::from_secs(10), || {
        processes_mentioning(&runtime).is_empty()
    })
    .await;
}
