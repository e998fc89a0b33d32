//! Starting a local kernel: its files (ports, connection file, temp dir),
//! what its user's start gets (the environment, the folder, the limits and
//! the confinement, built here in the gateway), and the process itself.
//!
//! A cold start execs the kernel with all of that applied in the forked
//! child. A pooled start ([`LocalLauncher::prespawn`]) execs it with none
//! of it, and the same [`Prepared`] goes to it later, at its handover
//! ([`super::pooled`]): a pooled kernel ends up exactly as a cold one.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;

use handover::{Confinement, Limits};
use jupyter_protocol::{ConnectionInfo, Transport};

use super::env::{find_program, kernel_env, toolchain_dirs};
use super::{LocalLauncher, child, ports, process, reaper, shares, start_in};
use crate::launcher::{KernelLocator, LaunchError, LaunchSpec, Launched};
use crate::sandbox::Grants;

/// What a start of one kernel for its user gets, built before the fork.
pub(super) struct Prepared {
    pub env: BTreeMap<String, String>,
    /// Where it starts: its user's folder, or a folder in it.
    pub dir: PathBuf,
    pub limits: Limits,
    pub confinement: Option<Confinement>,
}

/// What the forked child does before exec.
struct PreExec {
    limits: Limits,
    confinement: Option<Confinement>,
    /// The kernel's end of its launch channel, inherited across exec.
    channel: Option<RawFd>,
}

impl PreExec {
    /// Runs in the forked child: system calls only, no allocation, no locks.
    fn apply(&self) -> std::io::Result<()> {
        child::become_subreaper()?;
        self.limits.apply()?;
        if let Some(fd) = self.channel {
            // SAFETY: clears close-on-exec on a descriptor this child owns.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        match &self.confinement {
            Some(c) => c.apply(),
            None => Ok(()),
        }
    }
}

fn files_error(dir: &std::path::Path) -> impl Fn(std::io::Error) -> LaunchError + '_ {
    move |source| LaunchError::Io {
        doing: format!("prepare the kernel's files in {}", dir.display()),
        source,
    }
}

