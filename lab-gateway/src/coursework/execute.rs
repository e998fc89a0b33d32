//! Runs a notebook's code cells in a grading kernel and collects their
//! outputs as nbformat outputs, within the assignment's limits.
//!
//! This is the gateway acting as a Jupyter client (what nbclient does for
//! nbgrader): one `execute_request` per cell on a shell DEALER, the cell's
//! outputs from the kernel's iopub fan-out, done when both the reply and the
//! `idle` status for it have come. The kernel runs an engineer's code, so
//! everything it sends is untrusted: sockets carry the channel limits,
//! output past the assignment's limit is cut with a note (errors and
//! results are always kept, since they decide the points), and a cell past
//! its timeout is interrupted, as nbgrader does (`interrupt_on_timeout`),
//! and gets an error output when the kernel gives none.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use zeromq::{SocketRecv, SocketSend};

use crate::kernel_client;
use crate::kernels::{Kernel, KernelManager};
use crate::wire::{Channel, RawMessage, Signer};

/// What one grading may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub cell_timeout: Duration,
    pub total_timeout: Duration,
    /// Stream and display output kept per cell, in bytes.
    pub output_bytes: usize,
    /// No cell runs after one that failed (a code submission: its first
    /// error decides); a grading runs every cell, each scoring on its own.
    pub stop_on_error: bool,
}

/// One cell's run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellRun {
    pub outputs: Vec<Value>,
    pub execution_count: Option<u64>,
    /// The gateway lost the kernel (it could not be reached, or stopped
    /// answering): the run says nothing of the notebook. Set only here,
    /// never from anything the kernel sends (which can name any error).
    pub lost: bool,
}

/// How long an interrupted cell may take to stop before the kernel is
/// taken as stuck.
const AFTER_INTERRUPT: Duration = Duration::from_secs(10);

/// Every cell's run, and how many of the kernel's messages the gateway
/// missed (its fan-out dropped them): with any missed, the outputs are
/// incomplete (a grading is tried again).
pub struct CellRuns {
    pub runs: Vec<(usize, CellRun)>,
    pub lost: u64,
}

/// Runs `cells` (index in the notebook, code) in order. Every cell gets a
/// run: once the kernel is dead, stuck or out of total time (or, with
/// `stop_on_error`, after a failed cell), the rest get an error output
/// saying so (and score nothing).
pub async fn run_cells(
    manager: &KernelManager,
    kernel: &Arc<Kernel>,
    cells: &[(usize, String)],
    limits: Limits,
) -> CellRuns {
    let started = Instant::now();
    let deadline = later(limits.total_timeout);
    let mut runs = Vec::with_capacity(cells.len());
    let mut client = match Client::connect(kernel).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(kernel_id = %kernel.id, error = %e, "cannot reach a grading kernel");
            None
        }
    };
    let mut broken: Option<&'static str> = None;
    let mut lost = 0;
    for (index, code) in cells {
        if broken.is_none() && Instant::now() >= deadline {
            broken = Some("the grading ran past the assignment's total time limit");
        }
        let Some(c) = client.as_mut().filter(|_| broken.is_none()) else {
            let why = broken.unwrap_or("the grading kernel could not be reached");
            let mut run = failed_run("GradingStopped", why);
            run.lost = broken.is_none();
            runs.push((*index, run));
            continue;
        };
        let run = c.run(manager, kernel, code, limits, deadline).await;
        match run {
            Ok(run) => {
                if limits.stop_on_error && run.outputs.iter().any(|o| o["output_type"] == "error") {
                    broken = Some("an earlier cell failed");
                }
                runs.push((*index, run));
            }
            Err((run, why)) => {
                runs.push((*index, run));
                broken = Some(why);
                if let Some(c) = client.take() {
                    lost += c.lost();
                }
            }
        }
    }
    lost += client.map_or(0, |c| c.lost());
    // With the kernel's start and exit in the log around it, where a grading's time goes
    // (scripts/bench-grading --profile).
    tracing::debug!(
        kernel_id = %kernel.id,
        cells = cells.len(),
        ms = started.elapsed().as_millis() as u64,
        "grading cells ran"
    );
    CellRuns { runs, lost }
}

/// `now + d`, or a year from now for a `d` too large to add.
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

fn failed_run(ename: &str, evalue: &str) -> CellRun {
    CellRun {
        outputs: vec![json!({
            "output_type": "error",
            "ename": ename,
            "evalue": evalue,
            "traceback": [format!("{ename}: {evalue}")],
        })],
        execution_count: None,
        lost: false,
    }
}

