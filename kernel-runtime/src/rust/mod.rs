//! academy-rust: Rust cells evaluated by the `evcxr` library.
//!
//! evcxr compiles each cell into a crate and runs it in a child process that
//! keeps the session's variables. Every fresh child first runs our prelude
//! ([`prelude`]): display helpers, a panic hook and a relay of its stdout
//! that reports a cell's panic and marks the end of its stderr. The first
//! child's runs as soon as a client has asked for `kernel_info`, then, in a
//! cold kernel, two cells whose variables are forgotten ([`Engine::warm_up`]),
//! so a user who reads before running a cell does not wait for their builds. The output
//! pump ([`pump`]) forwards the child's lines as stream messages and display
//! markers as `display_data`; a panic that escapes a cell becomes its error
//! ([`panic`]), and all of a cell's stderr is shown in that cell. An
//! interrupt kills the child process, which is the only way to stop compiled
//! code; evcxr restarts it and the variables are gone, so the error says
//! exactly which ones were lost.
//!
//! What arrives after a cell's end, from a thread the cell left running, is
//! shown in whichever cell runs when it arrives, or nowhere between cells.

mod completeness;
mod panic;
mod prelude;
mod pump;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use evcxr::{CommandContext, EvalContextOutputs};
use jupyter_protocol::{Media, MediaType};

use crate::engine::{
    CellError, Completeness, Completions, Engine, Interrupter, LanguageSpec, Output,
    byte_to_char_offset, char_to_byte_offset,
};
use crate::executor::Built;
use pump::Forwarder;

/// Compile cache size shared by every kernel of a user (`~/.cache/evcxr`).
const DEFAULT_CACHE_MB: u64 = 4096;

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
    /// Starts the lines of the child's runtime; random, so no cell prints it by chance.
    marker: String,
    /// Counts preludes run, one per child process.
    generation: u64,
    /// The child process our prelude runs in. evcxr starts a new one
    /// silently on `:restart` and `:clear`, and after one dies.
    prepared_child: Option<u32>,
    /// Whether [`WARM_UP_CELLS`] ran in this context (a pooled kernel's
    /// ran before its handover), so its first cells are warm.
    cells_warmed: bool,
    /// A runtime notice the warm-up got, for the first cell to show.
    held_notice: Option<String>,
    /// An interrupt came during the warm-up while a request waited.
    interrupt_pending: bool,
}

/// An evcxr context a warm-pool kernel made before it had a user: the
/// toolchain probed, the session crate built once, rust-analyzer's analysis
/// of std done; suspended (no child process, no thread) until
/// [`build`] resumes it after the handover.
pub struct Prepared {
    session: Session,
    /// The variables that choose and drive the toolchain, as they were.
    toolchain: Vec<(OsString, OsString)>,
}

/// An evcxr context with what the engine keeps beside it.
struct Session {
    ctx: CommandContext,
    outputs: EvalContextOutputs,
    /// Starts the lines of the child's runtime ([`prelude`]).
    marker: String,
    /// Preludes run so far, one per child process.
    generation: u64,
}

impl Session {
    fn new() -> Result<Session, String> {
        let (ctx, outputs) = CommandContext::new().map_err(|e| e.to_string())?;
        Ok(Session {
            ctx,
            outputs,
            // Random, so no cell prints it by chance.
            marker: format!("ACADEMY_{}", uuid::Uuid::new_v4().simple()),
            generation: 0,
        })
    }
}

/// Makes and suspends a context; called before the handover, so it reads
/// no user's files (evcxr's own settings are read again at [`build`]).
pub fn prepare() -> Result<Prepared, String> {
    // Cargo's settings could start what outlives a build (a compiler
    // cache's server); a user's kernel reads only its own cargo home.
    if let Some(home) = cargo_home_settings() {
        return Err(format!(
            "the pool's cargo home has settings: {}",
            home.display()
        ));
    }
    let mut session = Session::new()?;
    let warmed = warm_up(&mut session);
    // On failure too: a context dropped unsuspended would leave threads.
    session.ctx.suspend();
    warmed?;
    Ok(Prepared {
        session,
        toolchain: toolchain_env(),
    })
}

