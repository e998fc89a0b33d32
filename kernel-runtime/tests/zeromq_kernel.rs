//! The academy-candle kernel binary driven over real ZeroMQ sockets by the
//! Rust client of jupyter-zmq-client: execute, streaming, interrupt and
//! forged signatures. (The Python suite drives the same binary with
//! jupyter_client.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jupyter_protocol::{
    ExecuteRequest, InterruptRequest, JupyterMessage, JupyterMessageContent, MediaType, ReplyStatus,
};
use jupyter_zmq_client as zmq;

mod common;

use common::{outputs_of, shell_for, start_kernel, wait_ready, wait_subscribed};

#[tokio::test(flavor = "multi_thread")]
async fn candle_cell_streams_output_and_returns_its_value() {
    let k = start_kernel("candle").await;
    let session = uuid::Uuid::new_v4().to_string();
    let mut shell = shell_for(&k.info, &session).await;
    let mut iopub = zmq::create_client_iopub_connection(&k.info, "", &session)
        .await
        .unwrap();
    wait_subscribed(&mut shell, &mut iopub).await;

    let req: JupyterMessage =
        ExecuteRequest::new("print(\"hi\"); tensor([1.0, 2.0]).sum().item() + 1.0".into()).into();
    let id = req.header.msg_id.clone();
    shell.send(req).await.unwrap();
    let reply = shell.read().await.unwrap();
    let JupyterMessageContent::ExecuteReply(reply) = reply.content else {
        panic!("not an execute_reply")
    };
    assert!(matches!(reply.status, ReplyStatus::Ok));
    let outputs = outputs_of(&mut iopub, &id).await;
    let kinds: Vec<&str> = outputs.iter().map(|m| m.message_type()).collect();
    assert_eq!(kinds, ["execute_input", "stream", "execute_result"]);
    let JupyterMessageContent::ExecuteResult(result) = &outputs[2].content else {
        unreachable!()
    };
    assert!(
        result
            .data
            .content
            .iter()
            .any(|m| matches!(m, MediaType::Plain(s) if s == "4"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupt_over_control_stops_a_loop_and_keeps_variables() {
    let k = start_kernel("candle").await;
    let session = uuid::Uuid::new_v4().to_string();
    let mut shell = shell_for(&k.info, &session).await;
    let mut control = zmq::create_client_control_connection(&k.info, &session)
        .await
        .unwrap();
    wait_ready(&mut shell).await;

    shell
        .send(ExecuteRequest::new("let kept = 5;".into()).into())
        .await
        .unwrap();
    shell.read().await.unwrap();
    shell
        .send(ExecuteRequest::new("loop { kept += 0; }".into()).into())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    control.send(InterruptRequest {}.into()).await.unwrap();
    let reply = shell.read().await.unwrap();
    let elapsed = started.elapsed();
    let JupyterMessageContent::ExecuteReply(reply) = reply.content else {
        panic!("not an execute_reply")
    };
    assert!(matches!(reply.status, ReplyStatus::Error));
    assert_eq!(reply.error.unwrap().ename, "KeyboardInterrupt");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert_eq!(
        control.read().await.unwrap().message_type(),
        "interrupt_reply"
    );

    shell
        .send(ExecuteRequest::new("kept".into()).into())
        .await
        .unwrap();
    let JupyterMessageContent::ExecuteReply(reply) = shell.read().await.unwrap().content else {
        panic!()
    };
    assert!(matches!(reply.status, ReplyStatus::Ok));
}

#[test]
fn execute_subcommand_runs_a_notebook_through_the_kernel() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO_BIN_EXE_academy-kernel"))
        .arg("execute")
        .arg(root.join("examples/06-gpu-matmul-throughput.ipynb"))
        .env_remove("CUDA_VISIBLE_DEVICES")
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("Device: CPU (no GPU admitted)"), "{stdout}");
    assert!(
        stdout.contains("No GPU to compute on: running a small CPU matmul instead."),
        "{stdout}"
    );
    assert!(stdout.contains("TFLOP/s"), "{stdout}");
}

#[test]
fn execute_subcommand_fails_on_a_failing_cell() {
    let dir = tempfile::tempdir().unwrap();
    let nb = dir.path().join("bad.ipynb");
    std::fs::write(
        &nb,
        r#"{"nbformat":4,"nbformat_minor":5,"metadata":{"kernelspec":{"name":"academy-candle"}},
           "cells":[{"cell_type":"code","source":"throw \"broken\"","metadata":{},"outputs":[],"execution_count":null}]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_academy-kernel"))
        .arg("execute")
        .arg(&nb)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken"));
}

#[tokio::test(flavor = "multi_thread")]
async fn execute_reports_a_kernel_that_crashes_instead_of_waiting() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    // A "kernel" that dies at once, as one would in a broken CUDA library.
    let crashing = dir.path().join("crashing-kernel");
    std::fs::write(&crashing, "#!/bin/sh\nkill -SEGV $$\n").unwrap();
    std::fs::set_permissions(&crashing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let t0 = Instant::now();
    let err = kernel_runtime::notebook::execute(
        &root.join("examples/06-gpu-matmul-throughput.ipynb"),
        &crashing,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("exited") && err.contains("SIGSEGV"), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_signed_with_the_wrong_key_is_never_executed() {
    let k = start_kernel("candle").await;
    let session = uuid::Uuid::new_v4().to_string();
    let mut shell = shell_for(&k.info, &session).await;
    wait_ready(&mut shell).await;

    let mut wrong = k.info.clone();
    wrong.key = "forged".into();
    let forger_session = uuid::Uuid::new_v4().to_string();
    let mut forger = shell_for(&wrong, &forger_session).await;
    forger
        .send(ExecuteRequest::new("let forged = 1;".into()).into())
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(1), forger.read()).await;
    assert!(answer.is_err(), "the forged request was answered");

    shell
        .send(ExecuteRequest::new("is_def_var(\"forged\")".into()).into())
        .await
        .unwrap();
    let JupyterMessageContent::ExecuteReply(reply) = shell.read().await.unwrap().content else {
        panic!()
    };
    assert!(matches!(reply.status, ReplyStatus::Ok));
}
