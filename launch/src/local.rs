//! The local backend: each kernel is a process group on this machine.
//!
//! The kernel gets a fresh connection file (mode 0600) with a random key,
//! its user's working directory, and an environment built from scratch, so
//! none of the gateway's secrets reach it. It leads its own process group,
//! so a kill reaches everything it started (evcxr's child, a shell).
//!
//! Processes are reaped by a background task, so a kernel that dies is seen
//! as dead at once and never lingers as a zombie.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use jupyter_protocol::{ConnectionInfo, Transport};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::launcher::{KernelLocator, KernelSignal, LaunchError, LaunchSpec, Launched, Launcher};
use crate::sandbox::{Grants, Sandbox};

/// Variables of the gateway's own environment a kernel may inherit.
const INHERITED: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "RUSTUP_HOME",
    "CARGO_HOME",
    // Where the CUDA libraries are, for GPU kernels.
    "LD_LIBRARY_PATH",
];

/// The local backend's own failures (labelled `local`).
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("no free ports for the kernel: {0}")]
    Ports(String),
    #[error("cannot signal kernel process {pid}: {errno}")]
    Signal { pid: i32, errno: nix::errno::Errno },
}

impl From<LocalError> for LaunchError {
    fn from(e: LocalError) -> LaunchError {
        LaunchError::backend("local", e)
    }
}

pub struct LocalLauncher {
    /// Where connection files live (the gateway's runtime dir).
    runtime_dir: PathBuf,
    /// What keeps kernels away from the gateway's data; `None` runs them
    /// as plain processes.
    sandbox: Option<Sandbox>,
}

/// Ports handed to live kernels, process-wide: concurrent starts, even by two
/// launchers in one process, must never share one.
static RESERVED: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<uuid::Uuid, Vec<u16>>>,
> = std::sync::LazyLock::new(Default::default);

impl LocalLauncher {
    pub fn new(runtime_dir: impl Into<PathBuf>) -> Self {
        LocalLauncher {
            runtime_dir: runtime_dir.into(),
            sandbox: None,
        }
    }

    /// Confines every kernel started from now on (see [`crate::sandbox`]).
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// A kernel's private temp dir: other kernels' temp files are out of
    /// its reach, and it is removed with the kernel.
    fn temp_dir(&self, kernel_id: uuid::Uuid) -> PathBuf {
        self.runtime_dir.join(format!("kernel-{kernel_id}.tmp"))
    }

    fn connection_file(&self, kernel_id: uuid::Uuid) -> PathBuf {
        self.runtime_dir.join(format!("kernel-{kernel_id}.json"))
    }

    /// Five free ports that no other live kernel of this gateway holds.
    async fn reserve_ports(&self, kernel_id: uuid::Uuid) -> Result<Vec<u16>, LaunchError> {
        for _ in 0..20 {
            let ports = jupyter_zmq_client::peek_ports(IpAddr::V4(Ipv4Addr::LOCALHOST), 5)
                .await
                .map_err(|e| LocalError::Ports(e.to_string()))?;
            let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
            let taken = reserved.values().flatten().any(|p| ports.contains(p));
            let distinct =
                ports.iter().collect::<std::collections::HashSet<_>>().len() == ports.len();
            if !taken && distinct {
                reserved.insert(kernel_id, ports.clone());
                return Ok(ports);
            }
        }
        Err(LocalError::Ports("no five distinct free ports after 20 tries".into()).into())
    }

    fn log_file(&self, kernel_id: uuid::Uuid) -> PathBuf {
        self.runtime_dir.join(format!("kernel-{kernel_id}.log"))
    }
}