/// Runs the prelude and [`WARM_UP_CELLS`] in a prepared session's child.
///
/// A session's first cells cost seconds once: the prelude's items are
/// compiled for the first time, rust-analyzer infers std's traits for the
/// first time, and rustc's incremental cache has none of evcxr's code that
/// stores and loads variables. Paid here, with the compile cache's flags a
/// user's cells get, they cost a user's first cells little; the variables
/// go with this child at the suspension, and the next child runs the
/// prelude again.
fn warm_up(session: &mut Session) -> Result<(), String> {
    enable_cache(&mut session.ctx);
    session.generation += 1;
    let prelude = prelude::code(&session.marker, session.generation);
    let cells = std::iter::once(prelude.as_str()).chain(WARM_UP_CELLS.iter().copied());
    // evcxr waits, at a cell's end, until what the child printed has been
    // taken from its channel; the engine's pump does not exist yet.
    let done = AtomicBool::new(false);
    let stdout = &session.outputs.stdout;
    let ctx = &mut session.ctx;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let _ = stdout.recv_timeout(std::time::Duration::from_millis(10));
            }
        });
        let mut result = Ok(());
        for cell in cells {
            if let Err(e) = ctx.execute(cell) {
                result = Err(format!("a warm-up cell failed: {e}"));
                break;
            }
        }
        done.store(true, Ordering::SeqCst);
        result
    })
}

/// The settings file of the cargo home in `CARGO_HOME`, if it has one.
fn cargo_home_settings() -> Option<std::path::PathBuf> {
    let home = std::path::PathBuf::from(std::env::var_os("CARGO_HOME")?);
    ["config.toml", "config"]
        .into_iter()
        .map(|name| home.join(name))
        .find(|path| path.exists())
}

/// Turns evcxr's compile cache on (`ACADEMY_EVCXR_CACHE_MB`, else
/// [`DEFAULT_CACHE_MB`]; 0 leaves it off).
fn enable_cache(ctx: &mut CommandContext) {
    let cache_mb = std::env::var("ACADEMY_EVCXR_CACHE_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(DEFAULT_CACHE_MB);
    if cache_mb > 0
        && let Err(e) = ctx.execute(&format!(":cache {cache_mb}"))
    {
        tracing::warn!(error = %e, "evcxr compile cache not enabled");
    }
}

/// Whether a Rust cell is complete: a bracket scan, no engine needed
/// (the executor answers it off the engine thread).
pub fn is_complete(code: &str) -> Completeness {
    completeness::check(code)
}

/// What a pooled kernel runs before its handover (see [`prepare`]), and a
/// cold one after its prelude ([`Engine::warm_up`]): a variable stored, then
/// one loaded, so that rustc's incremental cache holds evcxr's code for both.
const WARM_UP_CELLS: &[&str] = &[
    "let academy_warm_up = 40 + 2; academy_warm_up",
    "let academy_warm_up_2 = academy_warm_up + 1; academy_warm_up_2",
];

/// The variables of this process that decide which toolchain evcxr, cargo
/// and rust-analyzer use and how they build. `CARGO_HOME` is left out: the
/// handover gives each user their own (see [`Prepared::resume`]).
fn toolchain_env() -> Vec<(OsString, OsString)> {
    let mut vars: Vec<_> = std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            k != "CARGO_HOME"
                && (k == "PATH"
                    || k == "LD_LIBRARY_PATH"
                    || k.starts_with("RUST")
                    || k.starts_with("CARGO")
                    || k.starts_with("EVCXR"))
        })
        .collect();
    vars.sort();
    vars
}

impl Prepared {
    /// Resumes the context in this process as it is now (the user's folder,
    /// environment and confinement), unless something it was made with has
    /// changed since; then why not.
    fn resume(self) -> Result<Session, String> {
        if toolchain_env() != self.toolchain {
            return Err("the toolchain's variables changed".into());
        }
        if let Some(toml) = evcxr::config_toml() {
            return Err(format!("evcxr settings to read: {}", toml.display()));
        }
        if let Some(settings) = cargo_home_settings() {
            return Err(format!(
                "the user's cargo home has settings: {}",
                settings.display()
            ));
        }
        // What the warm-up's child printed is nobody's.
        let mut session = self.session;
        session.outputs.stdout.try_iter().for_each(drop);
        session.outputs.stderr.try_iter().for_each(drop);
        session.ctx.resume().map_err(|e| e.to_string())?;
        Ok(session)
    }
}

/// Builds the evcxr context, or resumes the one a warm-pool kernel
/// prepared; called on the executor thread.
pub fn build(prepared: Option<Result<Prepared, String>>) -> Result<Built, String> {
    let resumed = match prepared {
        None => None,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "evcxr was not prepared in the pool");
            None
        }
        Some(Ok(p)) => p
            .resume()
            .inspect_err(|why| tracing::info!(%why, "evcxr is made again after the handover"))
            .ok(),
    };
    // A prepared context ran the warm-up cells before its handover.
    let cells_warmed = resumed.is_some();
    let Session {
        mut ctx,
        outputs,
        marker,
        generation,
    } = match resumed {
        Some(resumed) => resumed,
        None => Session::new()?,
    };
    if let Err(e) = ctx.execute(":load_config") {
        tracing::warn!(error = %e, "evcxr config not loaded");
    }
    // The user's cache (under their home), and their size.
    enable_cache(&mut ctx);
    let interrupted = Arc::new(AtomicBool::new(false));
    let forwarder =
        pump::spawn(outputs.stdout, outputs.stderr, &marker).map_err(|e| e.to_string())?;
    let killer = Arc::new(Kill {
        child: ctx.process_handle(),
        interrupted: interrupted.clone(),
    });
    let engine = RustEngine {
        ctx,
        forwarder,
        interrupted,
        marker,
        generation,
        prepared_child: None,
        cells_warmed,
        held_notice: None,
        interrupt_pending: false,
    };
    Ok((Box::new(engine), killer))
}

