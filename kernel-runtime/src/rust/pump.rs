//! The one thread that owns the evcxr child's output while cells come and go.
//!
//! It alone receives from evcxr's stdout/stderr channels and holds the
//! current cell's sink as plain state, so no lock is shared with the
//! executor (an earlier mutex held across the wait could starve the executor
//! for minutes on a busy 2-core machine). It turns our display markers into
//! `display_data`, and reads the lines of the child's runtime
//! ([`super::prelude`]): a cell's `PANIC` record, and the `SYNC` tokens that
//! say all of a cell's stderr has arrived.
//!
//! Why stderr needs a token: evcxr queues a cell's stdout lines before its
//! evaluation returns, but reads stderr on a thread of its own, so stderr
//! may still be on its way at the cell's end. Without the wait, a failed
//! assertion's text was dropped or shown in the next cell.
//!
//! What it must not do: decide whether a cell failed. It reports what it
//! saw; the engine decides.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use jupyter_protocol::MediaType;

use crate::engine::Output;

/// How long a cell's end waits for its stderr token. It is already in the
/// pipe when the wait starts, so only a lost token (a bug) waits this long.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// What the executor tells the pump.
enum Control {
    /// A cell starts: its output goes to this sink. Answered once attached,
    /// so no line of the cell can arrive before it.
    Begin(Box<Output>, Sender<()>),
    /// The cell's evaluation returned: forward what is left, detach, then answer.
    End(Sender<CellEnd>),
}

/// What the pump saw of a cell, beyond what it forwarded.
#[derive(Debug, Default, PartialEq)]
pub struct CellEnd {
    /// The runtime's record of a panic that escaped the cell.
    pub panic: Option<String>,
    /// A notice the runtime gave during the cell (also shown in it, if the
    /// cell was anyone's), e.g. that panics cannot be reported.
    pub notice: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Stream {
    Stdout,
    Stderr,
}

struct Pump {
    control: Receiver<Control>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// The runtime's marker followed by a space.
    marker: String,
    current: Option<Output>,
    /// A display being collected between markers: (mime, lines).
    pending: Option<(String, Vec<String>)>,
    /// The last `SYNC` token announced on stdout in this cell.
    announced: Option<String>,
    /// `SYNC` tokens that arrived on stderr in this cell.
    arrived: HashSet<String>,
    panic: Option<String>,
    notice: Option<String>,
}

/// Starts the pump on its own thread; lines that start with `marker` are the
/// child runtime's.
pub fn spawn(
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    marker: &str,
) -> std::io::Result<Forwarder> {
    let (control, control_rx) = crossbeam_channel::unbounded();
    let pump = Pump {
        control: control_rx,
        stdout,
        stderr,
        marker: format!("{marker} "),
        current: None,
        pending: None,
        announced: None,
        arrived: HashSet::new(),
        panic: None,
        notice: None,
    };
    std::thread::Builder::new()
        .name("evcxr-output".into())
        .spawn(move || pump.run())?;
    Ok(Forwarder { control })
}

impl Pump {
    /// Handles one line: the runtime's part, if any, then text.
    fn line(&mut self, line: String, stream: Stream) {
        match line.find(&self.marker) {
            Some(at) => {
                // Text a cell printed without a newline sticks to the front.
                if at > 0 {
                    self.text(line[..at].to_owned(), stream);
                }
                self.runtime_line(&line[at + self.marker.len()..], stream);
            }
            None => self.text(line, stream),
        }
    }

    fn runtime_line(&mut self, line: &str, stream: Stream) {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        match (kind, stream) {
            ("SYNC", Stream::Stdout) => self.announced = Some(rest.to_owned()),
            ("SYNC", Stream::Stderr) => {
                self.arrived.insert(rest.to_owned());
            }
            ("PANIC", Stream::Stdout) if self.current.is_some() => {
                self.panic.get_or_insert_with(|| rest.to_owned());
            }
            ("NO_RELAY", Stream::Stderr) => {
                tracing::warn!(reason = rest, "the evcxr child's stdout is not relayed");
                let notice = format!(
                    "academy-rust: panics cannot be reported as errors in this session ({rest})"
                );
                self.notice = Some(notice.clone());
                self.text(notice, Stream::Stderr);
            }
            _ => tracing::debug!(line, "unexpected runtime line"),
        }
    }

    /// Sends one line of text to the running cell; lines outside a cell are logged.
    fn text(&mut self, line: String, stream: Stream) {
        if stream == Stream::Stdout {
            if let Some(rest) = line.strip_prefix("ACADEMY_BEGIN_DISPLAY ") {
                self.pending = Some((rest.trim().to_owned(), Vec::new()));
                return;
            }
            if line == "ACADEMY_END_DISPLAY" {
                if let Some((mime, lines)) = self.pending.take()
                    && let Some(out) = &self.current
                {
                    out.display(display_media(&mime, lines.join("\n")), None);
                }
                return;
            }
            if let Some((_, lines)) = self.pending.as_mut() {
                lines.push(line);
                return;
            }
        }
        match &self.current {
            Some(o) if stream == Stream::Stderr => o.stderr(&format!("{line}\n")),
            Some(o) => o.stdout(&format!("{line}\n")),
            None => tracing::debug!(line, "output outside a cell"),
        }
    }

