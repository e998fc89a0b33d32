//! The sandbox's pure parts: modes, granted trees, the seccomp program.
//! What a confined kernel can reach is tested in `local`'s tests.

use std::path::{Path, PathBuf};

use super::*;

fn sandbox_in(dir: &Path) -> Sandbox {
    let mut s = Sandbox::new(SandboxMode::Require, &dir.join("data"));
    s.protected.push(dir.join("home"));
    s
}

#[test]
fn modes_parse_and_the_default_requires_the_sandbox() {
    assert_eq!(SandboxMode::default(), SandboxMode::Require);
    assert_eq!("auto".parse(), Ok(SandboxMode::Require));
    assert_eq!("best-effort".parse(), Ok(SandboxMode::BestEffort));
    assert_eq!("off".parse(), Ok(SandboxMode::Off));
    assert!(
        "loose"
            .parse::<SandboxMode>()
            .unwrap_err()
            .contains("best-effort")
    );
}

#[test]
fn a_granted_tree_is_cut_around_the_data_dir_and_the_home() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    for p in ["data/users", "home/.ssh", "opt/tool", "other"] {
        std::fs::create_dir_all(dir.join(p)).unwrap();
    }
    let sandbox = sandbox_in(&dir);
    let mut got = sandbox.exclude(&dir).unwrap();
    got.sort();
    assert_eq!(got, vec![dir.join("opt"), dir.join("other")]);
    assert!(sandbox.exclude(&dir.join("home")).unwrap().is_empty());
    assert_eq!(
        sandbox.exclude(&dir.join("opt")).unwrap(),
        vec![dir.join("opt")]
    );
}

#[test]
fn cargo_credentials_are_never_granted() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["credentials.toml", "config.toml", "env"] {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    for d in ["bin", "registry"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let read = cargo_home_paths(dir.path()).unwrap();
    let names = |v: &[PathBuf]| {
        let mut n: Vec<String> = v
            .iter()
            .filter(|p| p.exists())
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&read), ["bin", "config.toml", "env", "registry"]);
}

#[test]
fn etc_secrets_and_other_gpus_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let (readable, writable) = sandbox_in(dir.path())
        .paths(&Grants {
            gpus: vec!["0".into()],
            ..Grants::default()
        })
        .unwrap();
    for secret in [
        "/etc/shadow",
        "/etc/ssh",
        "/etc/ssl/private",
        "/sys/firmware",
    ] {
        assert!(!readable.contains(&PathBuf::from(secret)), "{secret}");
    }
    assert!(readable.contains(&PathBuf::from("/usr")));
    assert!(!writable.contains(&PathBuf::from("/dev")));
    assert!(writable.contains(&PathBuf::from("/dev/null")));
    // No GPU node exists here (or only real ones): nvidia1 is never granted.
    assert!(!writable.iter().any(|p| p.ends_with("nvidia1")));
}

#[test]
fn the_seccomp_program_builds_for_this_architecture() {
    let plain = seccomp::program(&Grants::default()).unwrap();
    assert!(plain.len() > 4);
    // A memory limit adds its rules; what it denies is tested in `local`.
    let limited = Grants {
        memory_limited: true,
        ..Grants::default()
    };
    assert!(seccomp::program(&limited).unwrap().len() > plain.len());
}

#[test]
fn a_kernel_with_a_memory_limit_writes_neither_dev_shm_nor_dev_zero() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = sandbox_in(dir.path());
    let (_, writable) = sandbox.paths(&Grants::default()).unwrap();
    for dev in ["/dev/shm", "/dev/zero"] {
        let dev = PathBuf::from(dev);
        assert_eq!(writable.contains(&dev), dev.exists(), "{dev:?}");
    }
    let limited = Grants {
        memory_limited: true,
        ..Grants::default()
    };
    let (readable, writable) = sandbox.paths(&limited).unwrap();
    assert!(!writable.contains(&PathBuf::from("/dev/shm")));
    assert!(!writable.contains(&PathBuf::from("/dev/zero")));
    assert!(writable.contains(&PathBuf::from("/dev/null")));
    assert!(readable.contains(&PathBuf::from("/dev/zero")));
    assert!(!readable.contains(&PathBuf::from("/dev/shm")));
    // A private `/dev/shm` (a root gateway's) gets no rule either.
    if Sandbox::supported()
        && let Some(mounts) = sandbox.prepare(&limited).unwrap().unwrap().mounts
    {
        assert_eq!(mounts.shm_access, 0);
    }
}

#[test]
fn losses_name_what_an_older_landlock_lacks() {
    assert!(Sandbox::losses(Some(6)).is_empty());
    let three = Sandbox::losses(Some(3)).join("; ");
    assert!(
        three.contains("signal") && three.contains("ports"),
        "{three}"
    );
    assert!(Sandbox::losses(None)[0].contains("NOT confined"));
}