/// The environment a kernel starts with: a few inherited variables, then
/// the spec's and the user's.
pub fn kernel_env(spec_env: &BTreeMap<String, String>, home: &Path) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = INHERITED
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect();
    // Cargo and rustup find their toolchains under the real HOME; a kernel
    // whose HOME is its notebook root would lose them.
    if let Ok(real_home) = std::env::var("HOME") {
        env.entry("CARGO_HOME".into())
            .or_insert_with(|| format!("{real_home}/.cargo"));
        env.entry("RUSTUP_HOME".into())
            .or_insert_with(|| format!("{real_home}/.rustup"));
    }
    env.insert("HOME".into(), home.display().to_string());
    env.extend(spec_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Where `program` is: itself when it names a path, else its first match
/// on `path` (the kernel's `PATH`).
impl LocalLauncher {
    /// The cargo home of `user`'s confined kernels, `DATA/cargo/USER`: what
    /// they download and compile is theirs alone. None for unconfined
    /// kernels (they could write any cargo home) and pooled ones (no user
    /// yet), which keep the shared one.
    fn user_cargo_home(&self, user: &str) -> Option<PathBuf> {
        let plain = !user.is_empty() && !user.starts_with('.') && !user.contains('/');
        (self.sandbox.is_some() && plain).then(|| {
            let data_dir = self.runtime_dir.parent().unwrap_or(&self.runtime_dir);
            data_dir.join("cargo").join(user)
        })
    }

    /// The kernelspec's own files its argv names (a launcher script, a
    /// config): absolute paths of existing regular files, read only. The
    /// argv comes from an installed kernelspec, never from a user; nothing
    /// under the gateway's data dir qualifies.
    fn spec_files(&self, args: &[String]) -> Vec<PathBuf> {
        let data_dir = self.runtime_dir.parent().unwrap_or(&self.runtime_dir);
        let data_dir = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        args.iter()
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && p.is_file())
            .filter_map(|p| p.canonicalize().ok())
            .filter(|p| !p.starts_with(&data_dir))
            .collect()
    }
}

