//! A kill reaches the kernel's process group as well as its tree, and
//! signals the group only while its leader is held.

use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};

use super::*;

/// A process in the kernel's group that is not its descendant (here a
/// child of this test; a kernel of a gateway from before subreapers could
/// leave such a one) is killed with the kernel.
#[tokio::test]
async fn a_kill_reaches_the_kernels_group_beyond_its_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (launcher, id, locator, out) = start_script(dir.path(), "echo END; sleep 600", None).await;
    assert!(out.contains("END"), "{out}");
    let KernelLocator::Local { pid: kernel, .. } = locator else {
        unreachable!()
    };
    let mut member = std::process::Command::new("sleep")
        .arg("600")
        .process_group(kernel)
        .spawn()
        .unwrap();
    launcher.signal(&locator, KernelSignal::Kill).await.unwrap();
    let mut status = None;
    for _ in 0..500 {
        status = member.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if status.is_none() {
        member.kill().unwrap();
        member.wait().unwrap();
    }
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "{status:?}"
    );
    launcher.cleanup(id, &locator).await;
}