struct Client {
    shell: zeromq::DealerSocket,
    iopub: crate::kernels::Subscription,
    signer: Signer,
}

impl Client {
    /// iopub messages the fan-out dropped for this client.
    fn lost(&self) -> u64 {
        self.iopub
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn connect(kernel: &Kernel) -> Result<Client, String> {
        let endpoint = kernel.current_endpoint();
        let limits = kernel.message_limits();
        // Subscribed before the first request, so no output is missed.
        let iopub = kernel.subscribe();
        let identity = format!("lab-grader-{}", uuid::Uuid::new_v4());
        let shell = tokio::time::timeout(
            Duration::from_secs(10),
            kernel_client::dealer(
                &endpoint.connection,
                Channel::Shell,
                identity.as_bytes(),
                limits.shell,
            ),
        )
        .await
        .map_err(|_| "timed out connecting to its shell".to_owned())?
        .map_err(|e| e.to_string())?;
        Ok(Client {
            shell,
            iopub,
            signer: Signer::new(&endpoint.connection.key),
        })
    }

    /// Runs one cell. `Err` carries the cell's run and why no later cell
    /// can run in this kernel.
    async fn run(
        &mut self,
        manager: &KernelManager,
        kernel: &Arc<Kernel>,
        code: &str,
        limits: Limits,
        total_deadline: Instant,
    ) -> Result<CellRun, (CellRun, &'static str)> {
        let request = RawMessage::request(jupyter_protocol::ExecuteRequest {
            silent: false,
            store_history: true,
            user_expressions: None,
            allow_stdin: false,
            stop_on_error: false,
            ..jupyter_protocol::ExecuteRequest::new(code.to_owned())
        });
        let msg_id = request.ids().0.to_owned();
        let mut out = Outputs::new(limits.output_bytes);
        let sent = match zeromq::ZmqMessage::try_from(request.to_frames(&self.signer)) {
            Ok(frames) => self.shell.send(frames).await.is_ok(),
            Err(_) => false,
        };
        if !sent {
            let mut run = failed_run("GradingStopped", "the grading kernel stopped answering");
            run.lost = true;
            return Err((run, "the grading kernel stopped answering"));
        }
        let cell_deadline = later(limits.cell_timeout).min(total_deadline);
        let mut deadline = cell_deadline;
        let mut interrupted = false;
        let (mut replied, mut idle) = (false, false);
        let retired = kernel.retirement();
        tokio::pin!(retired);
        while !(replied && idle) {
            tokio::select! {
                msg = self.iopub.rx.recv() => {
                    let Some(msg) = msg else {
                        return Err((out.finish_with("DeadKernelError", "the kernel died"), "the grading kernel died"));
                    };
                    if msg.parent_msg_id().as_deref() != Some(msg_id.as_str()) {
                        // The supervisor's word that the process died: its flag is
                        // set before it says so, and nothing the kernel sends sets it.
                        if msg.ids().1 == "status" && kernel.has_died() {
                            return Err((out.finish_with("DeadKernelError", "the kernel died"), "the grading kernel died"));
                        }
                        continue;
                    }
                    if out.take(&msg) {
                        idle = true;
                    }
                }
                reply = self.shell.recv() => match reply {
                    Ok(frames) => {
                        if let Ok(m) = RawMessage::from_frames(frames.into_vec(), &self.signer)
                            && m.parent_msg_id().as_deref() == Some(msg_id.as_str())
                        {
                            replied = true;
                            out.replied(&m);
                        }
                    }
                    Err(e) if kernel_client::oversized(&e).is_some() => {}
                    Err(_) => return Err((out.finish_with("DeadKernelError", "the kernel's shell closed"), "the grading kernel died")),
                },
                () = &mut retired => {
                    return Err((out.finish_with("DeadKernelError", "the kernel died while the cell ran"), "the grading kernel died"));
                }
                () = tokio::time::sleep_until(deadline) => {
                    if interrupted {
                        let why = "the cell did not stop after it was interrupted";
                        return Err((out.finish_with("CellTimeoutError", why), "the grading kernel is stuck in a cell"));
                    }
                    interrupted = true;
                    out.timed_out(limits.cell_timeout, deadline >= total_deadline);
                    if let Err(e) = manager.interrupt(kernel).await {
                        tracing::debug!(kernel_id = %kernel.id, error = %e, "a grading kernel's interrupt failed");
                    }
                    deadline = Instant::now() + AFTER_INTERRUPT;
                }
            }
        }
        Ok(out.finish())
    }
}

/// A cell's outputs as they arrive, in nbformat's shape.
struct Outputs {
    outputs: Vec<Value>,
    execution_count: Option<u64>,
    budget: usize,
    used: usize,
    cut: bool,
    timeout: Option<(Duration, bool)>,
    /// The error output a failed execute_reply stands for, kept until the
    /// cell is over: the reply comes straight from the shell and often
    /// before the iopub `error`, whose traceback (with the cell's line) is
    /// the one to keep.
    failed_reply: Option<Value>,
}

impl Outputs {
    fn new(budget: usize) -> Outputs {
        Outputs {
            outputs: Vec::new(),
            execution_count: None,
            budget,
            used: 0,
            cut: false,
            timeout: None,
            failed_reply: None,
        }
    }