fn find_program(program: &str, path: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The dirs a kernel runs its tools from, to be readable in the sandbox:
/// its `PATH` and `LD_LIBRARY_PATH` entries and `RUSTUP_HOME`.
fn toolchain_dirs(env: &BTreeMap<String, String>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["PATH", "LD_LIBRARY_PATH"]
        .iter()
        .filter_map(|k| env.get(*k))
        .flat_map(std::env::split_paths)
        .filter(|p| p.is_absolute())
        .collect();
    dirs.extend(env.get("RUSTUP_HOME").map(PathBuf::from));
    dirs
}

#[async_trait::async_trait]
impl Launcher for LocalLauncher {
    async fn launch(&self, spec: LaunchSpec) -> Result<Launched, LaunchError> {
        let (program, args) = spec
            .argv
            .split_first()
            .ok_or_else(|| LaunchError::Spec("the kernelspec has an empty argv".into()))?;
        let ports = self.reserve_ports(spec.kernel_id).await?;
        let connection = ConnectionInfo {
            ip: "127.0.0.1".into(),
            transport: Transport::TCP,
            shell_port: ports[0],
            iopub_port: ports[1],
            stdin_port: ports[2],
            control_port: ports[3],
            hb_port: ports[4],
            key: uuid::Uuid::new_v4().simple().to_string()
                + &uuid::Uuid::new_v4().simple().to_string(),
            signature_scheme: "hmac-sha256".into(),
            kernel_name: None,
        };
        let files = |source| LaunchError::Io {
            doing: format!(
                "prepare the kernel's files in {}",
                self.runtime_dir.display()
            ),
            source,
        };
        std::fs::create_dir_all(&self.runtime_dir).map_err(files)?;
        std::fs::create_dir_all(&spec.cwd).map_err(files)?;
        let file = self.connection_file(spec.kernel_id);
        let json = serde_json::to_vec(&connection).map_err(|e| files(std::io::Error::other(e)))?;
        std::fs::write(&file, json).map_err(files)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(files)?;

        let tmp = self.temp_dir(spec.kernel_id);
        std::fs::create_dir_all(&tmp).map_err(files)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)).map_err(files)?;
        let mut env = kernel_env(&spec.env, &spec.cwd);
        // A confined kernel compiles from its user's own cargo home; the
        // shared one stays readable (its binaries, its downloaded sources).
        let shared_cargo = env.get("CARGO_HOME").map(PathBuf::from);
        let mut read_write = vec![spec.cwd.clone(), tmp.clone()];
        if let Some(own) = self.user_cargo_home(&spec.user) {
            std::fs::create_dir_all(&own).map_err(files)?;
            env.insert("CARGO_HOME".into(), own.display().to_string());
            read_write.push(own);
        }
        let confinement = match &self.sandbox {
            None => None,
            Some(sandbox) => sandbox
                .prepare(&Grants {
                    read_write,
                    read: std::iter::once(file.clone())
                        .chain(self.spec_files(args))
                        .collect(),
                    program: find_program(program, env.get("PATH").map(String::as_str)),
                    toolchain: toolchain_dirs(&env),
                    cargo_home: shared_cargo,
                    gpus: spec.gpus.clone(),
                    bind_ports: ports.clone(),
                })
                .map_err(LaunchError::from)?,
        };

        env.insert("TMPDIR".into(), tmp.display().to_string());
        if spec.gpus.is_empty() {
            env.insert("CUDA_VISIBLE_DEVICES".into(), String::new());
        } else {
            env.insert("CUDA_VISIBLE_DEVICES".into(), spec.gpus.join(","));
        }
        // The kernel's output goes to its own log, never to the gateway's
        // stdout: a gateway restart must not leave it writing to a dead pipe.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file(spec.kernel_id))
            .map_err(files)?;
        let log2 = log.try_clone().map_err(files)?;
        let file_arg = file.display().to_string();
        let mut cmd = std::process::Command::new(program);
        cmd.args(
            args.iter()
                .map(|a| a.replace("{connection_file}", &file_arg)),
        )
        .env_clear()
        .envs(&env)
        .current_dir(&spec.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0);
        if let Some(confinement) = confinement {
            // SAFETY: `apply` only makes system calls (no allocation, no
            // locks), which is what may run between fork and exec.
            unsafe {
                cmd.pre_exec(move || confinement.apply());
            }
        }
        let mut child = cmd.spawn().map_err(|source| LaunchError::Io {
            doing: format!("start {program}"),
            source,
        })?;
        let pid = child.id() as i32;
        let started = process_start(pid);
        tracing::info!(kernel_id = %spec.kernel_id, pid, "kernel process started");
        // Reap it when it exits, so it never stays a zombie.
        std::thread::spawn(move || {
            let status = child.wait();
            tracing::info!(pid, ?status, "kernel process exited");
        });
        Ok(Launched {
            connection,
            locator: KernelLocator::Local { pid, started },
        })
    }

    async fn signal(
        &self,
        locator: &KernelLocator,
        signal: KernelSignal,
    ) -> Result<(), LaunchError> {
        let KernelLocator::Local { pid, started } = locator else {
            return Err(LaunchError::Foreign(locator.clone()));
        };
        if !is_same_process(*pid, started.as_deref()) {
            // The kernel is gone and its pid may belong to someone else now.
            return Ok(());
        }
        let sig = match signal {
            KernelSignal::Interrupt => Signal::SIGINT,
            KernelSignal::Kill => Signal::SIGKILL,
        };
        match killpg(Pid::from_raw(*pid), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(errno) => Err(LocalError::Signal { pid: *pid, errno }.into()),
        }
    }

    async fn is_alive(&self, locator: &KernelLocator) -> bool {
        let KernelLocator::Local { pid, started } = locator else {
            return false;
        };
        is_process_running(*pid) && is_same_process(*pid, started.as_deref())
    }

    async fn cleanup(&self, kernel_id: uuid::Uuid, _locator: &KernelLocator) {
        let _ = std::fs::remove_file(self.connection_file(kernel_id));
        let _ = std::fs::remove_file(self.log_file(kernel_id));
        let _ = std::fs::remove_dir_all(self.temp_dir(kernel_id));
        RESERVED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&kernel_id);
    }

    async fn log_tail(&self, kernel_id: uuid::Uuid, max_bytes: usize) -> String {
        let text = std::fs::read(self.log_file(kernel_id)).unwrap_or_default();
        let start = text.len().saturating_sub(max_bytes);
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// At gateway start: stops the kernels that still have a connection file
    /// in the runtime dir but are not in `known` (a start whose record was
    /// never written, a warm-pool kernel of a gateway that was killed), and
    /// removes their files. Such a kernel is found by its connection file's
    /// path on its command line, and its whole process group is killed.
    async fn adopt(
        &self,
        known: &std::collections::HashSet<uuid::Uuid>,
    ) -> Result<Vec<uuid::Uuid>, LaunchError> {
        let Ok(entries) = std::fs::read_dir(&self.runtime_dir) else {
            return Ok(Vec::new());
        };
        let unknown: Vec<uuid::Uuid> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let id = name
                    .to_str()?
                    .strip_prefix("kernel-")?
                    .strip_suffix(".json")?;
                id.parse::<uuid::Uuid>().ok()
            })
            .filter(|id| !known.contains(id))
            .collect();
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        let processes = command_lines();
        let mut stopped = Vec::new();
        for id in unknown {
            let file = self.connection_file(id).display().to_string();
            let mut found = false;
            for (pid, _) in processes.iter().filter(|(_, cmd)| cmd.contains(&file)) {
                let pid = Pid::from_raw(*pid);
                tracing::warn!(kernel_id = %id, %pid, "stopping a kernel that has no record");
                let result = if nix::unistd::getpgid(Some(pid)) == Ok(pid) {
                    killpg(pid, Signal::SIGKILL)
                } else {
                    nix::sys::signal::kill(pid, Signal::SIGKILL)
                };
                found |= result.is_ok();
            }
            let gone = KernelLocator::Local {
                pid: 0,
                started: None,
            };
            self.cleanup(id, &gone).await;
            if found {
                stopped.push(id);
            }
        }
        Ok(stopped)
    }
}