impl RustEngine {
    /// Runs the prelude in the child unless it already ran in this one.
    fn prepare_child(&mut self, out: &Output) {
        if self.prepared_child.is_some() && self.prepared_child == Some(self.child_id()) {
            return;
        }
        let mut failure = None;
        // A child can die in its first code: after `:restart` evcxr 0.22
        // still loads the old variables, and the new child aborts. evcxr then
        // starts another with none, where the prelude runs.
        for _ in 0..2 {
            self.generation += 1;
            let code = prelude::code(&self.marker, self.generation);
            match self.ctx.execute(&code) {
                Ok(_) => {
                    self.prepared_child = Some(self.child_id());
                    return;
                }
                Err(e @ evcxr::Error::SubprocessTerminated(_)) => failure = Some(e),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            // Said in the cell: without the runtime a panic would not fail it.
            tracing::warn!(error = %e, "the prelude failed");
            out.stderr(&format!(
                "academy-rust: the session's prelude failed, so panics are not reported \
                 as errors and display_html and friends are missing: {e}\n"
            ));
        }
    }

    fn child_id(&self) -> u32 {
        self.ctx
            .process_handle()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .id()
    }

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
    fn warm_up(&mut self, waiting: &dyn Fn() -> bool) {
        if self.prepared_child.is_some() {
            // A cell came first and paid for it.
            return;
        }
        // As a cell would, with nobody's output: a prelude that fails here
        // is run again, and its error shown, by the first cell.
        let out = Output::nowhere();
        self.interrupted.store(false, Ordering::SeqCst);
        self.forwarder.begin_cell(&out);
        self.prepare_child(&out);
        if !self.cells_warmed {
            // No cell has run, so every variable is the warm-up's.
            let mut ran = 0;
            for cell in WARM_UP_CELLS {
                if waiting() || self.prepared_child.is_none() || self.ctx.execute(cell).is_err() {
                    break;
                }
                ran += 1;
            }
            tracing::debug!(ran, "warm-up cells run");
            let defined = self.variables();
            let defined: Vec<&str> = defined.iter().map(String::as_str).collect();
            self.ctx.forget_variables(&defined);
            self.cells_warmed = true;
        }
        self.held_notice = self.forwarder.finish_cell().notice;
        // An interrupt meant for the cell that waited for this one.
        self.interrupt_pending = self.interrupted.load(Ordering::SeqCst) && waiting();
    }

    fn execute(&mut self, code: &str, out: &Output) -> Result<Option<Media>, CellError> {
        if std::mem::take(&mut self.interrupt_pending) {
            return Err(CellError::interrupted(
                "cell interrupted before it ran, while the kernel warmed up; no variables were lost",
            ));
        }
        if let Some(notice) = self.held_notice.take() {
            out.stderr(&format!("{notice}\n"));
        }
        self.interrupted.store(false, Ordering::SeqCst);
        self.forwarder.begin_cell(out);
        self.prepare_child(out);
        let before = self.variables();
        let result = self.ctx.execute(code);
        let end = self.forwarder.finish_cell();
        let outputs = result.map_err(|e| self.error(code, e, &before))?;
        if let Some(record) = end.panic {
            // evcxr caught the panic and returned Ok; the cell failed.
            let source = self.ctx.last_source().ok();
            return Err(panic::Panic::parse(&record).into_cell_error(code, source.as_deref()));
        }
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
            // `:timing`: the total, then evcxr's phases (a compile retried
            // to fix the code shows as its own phase, e.g. "Fallback").
            let phases = outputs
                .phases
                .iter()
                .map(|p| format!("{} {}ms", p.name, p.duration.as_millis()))
                .collect::<Vec<_>>()
                .join(", ");
            let text = if phases.is_empty() {
                format!("Took {}ms", t.as_millis())
            } else {
                format!("Took {}ms ({phases})", t.as_millis())
            };
            out.display(
                vec![
                    MediaType::Html(format!(
                        "<span style=\"color: rgba(0,0,0,0.4);\">{}</span>",
                        crate::display::html_escape(&text)
                    )),
                    MediaType::Plain(text),
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
        is_complete(code)
    }
}