    /// Takes one iopub message of the cell's; `true` when it is the idle
    /// status that ends the cell.
    fn take(&mut self, msg: &RawMessage) -> bool {
        let msg_type = msg.ids().1.to_owned();
        let Ok(content) = serde_json::from_slice::<Value>(&msg.content) else {
            return false;
        };
        match msg_type.as_str() {
            "status" => return content["execution_state"] == "idle",
            "execute_input" => self.execution_count = content["execution_count"].as_u64(),
            // What decides the points (errors, stderr) survives a clear:
            // otherwise an answer's hook that clears every cell's output
            // would turn failing tests into passing ones.
            "clear_output" => {
                self.outputs
                    .retain(|o| o["output_type"] == "error" || o["name"] == "stderr");
                self.used = self.outputs.iter().map(|o| o.to_string().len()).sum();
            }
            "stream" => {
                let name = content["name"].as_str().unwrap_or("stdout").to_owned();
                let text = content["text"].as_str().unwrap_or("");
                let text = self.within_budget(text);
                if text.is_empty() {
                    return false;
                }
                // Appended in place: a cell printing line by line costs what
                // it prints, not the square of it.
                if let Some(last) = self.outputs.last_mut()
                    && last["output_type"] == "stream"
                    && last["name"] == name.as_str()
                    && let Some(Value::String(joined)) = last.get_mut("text")
                {
                    joined.push_str(text);
                } else {
                    self.outputs
                        .push(json!({"output_type": "stream", "name": name, "text": text}));
                }
            }
            "display_data" => {
                let size = msg.content.len();
                if self.used + size > self.budget {
                    self.cut = true;
                } else {
                    self.used += size;
                    self.outputs.push(json!({
                        "output_type": "display_data",
                        "data": content.get("data").cloned().unwrap_or_else(|| json!({})),
                        "metadata": content.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    }));
                }
            }
            // Results and errors decide the points: the first of each is
            // always kept; more are kept only within the budget.
            "execute_result" | "error"
                if !self.first_of(&msg_type) && self.used + msg.content.len() > self.budget =>
            {
                self.cut = true;
            }
            "execute_result" => self.keep(json!({
                "output_type": "execute_result",
                "data": content.get("data").cloned().unwrap_or_else(|| json!({})),
                "metadata": content.get("metadata").cloned().unwrap_or_else(|| json!({})),
                "execution_count": content["execution_count"].as_u64().or(self.execution_count),
            })),
            "error" => self.keep(json!({
                "output_type": "error",
                "ename": content["ename"].as_str().unwrap_or("Error"),
                "evalue": content["evalue"].as_str().unwrap_or(""),
                "traceback": content.get("traceback").cloned().unwrap_or_else(|| json!([])),
            })),
            _ => {}
        }
        false
    }

    /// Whether no output of this type (`execute_result`, `error`) was kept yet.
    fn first_of(&self, output_type: &str) -> bool {
        !self.outputs.iter().any(|o| o["output_type"] == output_type)
    }

    fn keep(&mut self, output: Value) {
        self.used += output.to_string().len();
        self.outputs.push(output);
    }

    /// The execute_reply: its execution count marks the cell as run even
    /// when its iopub `execute_input` was missed, and a status other than
    /// `ok` fails the cell even when no `error` output came (an answer can
    /// silence IPython's traceback display).
    fn replied(&mut self, reply: &RawMessage) {
        let Ok(content) = serde_json::from_slice::<Value>(&reply.content) else {
            return;
        };
        if self.execution_count.is_none() {
            self.execution_count = content["execution_count"].as_u64();
        }
        let status = content["status"].as_str().unwrap_or("error");
        if status != "ok" {
            let ename = content["ename"].as_str().unwrap_or("Error");
            let evalue = content["evalue"].as_str().unwrap_or(status);
            let traceback = match content.get("traceback") {
                Some(Value::Array(lines)) if !lines.is_empty() => Value::Array(lines.clone()),
                _ => json!([format!("{ename}: {evalue}")]),
            };
            self.failed_reply = Some(json!({
                "output_type": "error",
                "ename": ename,
                "evalue": evalue,
                "traceback": traceback,
            }));
        }
    }