/// Every live process's pid and command line (arguments joined by spaces).
fn command_lines() -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            is_process_running(pid).then_some((pid, cmd))
        })
        .collect()
}

/// Whether `pid` is a live process (not a zombie). Reads /proc, where a
/// reaped or zombie process shows as gone or as state `Z`.
pub fn is_process_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// When `pid` started, as `BOOT_ID/TICKS` (the boot, and the start time in
/// clock ticks since it, field 22 of `/proc/PID/stat`).
pub fn process_start(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is 3rd,
    // so starttime (22nd) is the 20th after it.
    let ticks = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(format!("{}/{ticks}", boot.trim()))
}

/// Whether `pid` is still the process that started at `started` (a locator
/// recorded before start times were kept is trusted).
fn is_same_process(pid: i32, started: Option<&str>) -> bool {
    started.is_none_or(|s| process_start(pid).as_deref() == Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_for(user: &str) -> LaunchSpec {
        LaunchSpec {
            kernel_id: uuid::Uuid::new_v4(),
            argv: vec![],
            env: BTreeMap::new(),
            cwd: PathBuf::new(),
            gpus: vec![],
            user: user.into(),
            group: None,
            gpu_model: None,
            cpu: None,
            memory: None,
            progress: None,
        }
    }

    #[test]
    fn kernel_env_keeps_no_gateway_secret() {
        // SAFETY: tests in this module do not read LAB_SECRET concurrently.
        unsafe { std::env::set_var("LAB_SECRET", "s3cret") };
        let env = kernel_env(
            &BTreeMap::from([("A".into(), "1".into())]),
            Path::new("/home/u"),
        );
        assert!(!env.contains_key("LAB_SECRET"));
        assert_eq!(env["HOME"], "/home/u");
        assert_eq!(env["A"], "1");
    }

    #[tokio::test]
    async fn launches_a_process_group_with_a_private_connection_file_and_kills_it() {
        let dir = tempfile::tempdir().unwrap();
        let launcher = LocalLauncher::new(dir.path().join("runtime"));
        let id = uuid::Uuid::new_v4();
        let out = dir.path().join("env.txt");
        let spec = LaunchSpec {
            kernel_id: id,
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "env > {}; cat {{connection_file}} >> {}; sleep 30",
                    out.display(),
                    out.display()
                ),
            ],
            env: BTreeMap::from([("KERNEL_USERNAME".into(), "alice".into())]),
            cwd: dir.path().join("alice"),
            gpus: vec!["1".into()],
            ..spec_for("alice")
        };
        let launched = launcher.launch(spec).await.unwrap();
        let file = dir.path().join(format!("runtime/kernel-{id}.json"));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for _ in 0..100 {
            if std::fs::read_to_string(&out).is_ok_and(|s| s.contains("hmac-sha256")) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let seen = std::fs::read_to_string(&out).unwrap();
        assert!(seen.contains("KERNEL_USERNAME=alice"), "{seen}");
        assert!(seen.contains("CUDA_VISIBLE_DEVICES=1"), "{seen}");
        assert!(launcher.is_alive(&launched.locator).await);
        launcher
            .signal(&launched.locator, KernelSignal::Kill)
            .await
            .unwrap();
        for _ in 0..100 {
            if !launcher.is_alive(&launched.locator).await {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!launcher.is_alive(&launched.locator).await);
        launcher.cleanup(id, &launched.locator).await;
        assert!(!file.exists());
    }

    /// Runs `script` as a kernel confined to `alice`'s root in a data dir
    /// that also holds a database and `bob`'s notebook; returns its output.
    async fn confined_run(script: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("run-7/data");
        std::fs::create_dir_all(data.join("users/bob")).unwrap();
        std::fs::write(data.join("lab.db"), "token hashes").unwrap();
        std::fs::write(data.join("users/bob/secret.ipynb"), "bob's").unwrap();
        // As pytest's `pytest-current`: a link beside an ancestor, to it.
        std::os::unix::fs::symlink(dir.path().join("run-7"), dir.path().join("run-current"))
            .unwrap();
        let launcher = LocalLauncher::new(data.join("runtime"))
            .with_sandbox(Sandbox::new(crate::sandbox::SandboxMode::Require, &data));
        let id = uuid::Uuid::new_v4();
        let script = script
            .replace("$DATA", &data.display().to_string())
            .replace("$GATEWAY", &std::process::id().to_string());
        let spec = LaunchSpec {
            kernel_id: id,
            argv: vec!["/bin/sh".into(), "-c".into(), script + "; echo END"],
            env: BTreeMap::new(),
            cwd: data.join("users/alice"),
            gpus: vec![],
            ..spec_for("alice")
        };
        let launched = launcher.launch(spec).await.unwrap();
        for _ in 0..300 {
            if launcher.log_tail(id, 4096).await.contains("END") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let out = launcher.log_tail(id, 4096).await;
        launcher.cleanup(id, &launched.locator).await;
        assert!(!data.join(format!("runtime/kernel-{id}.tmp")).exists());
        out
    }

    #[tokio::test]
    async fn a_confined_kernel_reaches_its_own_files_but_not_the_gateways_or_other_users() {
        if !Sandbox::supported() {
            eprintln!("SKIPPED: this Linux lacks Landlock ABI 6");
            return;
        }
        let out = confined_run(
            "cat $DATA/lab.db || echo NO-DB; \
             cat $DATA/users/bob/secret.ipynb || echo NO-BOB; \
             ls $DATA/users || echo NO-LIST; \
             echo mine > own.txt && cat own.txt; \
             echo t > $TMPDIR/t && echo TMP-OK; \
             grep -q hmac {connection_file} && echo CONN-OK; \
             kill -0 $GATEWAY || echo NO-SIGNAL; \
             cat /proc/$GATEWAY/environ || echo NO-ENVIRON; \
             test -x /bin/ls && echo EXEC-OK; \
             touch /usr/lab-escape || echo NO-WRITE-USR; \
             grep CapEff /proc/self/status",
        )
        .await;
        for want in [
            "NO-DB",
            "NO-BOB",
            "NO-LIST",
            "mine",
            "TMP-OK",
            "CONN-OK",
            "NO-SIGNAL",
            "NO-ENVIRON",
            "EXEC-OK",
            "NO-WRITE-USR",
            "CapEff:\t0000000000000000",
        ] {
            assert!(out.contains(want), "{want} missing from:\n{out}");
        }
        assert!(
            !out.contains("token hashes") && !out.contains("bob's"),
            "{out}"
        );
        assert!(!std::path::Path::new("/usr/lab-escape").exists());
    }

    /// Runs `argv` as a kernel of `user` confined to `data`; returns what it
    /// printed once it printed `END` (or gave up waiting).
    async fn run_in(data: &Path, user: &str, argv: Vec<String>, gpus: Vec<String>) -> String {
        let launcher = LocalLauncher::new(data.join("runtime"))
            .with_sandbox(Sandbox::new(Default::default(), data));
        let id = uuid::Uuid::new_v4();
        let spec = LaunchSpec {
            kernel_id: id,
            argv,
            env: BTreeMap::new(),
            cwd: data.join("users").join(user),
            gpus,
            ..spec_for(user)
        };
        let launched = launcher.launch(spec).await.unwrap();
        for _ in 0..1000 {
            if launcher.log_tail(id, 8192).await.contains("END") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let out = launcher.log_tail(id, 8192).await;
        launcher
            .signal(&launched.locator, KernelSignal::Kill)
            .await
            .unwrap();
        launcher.cleanup(id, &launched.locator).await;
        out
    }

    /// Issue 13, items 2, 6 and 15: what lies outside the data dir but is
    /// no system tree (a planted `~/.ssh` key), a listening Unix socket,
    /// the gateway's command line, a GPU node the kernel was not admitted
    /// for, and another kernel's `/dev/shm` file are all out of reach.
    #[tokio::test]
    async fn a_confined_kernel_reaches_no_home_socket_cmdline_other_gpu_or_shared_shm() {
        if !Sandbox::supported() {
            eprintln!("SKIPPED: this Linux lacks Landlock ABI 6");
            return;
        }
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
        if !python.exists() {
            eprintln!("SKIPPED: no .venv/bin/python");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(dir.path().join("home/.ssh")).unwrap();
        let key = dir.path().join("home/.ssh/id_test");
        std::fs::write(&key, "PLANTED-KEY").unwrap();
        let dev = dir.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        for n in ["nvidia0", "nvidia1", "nvidiactl"] {
            std::fs::write(dev.join(n), n).unwrap();
        }
        // SAFETY: only this test sets LAB_TEST_DEV_DIR; other tests start no GPU kernel.
        unsafe { std::env::set_var("LAB_TEST_DEV_DIR", &dev) };
        let sock = dir.path().join("home/bus.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let shm = format!("/dev/shm/lab-test-{}", uuid::Uuid::new_v4().simple());
        let script = format!(
            r#"
import os, socket
def attempt(label, f):
    try:
        f(); print(label, 'OK')
    except OSError as e:
        print(label, 'DENIED', type(e).__name__)
attempt('key', lambda: print(open({key:?}).read()))
attempt('cmdline', lambda: print(open('/proc/{gw}/cmdline').read()))
attempt('unix', lambda: socket.socket(socket.AF_UNIX).connect({sock:?}))
attempt('gpu0', lambda: open({dev:?} + '/nvidia0', 'r+').read())
attempt('gpu1', lambda: open({dev:?} + '/nvidia1', 'r+').read())
attempt('shm-write', lambda: open({shm:?}, 'w').write('SHM-SECRET'))
a, b = socket.socketpair(); a.send(b'x'); print('pair', b.recv(1))
print('END')
"#,
            key = key.display().to_string(),
            gw = std::process::id(),
            sock = sock.display().to_string(),
            dev = dev.display().to_string(),
        );
        let argv = |code: String| vec![python.display().to_string(), "-c".into(), code];
        let a = run_in(&data, "alice", argv(script), vec!["0".into()]).await;
        for want in [
            "key DENIED",
            "cmdline DENIED",
            "unix DENIED",
            "gpu0 OK",
            "gpu1 DENIED",
            "shm-write OK",
            "pair b'x'",
        ] {
            assert!(a.contains(want), "{want} missing from:\n{a}");
        }
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_err(), "the kernel reached the socket");
        let b = run_in(
            &data,
            "bob",
            argv(format!(
                "try:\n print(open({shm:?}).read())\nexcept OSError as e:\n print('shm-read DENIED', e)\nprint('END')"
            )),
            vec![],
        )
        .await;
        let _ = std::fs::remove_file(&shm);
        assert!(
            b.contains("shm-read DENIED") && !b.contains("SHM-SECRET"),
            "{b}"
        );
    }

    #[tokio::test]
    async fn a_reused_pid_is_not_taken_for_the_kernel() {
        let launcher = LocalLauncher::new(std::env::temp_dir());
        let me = std::process::id() as i32;
        let this = KernelLocator::Local {
            pid: me,
            started: process_start(me),
        };
        assert!(
            this.clone()
                != KernelLocator::Local {
                    pid: me,
                    started: None
                }
        );
        assert!(launcher.is_alive(&this).await);
        // The same pid, started at another time: a different process.
        let other = KernelLocator::Local {
            pid: me,
            started: Some("another-boot/1".into()),
        };
        assert!(!launcher.is_alive(&other).await);
        // Killing it would kill this test's process group; it is a no-op.
        launcher.signal(&other, KernelSignal::Kill).await.unwrap();
    }

    #[tokio::test]
    async fn sandbox_off_is_a_plain_process() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(crate::sandbox::SandboxMode::Off, dir.path());
        assert!(sandbox.prepare(&Default::default()).unwrap().is_none());
    }
}
