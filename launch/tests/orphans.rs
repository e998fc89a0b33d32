//! A kernel that exits on its own (a shutdown request, a crash, an answer
//! calling `os._exit`) leaves no process behind where the gateway adopts
//! orphans, as `lab serve` does: what it still had running, in its group or
//! out of it, is re-parented to the gateway and killed at once. The
//! gateway's other children (a container's PID 1 has some; so has
//! `daemon & exec lab serve`) are left alone: those it had when it began
//! adopting, and any older than the kernel.
//!
//! Its own test binary: adopting orphans is process-wide (so nothing else
//! here may start processes).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use launch::local::LocalLauncher;
use launch::{KernelLocator, LaunchSpec, Launcher};

fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn pid_in(dir: &Path, file: &str) -> Option<i32> {
    std::fs::read_to_string(dir.join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn sleeper() -> std::process::Child {
    std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn what_an_exited_kernel_left_running_is_killed_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    // A child this process had before it adopted orphans...
    let mut before = sleeper();
    let launcher = LocalLauncher::new(dir.path().join("runtime"))
        .adopting_orphans()
        .unwrap();
    // ...and one it started later, but before the kernel (start times
    // count in clock ticks, 10 ms).
    let mut older = sleeper();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let work = dir.path().join("work");
    let id = uuid::Uuid::new_v4();
    let spec = LaunchSpec {
        kernel_id: id,
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            // A sleeper in the kernel's group, one that left it (its parent
            // exits at once), then the kernel exits.
            "sleep 600 & echo $! > child.pid; \
             setsid -f sh -c 'sleep 600 & echo $! > grandchild.pid; echo $$ > escaped.pid; wait'; \
             while [ ! -s escaped.pid ]; do sleep 0.01; done; exit 0"
                .into(),
        ],
        env: BTreeMap::new(),
        cwd: work.clone(),
        workdir: None,
        gpus: vec![],
        user: "alice".into(),
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
    };
    let launched = launcher.launch(spec).await.unwrap();
    let KernelLocator::Local { pid: kernel, .. } = launched.locator else {
        unreachable!()
    };
    let mut pids = Vec::new();
    for _ in 0..500 {
        pids = ["child.pid", "grandchild.pid", "escaped.pid"]
            .iter()
            .filter_map(|f| pid_in(&work, f))
            .collect();
        if pids.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pids.len(), 3, "the kernel did not start its processes");
    pids.push(kernel);
    for _ in 0..500 {
        if !pids.iter().any(|p| running(*p)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left: Vec<i32> = pids.into_iter().filter(|p| running(*p)).collect();
    assert!(left.is_empty(), "still running: {left:?}");
    // The sweep that killed them has had time to kill more.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (what, child) in [("before", &mut before), ("older", &mut older)] {
        let pid = child.id() as i32;
        assert!(
            running(pid),
            "the sweep killed a child that was no kernel's ({what})"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
    launcher.cleanup(id, &launched.locator).await;
}