    /// Forwards lines until the stderr token matching the last announced one
    /// has arrived (or [`SYNC_TIMEOUT`] passed).
    fn await_stderr(&mut self) {
        let Some(token) = self.announced.clone() else {
            return;
        };
        if std::env::var("MUTANT").is_ok() {
            return;
        }
        let deadline = Instant::now() + SYNC_TIMEOUT;
        while !self.arrived.contains(&token) {
            crossbeam_channel::select! {
                recv(self.stderr) -> l => match l {
                    Ok(line) => self.line(line, Stream::Stderr),
                    Err(_) => return,
                },
                recv(self.stdout) -> l => match l {
                    Ok(line) => self.line(line, Stream::Stdout),
                    Err(_) => return,
                },
                default(deadline.saturating_duration_since(Instant::now())) => {
                    tracing::warn!(token, "a cell's stderr token never came");
                    return;
                }
            }
        }
    }

    /// Ends the cell: everything it wrote is forwarded, then it is detached.
    fn end(&mut self) -> CellEnd {
        // evcxr queues a cell's stdout lines before its evaluation returns.
        while let Ok(line) = self.stdout.try_recv() {
            self.line(line, Stream::Stdout);
        }
        self.await_stderr();
        // Without a token (a child that died: evcxr read its stderr to the
        // end before returning) what is queued is all there is.
        while let Ok(line) = self.stderr.try_recv() {
            self.line(line, Stream::Stderr);
        }
        // A display the cell never closed is shown as the text it was.
        if let Some((mime, lines)) = self.pending.take()
            && let Some(out) = &self.current
        {
            out.stdout(&format!("ACADEMY_BEGIN_DISPLAY {mime}\n"));
            for line in lines {
                out.stdout(&format!("{line}\n"));
            }
        }
        self.current = None;
        self.announced = None;
        self.arrived.clear();
        CellEnd {
            panic: self.panic.take(),
            notice: self.notice.take(),
        }
    }

    /// Runs until the executor or evcxr goes away, forwarding lines as they arrive.
    fn run(mut self) {
        loop {
            crossbeam_channel::select! {
                recv(self.control) -> c => match c {
                    Ok(Control::Begin(out, ack)) => {
                        self.current = Some(*out);
                        let _ = ack.send(());
                    }
                    Ok(Control::End(ack)) => {
                        let _ = ack.send(self.end());
                    }
                    Err(_) => return,
                },
                recv(self.stdout) -> l => match l {
                    Ok(line) => self.line(line, Stream::Stdout),
                    Err(_) => return,
                },
                recv(self.stderr) -> l => match l {
                    Ok(line) => self.line(line, Stream::Stderr),
                    Err(_) => return,
                },
            }
        }
    }
}

/// The executor's end of the pump.
pub struct Forwarder {
    control: Sender<Control>,
}

impl Forwarder {
    pub fn begin_cell(&self, out: &Output) {
        let (ack, attached) = crossbeam_channel::bounded(1);
        let begin = Control::Begin(Box::new(out.clone()), ack);
        if self.control.send(begin).is_err() || attached.recv().is_err() {
            tracing::warn!("the evcxr output pump has stopped; output is lost");
        }
    }

    /// Returns once every line the cell printed has been forwarded.
    pub fn finish_cell(&self) -> CellEnd {
        let (ack, done) = crossbeam_channel::bounded(1);
        if self.control.send(Control::End(ack)).is_ok() {
            // Err: the pump exited and dropped the request; nothing is left to wait for.
            return done.recv().unwrap_or_default();
        }
        CellEnd::default()
    }
}

fn display_media(mime: &str, data: String) -> Vec<MediaType> {
    let plain = MediaType::Plain(format!("<{mime} display>"));
    let rich = match mime {
        "text/html" => MediaType::Html(data),
        "image/svg+xml" => MediaType::Svg(data),
        "image/png" => MediaType::Png(data.trim().to_owned()),
        "text/markdown" => MediaType::Markdown(data),
        "text/plain" => return vec![MediaType::Plain(data)],
        other => MediaType::Other((other.to_owned(), serde_json::Value::String(data))),
    };
    vec![rich, plain]
}

#[cfg(test)]
mod tests {
    use jupyter_protocol::{ExecuteRequest, JupyterMessage, JupyterMessageContent, Stdio};

    use super::*;

    const MARKER: &str = "ACADEMY_test";