impl LocalLauncher {
    /// A kernel's five ports, its connection file (0600, a fresh key) and
    /// its private temp dir (0700).
    pub(super) async fn make_files(
        &self,
        spec: &LaunchSpec,
    ) -> Result<ConnectionInfo, LaunchError> {
        let ports = ports::reserve(spec.kernel_id).await?;
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
        let files = files_error(&self.runtime_dir);
        std::fs::create_dir_all(&self.runtime_dir).map_err(&files)?;
        std::fs::create_dir_all(&spec.cwd).map_err(&files)?;
        let file = self.connection_file(spec.kernel_id);
        let json = serde_json::to_vec(&connection).map_err(|e| files(std::io::Error::other(e)))?;
        std::fs::write(&file, json).map_err(&files)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(&files)?;
        let tmp = self.temp_dir(spec.kernel_id);
        std::fs::create_dir_all(&tmp).map_err(&files)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)).map_err(&files)?;
        Ok(connection)
    }

    /// What `spec`'s kernel gets: its environment, folder, limits and
    /// confinement (granting its connection's ports and its files).
    pub(super) fn prepare(
        &self,
        spec: &LaunchSpec,
        connection: &ConnectionInfo,
    ) -> Result<Prepared, LaunchError> {
        let files = files_error(&self.runtime_dir);
        let (program, args) = split_argv(spec)?;
        std::fs::create_dir_all(&spec.cwd).map_err(&files)?;
        let file = self.connection_file(spec.kernel_id);
        let tmp = self.temp_dir(spec.kernel_id);
        let mut env = kernel_env(&spec.env, &spec.cwd);
        // A confined kernel compiles from its user's own cargo home; the
        // shared one stays readable (its binaries, its downloaded sources).
        let shared_cargo = env.get("CARGO_HOME").map(PathBuf::from);
        let mut read_write = vec![spec.cwd.clone(), tmp.clone()];
        if let Some(own) = self.user_cargo_home(&spec.user) {
            std::fs::create_dir_all(&own).map_err(&files)?;
            env.insert("CARGO_HOME".into(), own.display().to_string());
            read_write.push(own);
        }
        let mut shared = Vec::new();
        for mount in &spec.read_only {
            match shares::show(&spec.cwd, mount) {
                Ok(source) => shared.push(source),
                // An offline run (a code submission's) cannot do without its
                // files: the start fails, the gateway's failure, not the run's.
                Err(e) if spec.offline => {
                    return Err(LaunchError::Spec(format!(
                        "the read-only folder {} cannot be shown to the run: {e}",
                        mount.at.display()
                    )));
                }
                Err(e) => {
                    tracing::warn!(kernel_id = %spec.kernel_id, error = %e, "a read-only folder is not shown to a kernel")
                }
            }
        }
        let confinement = match &self.sandbox {
            None => None,
            Some(sandbox) => sandbox
                .prepare(&Grants {
                    read_write,
                    read: std::iter::once(file)
                        .chain(self.spec_files(args))
                        .chain(shared)
                        .collect(),
                    program: find_program(program, env.get("PATH").map(String::as_str)),
                    toolchain: toolchain_dirs(&env),
                    cargo_home: shared_cargo,
                    gpus: spec.gpus.clone(),
                    bind_ports: ports_of(connection),
                    offline: spec.offline,
                    memory_limited: spec.memory_limit.is_some(),
                })
                .map_err(LaunchError::from)?,
        };
        env.insert("TMPDIR".into(), tmp.display().to_string());
        env.insert("CUDA_VISIBLE_DEVICES".into(), spec.gpus.join(","));
        Ok(Prepared {
            env,
            dir: start_in(&spec.cwd, spec.workdir.as_deref()).to_owned(),
            limits: child::limits(spec.memory_limit),
            confinement,
        })
    }

    /// Execs `spec`'s program as `prepared` says, with `channel` (the
    /// kernel's end of its launch channel) inherited when there is one.
    pub(super) fn spawn(
        &self,
        spec: &LaunchSpec,
        connection: ConnectionInfo,
        mut prepared: Prepared,
        channel: Option<&handover::End>,
    ) -> Result<Launched, LaunchError> {
        let files = files_error(&self.runtime_dir);
        let (program, args) = split_argv(spec)?;
        if let Some(end) = channel {
            prepared.env.insert(
                handover::channel::FD_VAR.into(),
                end.as_raw_fd().to_string(),
            );
        }
        // The kernel's output goes to its own log, never to the gateway's
        // stdout: a gateway restart must not leave it writing to a dead pipe.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file(spec.kernel_id))
            .map_err(&files)?;
        let log2 = log.try_clone().map_err(&files)?;
        let file_arg = self.connection_file(spec.kernel_id).display().to_string();
        let mut cmd = std::process::Command::new(program);
        cmd.args(
            args.iter()
                .map(|a| a.replace("{connection_file}", &file_arg)),
        )
        .env_clear()
        .envs(&prepared.env)
        .current_dir(&prepared.dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0);
        let setup = PreExec {
            limits: prepared.limits,
            confinement: prepared.confinement,
            channel: channel.map(|e| e.as_raw_fd()),
        };
        // SAFETY: `apply` only makes system calls (no allocation, no
        // locks), which is what may run between fork and exec.
        unsafe {
            cmd.pre_exec(move || setup.apply());
        }
        let child = reaper::spawn(&mut cmd).map_err(|source| LaunchError::Io {
            doing: format!("start {program}"),
            source,
        })?;
        let pid = child.id() as i32;
        let started = process::process_start(pid);
        tracing::info!(kernel_id = %spec.kernel_id, pid, "kernel process started");
        // Reap it when it exits, so it never stays a zombie.
        reaper::watch(child);
        Ok(Launched {
            connection,
            locator: KernelLocator::Local { pid, started },
        })
    }
}

fn split_argv(spec: &LaunchSpec) -> Result<(&String, &[String]), LaunchError> {
    spec.argv
        .split_first()
        .ok_or_else(|| LaunchError::Spec("the kernelspec has an empty argv".into()))
}

/// The five ports a kernel listens on.
pub(super) fn ports_of(c: &ConnectionInfo) -> Vec<u16> {
    vec![
        c.shell_port,
        c.iopub_port,
        c.stdin_port,
        c.control_port,
        c.hb_port,
    ]
}