    /// A failed reply's error, where no iopub `error` came for the cell.
    fn settle_reply(&mut self) {
        if let Some(error) = self.failed_reply.take()
            && self.first_of("error")
        {
            self.outputs.push(error);
        }
    }

    /// The part of `text` that fits in what is left of the budget.
    fn within_budget<'t>(&mut self, text: &'t str) -> &'t str {
        let room = self.budget.saturating_sub(self.used);
        if text.len() <= room {
            self.used += text.len();
            return text;
        }
        self.cut = true;
        let mut end = room;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.used += end;
        &text[..end]
    }

    fn timed_out(&mut self, limit: Duration, total: bool) {
        self.timeout = Some((limit, total));
    }

    fn finish_with(mut self, ename: &str, evalue: &str) -> CellRun {
        self.settle_reply();
        if !self.outputs.iter().any(|o| o["output_type"] == "error") {
            self.outputs.extend(failed_run(ename, evalue).outputs);
        }
        self.finish()
    }

    fn finish(mut self) -> CellRun {
        self.settle_reply();
        if self.cut {
            self.outputs.push(json!({
                "output_type": "stream",
                "name": "stdout",
                "text": format!("\n[lab grader] output past the assignment's limit of {} bytes was cut\n", self.budget),
            }));
        }
        if let Some((limit, total)) = self.timeout
            && !self.outputs.iter().any(|o| o["output_type"] == "error")
        {
            let why = if total {
                "the grading reached the assignment's total time limit in this cell".to_owned()
            } else {
                format!("the cell ran past its limit of {} s", limit.as_secs())
            };
            self.outputs
                .extend(failed_run("CellTimeoutError", &why).outputs);
        }
        CellRun {
            outputs: self.outputs,
            execution_count: self.execution_count,
            lost: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(msg_type: &str, content: Value) -> RawMessage {
        RawMessage::new_in_session(msg_type, "k", content)
    }

    #[test]
    fn output_past_the_limit_is_cut_but_the_error_is_kept() {
        let mut out = Outputs::new(10);
        out.take(&msg("stream", json!({"name": "stdout", "text": "0123456"})));
        out.take(&msg(
            "stream",
            json!({"name": "stdout", "text": "789abcdef"}),
        ));
        out.take(&msg(
            "error",
            json!({"ename": "AssertionError", "evalue": "no", "traceback": []}),
        ));
        assert!(out.take(&msg("status", json!({"execution_state": "idle"}))));
        let run = out.finish();
        assert_eq!(run.outputs[0]["text"], "0123456789");
        assert_eq!(run.outputs[1]["ename"], "AssertionError");
        assert!(run.outputs[2]["text"].as_str().unwrap().contains("cut"));
    }

    /// The reply comes from the shell, the error from iopub: whichever is
    /// first, the cell has one error, with the kernel's traceback.
    #[test]
    fn a_reply_before_its_error_leaves_one_error_with_the_kernels_traceback() {
        let error = json!({"ename": "RuntimeError", "evalue": "boom",
            "traceback": ["--> cell line 2, column 1", "RuntimeError: boom"]});
        let reply = json!({"status": "error", "ename": "RuntimeError", "evalue": "boom", "execution_count": 3});
        for reply_first in [true, false] {
            let mut out = Outputs::new(1000);
            if reply_first {
                out.replied(&msg("execute_reply", reply.clone()));
            }
            out.take(&msg("error", error.clone()));
            if !reply_first {
                out.replied(&msg("execute_reply", reply.clone()));
            }
            let run = out.finish();
            let errors: Vec<_> = run
                .outputs
                .iter()
                .filter(|o| o["output_type"] == "error")
                .collect();
            assert_eq!(errors.len(), 1, "{reply_first}: {:?}", run.outputs);
            assert_eq!(errors[0]["traceback"], error["traceback"]);
            assert_eq!(run.execution_count, Some(3));
        }
        // A failed reply with no iopub error (a silenced display) still fails the cell.
        let mut out = Outputs::new(1000);
        out.replied(&msg("execute_reply", reply));
        let run = out.finish();
        assert_eq!(run.outputs[0]["traceback"], json!(["RuntimeError: boom"]));
    }

    #[test]
    fn a_timed_out_cell_without_an_error_gets_one() {
        let mut out = Outputs::new(100);
        out.timed_out(Duration::from_secs(30), false);
        let run = out.finish();
        assert_eq!(run.outputs[0]["ename"], "CellTimeoutError");
    }
}