    struct Fixture {
        forwarder: Forwarder,
        stdout: Sender<String>,
        stderr: Sender<String>,
    }

    fn fixture() -> Fixture {
        let (stdout, stdout_rx) = crossbeam_channel::unbounded();
        let (stderr, stderr_rx) = crossbeam_channel::unbounded();
        let forwarder = spawn(stdout_rx, stderr_rx, MARKER).unwrap();
        Fixture {
            forwarder,
            stdout,
            stderr,
        }
    }

    /// A cell's sink and what it published: ("stdout"|"stderr"|"display", text).
    fn sink() -> (Output, tokio::sync::mpsc::Receiver<JupyterMessage>) {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let parent = JupyterMessage::new(ExecuteRequest::new(String::new()), None);
        (Output::new(parent, tx), rx)
    }

    fn published(rx: &mut tokio::sync::mpsc::Receiver<JupyterMessage>) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        while let Ok(m) = rx.try_recv() {
            match m.content {
                JupyterMessageContent::StreamContent(s) => seen.push((
                    match s.name {
                        Stdio::Stdout => "stdout".to_owned(),
                        Stdio::Stderr => "stderr".to_owned(),
                    },
                    s.text,
                )),
                JupyterMessageContent::DisplayData(_) => {
                    seen.push(("display".to_owned(), String::new()))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        seen
    }

    #[test]
    fn a_cells_end_waits_for_stderr_that_arrives_after_its_evaluation() {
        let f = fixture();
        let (out, mut rx) = sink();
        f.forwarder.begin_cell(&out);
        f.stdout.send("out".into()).unwrap();
        f.stdout.send(format!("{MARKER} SYNC 1.1")).unwrap();
        let late = f.stderr.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            late.send("assertion failed".into()).unwrap();
            late.send(format!("{MARKER} SYNC 1.1")).unwrap();
        });
        f.forwarder.finish_cell();
        writer.join().unwrap();
        assert_eq!(
            published(&mut rx),
            [
                ("stdout".into(), "out\n".into()),
                ("stderr".into(), "assertion failed\n".into())
            ]
        );
    }

    #[test]
    fn an_older_token_does_not_end_the_wait() {
        let f = fixture();
        let (out, mut rx) = sink();
        f.forwarder.begin_cell(&out);
        f.stdout.send(format!("{MARKER} SYNC 1.1")).unwrap();
        f.stdout.send(format!("{MARKER} SYNC 2.1")).unwrap();
        f.stderr.send(format!("{MARKER} SYNC 1.1")).unwrap();
        let late = f.stderr.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            late.send("late".into()).unwrap();
            late.send(format!("{MARKER} SYNC 2.1")).unwrap();
        });
        f.forwarder.finish_cell();
        assert_eq!(published(&mut rx), [("stderr".into(), "late\n".into())]);
    }

    #[test]
    fn a_panic_record_is_reported_and_never_shown() {
        let f = fixture();
        let (out, mut rx) = sink();
        f.forwarder.begin_cell(&out);
        f.stdout
            .send(format!(
                "partial{MARKER} PANIC boom\\nline 2\tsrc/lib.rs:3:1\t"
            ))
            .unwrap();
        f.stdout.send(format!("{MARKER} SYNC 1.1")).unwrap();
        f.stderr.send(format!("{MARKER} SYNC 1.1")).unwrap();
        let end = f.forwarder.finish_cell();
        assert_eq!(
            end.panic.as_deref(),
            Some("boom\\nline 2\tsrc/lib.rs:3:1\t")
        );
        assert_eq!(published(&mut rx), [("stdout".into(), "partial\n".into())]);
        let (next, _rx) = sink();
        f.forwarder.begin_cell(&next);
        assert_eq!(f.forwarder.finish_cell(), CellEnd::default());
    }

    #[test]
    fn without_a_token_the_end_does_not_wait() {
        let f = fixture();
        let (out, mut rx) = sink();
        f.forwarder.begin_cell(&out);
        f.stderr.send("queued".into()).unwrap();
        let started = Instant::now();
        f.forwarder.finish_cell();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(published(&mut rx), [("stderr".into(), "queued\n".into())]);
    }

    #[test]
    fn a_display_left_open_is_shown_as_text_in_its_own_cell() {
        let f = fixture();
        let (out, mut rx) = sink();
        f.forwarder.begin_cell(&out);
        f.stdout
            .send("ACADEMY_BEGIN_DISPLAY text/html".into())
            .unwrap();
        f.stdout.send("<b>".into()).unwrap();
        f.forwarder.finish_cell();
        assert_eq!(
            published(&mut rx),
            [
                ("stdout".into(), "ACADEMY_BEGIN_DISPLAY text/html\n".into()),
                ("stdout".into(), "<b>\n".into())
            ]
        );
    }
}
