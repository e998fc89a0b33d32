//! academy-rust over real ZeroMQ: a cell that panics ends with an `error`
//! (reply and iopub), and everything a cell writes to stderr is shown in
//! that cell, never dropped and never in the next one. nbgrader scores a
//! test cell 0 on an error or any stderr output, so either slip changes a
//! grade. Cells compile for seconds each; these tests take a minute or two.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Kernel, outputs_of_each, shell_for, start_kernel, wait_subscribed};
use jupyter_protocol::{
    ErrorOutput, ExecuteRequest, InterruptRequest, JupyterMessage, JupyterMessageContent,
    MediaType, ReplyStatus, Stdio,
};
use jupyter_zmq_client as zmq;

/// A cold evcxr compile on a busy machine, the first one with the prelude.
const CELL_TIMEOUT: Duration = Duration::from_secs(180);

/// What one cell gave: its reply's error, and what it published on iopub.
#[derive(Debug, Default)]
struct Cell {
    reply_error: Option<(String, String)>,
    errors: Vec<ErrorOutput>,
    stdout: String,
    stderr: String,
    results: Vec<String>,
}

impl Cell {
    fn panic_message(&self) -> &str {
        let (ename, evalue) = self.reply_error.as_ref().expect("an error reply");
        assert_eq!(ename, "Panic", "{self:?}");
        assert_eq!(self.errors.len(), 1, "one iopub error: {self:?}");
        assert_eq!(self.errors[0].ename, "Panic");
        assert_eq!(&self.errors[0].evalue, evalue);
        evalue
    }

    fn assert_ok(&self) {
        assert!(self.reply_error.is_none(), "{self:?}");
        assert!(self.errors.is_empty(), "{self:?}");
    }
}

struct Session {
    _kernel: Kernel,
    shell: zmq::ClientShellConnection,
    iopub: zmq::ClientIoPubConnection,
    control: zmq::ClientControlConnection,
}

async fn rust_session() -> Session {
    let kernel = start_kernel("rust").await;
    let session = uuid::Uuid::new_v4().to_string();
    let mut shell = shell_for(&kernel.info, &session).await;
    let mut iopub = zmq::create_client_iopub_connection(&kernel.info, "", &session)
        .await
        .unwrap();
    let control = zmq::create_client_control_connection(&kernel.info, &session)
        .await
        .unwrap();
    wait_subscribed(&mut shell, &mut iopub).await;
    Session {
        _kernel: kernel,
        shell,
        iopub,
        control,
    }
}

impl Session {
    async fn run(&mut self, code: &str) -> Cell {
        self.run_all(&[code.to_owned()]).await.remove(0)
    }

