//! academy-rust: Rust cells evaluated by the `evcxr` library.
//!
//! evcxr compiles each cell into a crate and runs it in a child process that
//! keeps the session's variables. That child's stdout reaches us line by
//! line; a forwarder thread turns the lines into stream messages, and
//! recognises our display markers (`display_html(...)` and friends in the
//! prelude) as `display_data`. An interrupt kills the child process, which is
//! the only way to stop compiled code; evcxr restarts it and the variables
//! are gone, so the error says exactly which ones were lost.

mod completeness;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use evcxr::CommandContext;
use jupyter_protocol::{Media, MediaType};

use crate::engine::{
    CellError, Completeness, Completions, Engine, Interrupter, LanguageSpec, Output,
    byte_to_char_offset, char_to_byte_offset,
};
use crate::executor::Built;

/// Compile cache size shared by every kernel of a user (`~/.cache/evcxr`).
const DEFAULT_CACHE_MB: u64 = 4096;

/// Helpers defined in every session before its first cell.
const PRELUDE: &str = r#"
#[allow(dead_code)]
fn display_mime(mime: &str, data: &str) {
    println!("ACADEMY_BEGIN_DISPLAY {}\n{}\nACADEMY_END_DISPLAY", mime, data);
}
#[allow(dead_code)]
fn display_html(html: &str) { display_mime("text/html", html); }
#[allow(dead_code)]
fn display_svg(svg: &str) { display_mime("image/svg+xml", svg); }
#[allow(dead_code)]
fn display_markdown(md: &str) { display_mime("text/markdown", md); }
#[allow(dead_code)]
fn display_png_base64(png: &str) { display_mime("image/png", png); }
"#;

pub fn language_spec() -> LanguageSpec {
    LanguageSpec {
        implementation: "academy-rust",
        language: "rust",
        language_version: rustc_version(),
        mimetype: "text/rust",
        file_extension: ".rs",
        pygments_lexer: "rust",
        codemirror_mode: "rust",
        banner: format!(
            "academy-rust {} — Rust by evcxr 0.22; :dep, :vars, :timing, :help",
            env!("CARGO_PKG_VERSION")
        ),
        help_links: vec![
            ("The Rust book", "https://doc.rust-lang.org/book/"),
            (
                "evcxr commands",
                "https://github.com/evcxr/evcxr/blob/main/COMMON.md",
            ),
        ],
    }
}

fn rustc_version() -> String {
    std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What the executor tells the output pump.
enum Control {
    /// A cell starts: its output goes to this sink.
    Begin(Box<Output>),
    /// The cell's evaluation returned: forward what is left, detach, then acknowledge.
    End(crossbeam_channel::Sender<()>),
}

/// The one thread that owns the child's output while cells come and go.
///
/// It alone receives from evcxr's stdout/stderr channels and holds the
/// current cell's sink as plain state, so no lock is shared with the
/// executor (an earlier mutex held across the wait could starve the executor
/// for minutes on a busy 2-core machine).
struct Pump {
    control: crossbeam_channel::Receiver<Control>,
    stdout: crossbeam_channel::Receiver<String>,
    stderr: crossbeam_channel::Receiver<String>,
    current: Option<Output>,
    /// A display being collected between markers: (mime, lines).
    pending: Option<(String, Vec<String>)>,
}

impl Pump {
    /// Sends one line to the running cell's output; lines outside a cell are logged.
    fn line(&mut self, line: String, is_stderr: bool) {
        if !is_stderr {
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
            Some(o) if is_stderr => o.stderr(&format!("{line}\n")),
            Some(o) => o.stdout(&format!("{line}\n")),
            None => tracing::debug!(line, "output outside a cell"),
        }
    }

    /// Runs until the executor or evcxr goes away, forwarding lines as they arrive.
    fn run(mut self) {
        loop {
            crossbeam_channel::select! {
                recv(self.control) -> c => match c {
                    Ok(Control::Begin(out)) => self.current = Some(*out),
                    Ok(Control::End(ack)) => {
                        // evcxr queues a cell's lines before its evaluation returns,
                        // so what is in the channels now belongs to this cell.
                        while let Ok(line) = self.stdout.try_recv() {
                            self.line(line, false);
                        }
                        while let Ok(line) = self.stderr.try_recv() {
                            self.line(line, true);
                        }
                        self.current = None;
                        let _ = ack.send(());
                    }
                    Err(_) => return,
                },
                recv(self.stdout) -> l => match l {
                    Ok(line) => self.line(line, false),
                    Err(_) => return,
                },
                recv(self.stderr) -> l => match l {
                    Ok(line) => self.line(line, true),
                    Err(_) => return,
                },
            }
        }
    }
}

/// The executor's end of the pump.
struct Forwarder {
    control: crossbeam_channel::Sender<Control>,
}

impl Forwarder {
    fn begin_cell(&self, out: &Output) {
        if self
            .control
            .send(Control::Begin(Box::new(out.clone())))
            .is_err()
        {
            tracing::warn!("the evcxr output pump has stopped; output is lost");
        }
    }

    /// Returns once every line the cell printed has been forwarded.
    fn finish_cell(&self) {
        let (ack, done) = crossbeam_channel::bounded(1);
        if self.control.send(Control::End(ack)).is_ok() {
            // Err: the pump exited and dropped the request; nothing is left to wait for.
            let _ = done.recv();
        }
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

struct Kill {
    child: Arc<Mutex<std::process::Child>>,
    interrupted: Arc<AtomicBool>,
}

impl Interrupter for Kill {
    fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = child.kill() {
            tracing::warn!(error = %e, "could not kill the evcxr child process");
        }
    }
}

pub struct RustEngine {
    ctx: CommandContext,
    forwarder: Forwarder,
    interrupted: Arc<AtomicBool>,
    prelude_loaded: bool,
}

/// Builds the evcxr context; called on the executor thread.
pub fn build() -> Result<Built, String> {
    let (mut ctx, outputs) = CommandContext::new().map_err(|e| e.to_string())?;
    if let Err(e) = ctx.execute(":load_config") {
        tracing::warn!(error = %e, "evcxr config not loaded");
    }
    let cache_mb = std::env::var("ACADEMY_EVCXR_CACHE_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(DEFAULT_CACHE_MB);
    if cache_mb > 0
        && let Err(e) = ctx.execute(&format!(":cache {cache_mb}"))
    {
        tracing::warn!(error = %e, "evcxr compile cache not enabled");
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let (control, control_rx) = crossbeam_channel::unbounded();
    let pump = Pump {
        control: control_rx,
        stdout: outputs.stdout,
        stderr: outputs.stderr,
        current: None,
        pending: None,
    };
    std::thread::Builder::new()
        .name("evcxr-output".into())
        .spawn(move || pump.run())
        .map_err(|e| e.to_string())?;
    let forwarder = Forwarder { control };
    let killer = Arc::new(Kill {
        child: ctx.process_handle(),
        interrupted: interrupted.clone(),
    });
    let engine = RustEngine {
        ctx,
        forwarder,
        interrupted,
        prelude_loaded: false,
    };
    Ok((Box::new(engine), killer))
}

impl RustEngine {
    fn variables(&self) -> BTreeSet<String> {
        self.ctx
            .variables_and_types()
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    fn error(&self, code: &str, error: evcxr::Error, before: &BTreeSet<String>) -> CellError {
        match error {
            evcxr::Error::CompilationErrors(errors) => {
                let mut traceback = Vec::new();
                let mut first = None;
                for e in &errors {
                    first.get_or_insert_with(|| e.message());
                    traceback.extend(render_compile_error(e, code));
                }
                CellError {
                    ename: "CompilationError".into(),
                    evalue: first.unwrap_or_else(|| "compilation failed".into()),
                    traceback,
                }
            }
            evcxr::Error::SubprocessTerminated(msg) => {
                let after = self.variables();
                let lost: Vec<&String> = before.difference(&after).collect();
                let lost_text = if lost.is_empty() {
                    "no variables were lost".to_owned()
                } else {
                    format!(
                        "these variables were lost: {}",
                        lost.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                if self.interrupted.load(Ordering::SeqCst) {
                    CellError::interrupted(format!(
                        "cell interrupted; the Rust process was restarted and {lost_text}"
                    ))
                } else {
                    CellError::new(
                        "ProcessTerminated",
                        format!(
                            "{}; the Rust process was restarted and {lost_text}",
                            msg.trim()
                        ),
                    )
                }
            }
            evcxr::Error::TypeRedefinedVariablesLost(vars) => CellError::new(
                "VariablesLost",
                format!(
                    "a type was redefined; these variables were lost: {}",
                    vars.join(", ")
                ),
            ),
            evcxr::Error::Message(msg) => CellError::new("Error", msg),
        }
    }
}

fn render_compile_error(e: &evcxr::CompilationError, code: &str) -> Vec<String> {
    if e.is_from_user_code()
        && let Some(report) =
            e.build_report("cell".to_owned(), code.to_owned(), evcxr::Theme::Light)
    {
        let mut buf = Vec::new();
        if report
            .write(
                ariadne::sources([("cell".to_owned(), code.to_owned())]),
                &mut buf,
            )
            .is_ok()
        {
            return String::from_utf8_lossy(&buf)
                .lines()
                .map(str::to_owned)
                .collect();
        }
    }
    let mut lines = vec![e.message()];
    for span in e.spanned_messages() {
        lines.extend(span.lines.iter().cloned());
        if !span.label.is_empty() {
            lines.push(span.label.clone());
        }
    }
    lines.extend(e.help().into_iter().map(|h| format!("help: {h}")));
    lines
}

impl Engine for RustEngine {
    fn execute(&mut self, code: &str, out: &Output) -> Result<Option<Media>, CellError> {
        self.interrupted.store(false, Ordering::SeqCst);
        self.forwarder.begin_cell(out);
        if !self.prelude_loaded {
            match self.ctx.execute(PRELUDE) {
                Ok(_) => self.prelude_loaded = true,
                Err(e) => tracing::warn!(error = %e, "prelude failed to compile"),
            }
        }
        let before = self.variables();
        let result = self.ctx.execute(code);
        self.forwarder.finish_cell();
        if let Err(evcxr::Error::SubprocessTerminated(_)) = &result {
            // The prelude lived in the old process.
            self.prelude_loaded = false;
        }
        let outputs = result.map_err(|e| self.error(code, e, &before))?;
        let mut media: Vec<MediaType> = Vec::new();
        for (mime, data) in outputs.content_by_mime_type {
            media.push(match mime.as_str() {
                "text/plain" => MediaType::Plain(data),
                "text/html" => MediaType::Html(data),
                "image/svg+xml" => MediaType::Svg(data),
                "image/png" => MediaType::Png(data),
                "text/markdown" => MediaType::Markdown(data),
                _ => MediaType::Other((mime.clone(), serde_json::Value::String(data))),
            });
        }
        if let Some(t) = outputs.timing {
            out.display(
                vec![
                    MediaType::Plain(format!("Took {}ms", t.as_millis())),
                    MediaType::Html(format!(
                        "<span style=\"color: rgba(0,0,0,0.4);\">Took {}ms</span>",
                        t.as_millis()
                    )),
                ],
                None,
            );
        }
        Ok((!media.is_empty()).then(|| Media::new(media)))
    }

    fn complete(&mut self, code: &str, cursor_pos: usize) -> Completions {
        let pos = char_to_byte_offset(code, cursor_pos);
        match self.ctx.completions(code, pos) {
            Ok(c) => Completions {
                matches: c.completions.into_iter().map(|c| c.code).collect(),
                cursor_start: byte_to_char_offset(code, c.start_offset),
                cursor_end: byte_to_char_offset(code, c.end_offset),
            },
            Err(e) => {
                tracing::debug!(error = %e, "completion failed");
                Completions {
                    matches: Vec::new(),
                    cursor_start: cursor_pos,
                    cursor_end: cursor_pos,
                }
            }
        }
    }

    fn inspect(&mut self, code: &str, cursor_pos: usize) -> Option<Media> {
        let pos = char_to_byte_offset(code, cursor_pos);
        match self.ctx.hover_at(code, pos) {
            Ok((plain, _)) if plain == "No documentation found" => None,
            Ok((plain, html)) => Some(Media::new(vec![
                MediaType::Plain(plain),
                MediaType::Html(html),
            ])),
            Err(_) => None,
        }
    }

    fn is_complete(&mut self, code: &str) -> Completeness {
        completeness::check(code)
    }
}