    /// Sends every cell at once, as a notebook run does, then reads what each gave.
    async fn run_all(&mut self, cells: &[String]) -> Vec<Cell> {
        let mut ids = Vec::new();
        for code in cells {
            let req: JupyterMessage = ExecuteRequest::new(code.clone()).into();
            ids.push(req.header.msg_id.clone());
            self.shell.send(req).await.unwrap();
        }
        let mut replies = HashMap::new();
        for _ in cells {
            let reply = tokio::time::timeout(CELL_TIMEOUT, self.shell.read())
                .await
                .expect("no execute_reply")
                .unwrap();
            let parent = reply.parent_header.as_ref().unwrap().msg_id.clone();
            let JupyterMessageContent::ExecuteReply(reply) = reply.content else {
                panic!("not an execute_reply")
            };
            let error = match reply.status {
                ReplyStatus::Ok => None,
                _ => {
                    let e = reply.error.expect("an error reply names its error");
                    Some((e.ename, e.evalue))
                }
            };
            replies.insert(parent, error);
        }
        let mut outputs = outputs_of_each(&mut self.iopub, &ids, CELL_TIMEOUT).await;
        ids.iter()
            .map(|id| {
                let mut cell = Cell {
                    reply_error: replies.remove(id).expect("a reply per cell"),
                    ..Cell::default()
                };
                for msg in outputs.remove(id).unwrap_or_default() {
                    match msg.content {
                        JupyterMessageContent::ErrorOutput(e) => cell.errors.push(e),
                        JupyterMessageContent::StreamContent(s) => match s.name {
                            Stdio::Stdout => cell.stdout.push_str(&s.text),
                            Stdio::Stderr => cell.stderr.push_str(&s.text),
                        },
                        JupyterMessageContent::ExecuteResult(r) => cell.results.extend(
                            r.data.content.into_iter().filter_map(|m| match m {
                                MediaType::Plain(s) => Some(s),
                                _ => None,
                            }),
                        ),
                        _ => {}
                    }
                }
                cell
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_assert_ends_its_cell_with_a_panic_error_and_no_backtrace() {
    let mut s = rust_session().await;
    s.run("let kept = 41;").await.assert_ok();

    let cell = s.run("assert_eq!(1 + 1, 3);").await;
    let message = cell.panic_message();
    assert!(
        message.starts_with("assertion `left == right` failed"),
        "{message}"
    );
    assert!(
        message.contains("left: 2") && message.contains("right: 3"),
        "{message}"
    );
    let traceback = &cell.errors[0].traceback;
    assert_eq!(traceback[0], "panicked at line 1 of the cell:");
    assert!(
        !traceback.iter().any(|l| l.contains("backtrace")),
        "{traceback:?}"
    );
    assert_eq!(cell.stderr, "", "the message is the error, not stderr");

    // The session goes on, with what it had.
    let cell = s.run("kept + 1").await;
    cell.assert_ok();
    assert_eq!(cell.results, ["42"]);
    assert_eq!(cell.stderr, "");

    // Asking for a backtrace gives one.
    s.run("unsafe { std::env::set_var(\"RUST_BACKTRACE\", \"1\") };")
        .await
        .assert_ok();
    let cell = s.run("let v: Vec<i32> = Vec::new();\nv[3]").await;
    assert!(cell.panic_message().contains("index out of bounds"));
    let traceback = &cell.errors[0].traceback;
    assert_eq!(traceback[0], "panicked at line 2 of the cell:");
    assert!(
        traceback.iter().any(|l| l == "stack backtrace:"),
        "{traceback:?}"
    );
}

/// About 90 KB of stderr a cell: more than a pipe holds, so the cell
/// blocks on it while evcxr's reader catches up.
const STDERR_LINES: usize = 1000;

/// Cell `i`'s stderr: its lines, then text without a newline, which evcxr's
/// line reader held until the next cell's stderr before the fix.
fn stderr_of(i: usize) -> String {
    let mut text: String = (0..STDERR_LINES)
        .map(|n| format!("stderr of cell {i}: {n} {:.<80}\n", ""))
        .collect();
    text.push_str(&format!("last words of cell {i}\n"));
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_quick_cells_report_each_panic_and_each_stderr_line_in_their_own_cell() {
    let mut s = rust_session().await;
    s.run(&format!(
        "fn noise(i: usize) {{\n\
             for n in 0..{STDERR_LINES} {{ eprintln!(\"stderr of cell {{i}}: {{n}} {{:.<80}}\", \"\"); }}\n\
             eprint!(\"last words of cell {{i}}\");\n\
         }}"
    ))
    .await
    .assert_ok();
    let cells: Vec<String> = (0..30)
        .map(|i| match i % 2 {
            0 => format!("noise({i});\nassert_eq!({i}, {i} + 1, \"cell {i} fails\");"),
            _ => format!("noise({i});\nprintln!(\"cell {i} passes\");"),
        })
        .collect();
    let results = s.run_all(&cells).await;
    for (i, cell) in results.iter().enumerate() {
        let foreign: Vec<&str> = cell
            .stderr
            .lines()
            .filter(|l| {
                !l.ends_with(&format!("of cell {i}")) && !l.contains(&format!("of cell {i}: "))
            })
            .take(3)
            .collect();
        assert!(
            foreign.is_empty(),
            "cell {i} shows others' stderr: {foreign:?}"
        );
        assert!(
            cell.stderr == stderr_of(i),
            "cell {i} lost stderr; it ends with {:?}",
            cell.stderr.lines().last()
        );
        if i % 2 == 0 {
            let message = cell.panic_message();
            assert!(
                message.starts_with(&format!("assertion `left == right` failed: cell {i} fails")),
                "cell {i}: {message}"
            );
            assert_eq!(cell.stdout, "", "cell {i}");
        } else {
            cell.assert_ok();
            assert_eq!(cell.stdout, format!("cell {i} passes\n"), "cell {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stderr_caught_panics_and_panics_in_other_threads_do_not_fail_a_cell() {
    let mut s = rust_session().await;

    let cell = s
        .run("eprintln!(\"to stderr\");\nprintln!(\"to stdout\");")
        .await;
    cell.assert_ok();
    assert_eq!(cell.stderr, "to stderr\n");
    assert_eq!(cell.stdout, "to stdout\n");

    // A test that a function panics, as `#[should_panic]` would.
    let cell = s
        .run("std::panic::catch_unwind(|| -> i32 { panic!(\"caught here\") }).is_err()")
        .await;
    cell.assert_ok();
    assert_eq!(cell.results, ["true"]);
    assert_eq!(cell.stderr, "", "a caught panic prints nothing");

    // A thread's panic is the thread's: Rust prints it, `join` returns Err.
    let cell = s
        .run("std::thread::spawn(|| -> i32 { panic!(\"in a thread\") }).join().is_err()")
        .await;
    cell.assert_ok();
    assert_eq!(cell.results, ["true"]);
    assert!(
        cell.stderr.starts_with("thread '<unnamed>' panicked at ")
            && cell.stderr.contains("\nin a thread\n"),
        "{:?}",
        cell.stderr
    );
    assert!(!cell.stderr.contains("backtrace"), "{:?}", cell.stderr);

    // ... unless the cell unwraps the join, which panics the cell.
    let cell = s
        .run("std::thread::spawn(|| -> i32 { panic!(\"joined\") }).join().unwrap()")
        .await;
    assert!(
        cell.panic_message()
            .starts_with("called `Result::unwrap()` on an `Err` value"),
        "{cell:?}"
    );
    assert!(cell.stderr.contains("\njoined\n"), "{:?}", cell.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_fails_its_cell_after_the_hook_is_replaced_a_restart_or_an_interrupt() {
    let mut s = rust_session().await;
    s.run("std::panic::set_hook(Box::new(|_| {}));")
        .await
        .assert_ok();
    let cell = s.run("assert!(1 > 2, \"silenced?\");").await;
    assert!(
        cell.panic_message().contains("message is unknown"),
        "{cell:?}"
    );

    // A new child process gets the runtime again.
    s.run(":restart").await.assert_ok();
    let cell = s.run("assert!(1 > 2, \"after a restart\");").await;
    assert_eq!(cell.panic_message(), "after a restart");
    assert_eq!(cell.stderr, "");

    // An interrupt kills the child; evcxr starts another.
    let req: JupyterMessage =
        ExecuteRequest::new("std::thread::sleep(std::time::Duration::from_secs(600));".into())
            .into();
    s.shell.send(req).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.control.send(InterruptRequest {}.into()).await.unwrap();
    let reply = tokio::time::timeout(CELL_TIMEOUT, s.shell.read())
        .await
        .expect("no reply to the interrupted cell")
        .unwrap();
    let JupyterMessageContent::ExecuteReply(reply) = reply.content else {
        panic!("not an execute_reply")
    };
    assert_eq!(reply.error.expect("an error").ename, "KeyboardInterrupt");
    let cell = s.run("assert!(1 > 2, \"after an interrupt\");").await;
    assert_eq!(cell.panic_message(), "after an interrupt");
}
