//! academy-candle: Rhai cells with candle bound in.
//!
//! Why Rhai: its syntax reads like Rust, it needs no compile step (a cell
//! runs in microseconds), and its progress callback lets the control channel
//! stop a running cell between any two operations. The session's variables
//! live in one [`rhai::Scope`] that an interrupted cell does not touch, so
//! an interrupt never loses the work before it, unlike evcxr.
//!
//! The bindings are split by topic: [`tensor`] (creation, arithmetic,
//! reductions, indexing, autograd), [`random`] (the session's seeded
//! generator: `manual_seed`, `randn`, `rand`, layer initialisation), [`nn`]
//! (layers, losses, optimisers), [`data`] (synthetic data sets and CSV) and
//! [`show`] (rich displays, plots, progress bars); [`check`] holds the
//! checking functions tests call (`assert_eq`, `assert_close`, …), which no
//! cell may redefine: no cell may define a function of a built-in's name.

mod check;
mod data;
mod nn;
mod random;
mod show;
mod tensor;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Device;
use jupyter_protocol::{Media, MediaType};
use rhai::{AST, Dynamic, Engine as Rhai, EvalAltResult, ParseErrorType, Position, Scope};

use crate::device::DeviceChoice;
use crate::engine::{
    CellError, Completeness, Completions, Engine, Interrupter, LanguageSpec, Output,
    byte_to_char_offset, char_to_byte_offset,
};
use crate::executor::Built;

pub use tensor::ScriptTensor;

/// State the bindings share with the engine for the cell being run.
pub(crate) struct Session {
    pub device: Device,
    /// Where the running cell's displays go; `None` between cells.
    pub output: RefCell<Option<Output>>,
    pub interrupted: Arc<AtomicBool>,
    /// Counter for layer names and display ids.
    pub counter: RefCell<u64>,
    /// Where every random number of the session comes from; `manual_seed`
    /// replaces it.
    pub rng: RefCell<random::Generator>,
}

impl Session {
    pub(crate) fn next_id(&self, prefix: &str) -> String {
        let mut c = self.counter.borrow_mut();
        *c += 1;
        format!("{prefix}{c}")
    }

    pub(crate) fn with_output(&self, f: impl FnOnce(&Output)) {
        if let Some(out) = self.output.borrow().as_ref() {
            f(out)
        }
    }

    /// Sleeps in short slices so an interrupt is seen within 10 ms.
    pub(crate) fn sleep(&self, seconds: f64) -> Result<(), Box<EvalAltResult>> {
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds.max(0.0));
        while std::time::Instant::now() < deadline {
            if self.interrupted.load(Ordering::Relaxed) {
                return Err(EvalAltResult::ErrorTerminated(Dynamic::UNIT, Position::NONE).into());
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            std::thread::sleep(left.min(std::time::Duration::from_millis(10)));
        }
        Ok(())
    }
}

struct Flag(Arc<AtomicBool>);

impl Interrupter for Flag {
    fn interrupt(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The Rhai engine with its persistent scope and function library.
pub struct CandleEngine {
    rhai: Rhai,
    scope: Scope<'static>,
    /// Functions defined by earlier cells, kept so later cells can call them.
    library: AST,
    session: Rc<Session>,
    names: Vec<String>,
    /// The built-in functions: no cell may define one of these names, so
    /// what a test calls is what the kernel provides (`check`).
    builtins: std::collections::HashSet<String>,
}

pub fn language_spec() -> LanguageSpec {
    LanguageSpec {
        implementation: "academy-candle",
        language: "rhai",
        language_version: "1.27".to_owned(),
        mimetype: "text/x-rhai",
        file_extension: ".rhai",
        pygments_lexer: "rust",
        codemirror_mode: "rust",
        banner: format!(
            "academy-candle {} — Rhai cells with candle {}; interrupt keeps your variables",
            env!("CARGO_PKG_VERSION"),
            "0.11"
        ),
        help_links: vec![
            ("Rhai language", "https://rhai.rs/book/"),
            ("candle", "https://github.com/huggingface/candle"),
        ],
    }
}

/// Builds the engine; called on the executor thread.
pub fn build(device: DeviceChoice) -> Result<Built, String> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let session = Rc::new(Session {
        device: device.device,
        output: RefCell::new(None),
        interrupted: interrupted.clone(),
        counter: RefCell::new(0),
        rng: RefCell::new(random::Generator::from_entropy()),
    });
    let mut rhai = Rhai::new();
    // No operation cap: cells may train for minutes. Interrupts stop them.
    rhai.set_max_operations(0);
    rhai.set_max_call_levels(256);
    rhai.set_max_expr_depths(256, 256);
    rhai.set_max_string_size(64 << 20);
    rhai.set_max_array_size(16 << 20);
    rhai.set_max_map_size(1 << 20);
    {
        let flag = interrupted.clone();
        rhai.on_progress(move |_| {
            if flag.load(Ordering::Relaxed) {
                Some(Dynamic::UNIT)
            } else {
                None
            }
        });
    }
    {
        let s = session.clone();
        rhai.on_print(move |text| s.with_output(|o| o.stdout(&format!("{text}\n"))));
    }
    {
        let s = session.clone();
        rhai.on_debug(move |text, _src, pos| {
            s.with_output(|o| {
                if pos.is_none() {
                    o.stderr(&format!("{text}\n"))
                } else {
                    o.stderr(&format!("{text} @ {pos}\n"))
                }
            })
        });
    }
    tensor::register(&mut rhai, &session);
    check::register(&mut rhai);
    random::register(&mut rhai, &session);
    nn::register(&mut rhai, &session);
    data::register(&mut rhai, &session);
    show::register(&mut rhai, &session);

    #[allow(deprecated)]
    let mut names: Vec<String> = rhai
        .gen_fn_signatures(false)
        .into_iter()
        .filter_map(|sig| sig.split('(').next().map(str::to_owned))
        .filter(|n| n.chars().next().is_some_and(|c| c.is_alphabetic()))
        .collect();
    let builtins = names.iter().cloned().collect();
    names.extend(KEYWORDS.iter().map(|s| (*s).to_owned()));
    names.sort();
    names.dedup();

    let engine = CandleEngine {
        rhai,
        scope: Scope::new(),
        library: AST::empty(),
        session,
        names,
        builtins,
    };
    Ok((Box::new(engine), Arc::new(Flag(interrupted))))
}

const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "while", "loop", "for", "in", "break", "continue",
    "return", "throw", "try", "catch", "true", "false", "switch", "do", "until",
];

impl CandleEngine {
    fn run(&mut self, code: &str) -> Result<Dynamic, CellError> {
        let ast = self
            .rhai
            .compile_with_scope(&self.scope, code)
            .map_err(|e| syntax_error(code, &e.0, e.1))?;
        if let Some(f) = ast
            .iter_functions()
            .find(|f| self.builtins.contains(f.name))
        {
            return Err(CellError::new(
                "NameError",
                format!(
                    "`{}` is a built-in function and cannot be redefined (tests rely on the built-ins); choose another name",
                    f.name
                ),
            ));
        }
        // Functions from earlier cells plus this cell; only the new
        // statements run.
        self.library += ast.clone_functions_only();
        let mut program = self.library.clone();
        program += ast;
        let statements_only = {
            let mut p = program;
            p.set_source("cell");
            p
        };
        self.rhai
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, &statements_only)
            .map_err(|e| self.runtime_error(code, *e))
    }

    /// Kernel commands, as evcxr has: `:vars` and `:help`.
    fn command(&self, command: &str) -> Result<Vec<MediaType>, CellError> {
        match command {
            "vars" => {
                let mut text = String::new();
                let mut html = String::from("<table><tr><th>name</th><th>type</th><th>value</th></tr>");
                for (name, _, value) in self.scope.iter_raw() {
                    let summary = match value.read_lock::<ScriptTensor>() {
                        Some(t) => crate::display::tensor_summary(&t.t),
                        None => {
                            let d = show::describe(value);
                            if d.len() > 60 { format!("{}…", &d[..d.floor_char_boundary(60)]) } else { d }
                        }
                    };
                    text.push_str(&format!("{name}: {} = {summary}\n", value.type_name()));
                    html.push_str(&format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                        crate::display::html_escape(name),
                        crate::display::html_escape(value.type_name()),
                        crate::display::html_escape(&summary)
                    ));
                }
                html.push_str("</table>");
                Ok(vec![MediaType::Plain(text.trim_end().to_owned()), MediaType::Html(html)])
            }
            "pwd" => Ok(vec![MediaType::Plain(
                std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
            )]),
            cd if cd.starts_with("cd ") => {
                // The gateway's warm pool hands a prespawned kernel to its user this way.
                let dir = cd[3..].trim();
                std::env::set_current_dir(dir)
                    .map_err(|e| CellError::new("OSError", format!("cannot enter {dir}: {e}")))?;
                Ok(vec![MediaType::Plain(dir.to_owned())])
            }
            "help" => Ok(vec![MediaType::Plain(
                ":vars   list the session's variables\n:cd DIR change the working directory\n:pwd    show it\n:help   this help\nFunctions: see the README's table, or press Tab to complete and Shift-Tab to inspect.".to_owned(),
            )]),
            other => Err(CellError::new("UnknownCommand", format!(":{other} is not a command; try :help"))),
        }
    }

    /// Drops shadowed variables. Re-running `let big = randn(...)` would
    /// otherwise keep every earlier tensor alive, on the GPU too.
    fn compact_scope(&mut self) {
        let entries: Vec<(String, bool, Dynamic)> = self
            .scope
            .iter_raw()
            .map(|(name, constant, value)| (name.to_owned(), constant, value.clone()))
            .collect();
        let mut seen = std::collections::HashSet::new();
        let keep: Vec<bool> = entries
            .iter()
            .rev()
            .map(|(name, _, _)| seen.insert(name.clone()))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if keep.iter().all(|k| *k) {
            return;
        }
        self.scope.clear();
        for ((name, constant, value), keep) in entries.into_iter().zip(keep) {
            match (keep, constant) {
                (false, _) => {}
                (true, true) => {
                    self.scope.push_constant_dynamic(name, value);
                }
                (true, false) => {
                    self.scope.push_dynamic(name, value);
                }
            }
        }
    }

    fn runtime_error(&self, code: &str, e: EvalAltResult) -> CellError {
        if let EvalAltResult::ErrorTerminated(..) = e {
            return CellError::interrupted(
                "cell interrupted; every variable defined before it is kept",
            );
        }
        let pos = e.position();
        let message = e.to_string();
        let mut err = CellError::new(error_name(&e), strip_position(&message));
        err.traceback = with_source_pointer(code, pos, &message);
        err
    }
}

fn error_name(e: &EvalAltResult) -> &'static str {
    match e {
        EvalAltResult::ErrorVariableNotFound(..) => "NameError",
        EvalAltResult::ErrorFunctionNotFound(..) => "FunctionNotFound",
        EvalAltResult::ErrorMismatchDataType(..) | EvalAltResult::ErrorMismatchOutputType(..) => {
            "TypeError"
        }
        EvalAltResult::ErrorArrayBounds(..) | EvalAltResult::ErrorStringBounds(..) => "IndexError",
        EvalAltResult::ErrorArithmetic(..) => "ArithmeticError",
        EvalAltResult::ErrorRuntime(..) => "RuntimeError",
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => error_name(inner),
        EvalAltResult::ErrorDataTooLarge(..) | EvalAltResult::ErrorTooManyOperations(..) => {
            "ResourceLimit"
        }
        _ => "Error",
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" (line ") {
        Some(i) if message.ends_with(')') => message[..i].to_owned(),
        _ => message.to_owned(),
    }
}

fn syntax_error(code: &str, kind: &ParseErrorType, pos: Position) -> CellError {
    let message = format!("{kind}");
    let mut err = CellError::new("SyntaxError", message.clone());
    err.traceback = with_source_pointer(code, pos, &format!("SyntaxError: {message}"));
    err
}

/// The message, then the offending source line with a caret under it.
fn with_source_pointer(code: &str, pos: Position, message: &str) -> Vec<String> {
    let mut tb = vec![message.to_owned()];
    if let (Some(line), Some(col)) = (pos.line(), pos.position())
        && let Some(src) = code.lines().nth(line.saturating_sub(1))
    {
        tb.push(format!("  --> cell line {line}, column {col}"));
        tb.push(format!("   | {src}"));
        tb.push(format!("   | {}^", " ".repeat(col.saturating_sub(1))));
    }
    tb
}

impl Engine for CandleEngine {
    fn execute(&mut self, code: &str, out: &Output) -> Result<Option<Media>, CellError> {
        self.session.interrupted.store(false, Ordering::SeqCst);
        if let Some(command) = code.trim().strip_prefix(':') {
            return self.command(command.trim()).map(|m| Some(Media::new(m)));
        }
        *self.session.output.borrow_mut() = Some(out.clone());
        let result = self.run(code);
        *self.session.output.borrow_mut() = None;
        self.compact_scope();
        let value = result?;
        Ok(show::result_media(&value).map(Media::new))
    }

    fn complete(&mut self, code: &str, cursor_pos: usize) -> Completions {
        let end = char_to_byte_offset(code, cursor_pos);
        let start = code[..end]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_alphanumeric() || *c == '_')
            .last()
            .map_or(end, |(i, _)| i);
        let prefix = &code[start..end];
        let mut matches: Vec<String> = self
            .scope
            .iter_raw()
            .map(|(name, _, _)| name.to_owned())
            .chain(declared_names(&code[..start]))
            .chain(self.names.iter().cloned())
            .filter(|n| n.starts_with(prefix) && !n.is_empty())
            .collect();
        matches.sort();
        matches.dedup();
        Completions {
            matches,
            cursor_start: byte_to_char_offset(code, start),
            cursor_end: cursor_pos,
        }
    }

    fn inspect(&mut self, code: &str, cursor_pos: usize) -> Option<Media> {
        let at = char_to_byte_offset(code, cursor_pos);
        let is_ident = |c: char| c.is_alphanumeric() || c == '_';
        let start = code[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_ident(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let end = code[at..]
            .char_indices()
            .find(|(_, c)| !is_ident(*c))
            .map_or(code.len(), |(i, _)| at + i);
        let name = &code[start..end];
        if name.is_empty() {
            return None;
        }
        if let Some(value) = self.scope.get(name) {
            let text = format!("{name}: {}\n{}", value.type_name(), show::describe(value));
            return Some(Media::new(vec![MediaType::Plain(text)]));
        }
        let help = function_help(&self.rhai, name);
        if help.is_empty() {
            None
        } else {
            Some(Media::new(vec![MediaType::Plain(help.join("\n"))]))
        }
    }

    fn is_complete(&mut self, code: &str) -> Completeness {
        match self.rhai.compile_with_scope(&self.scope, code) {
            Ok(_) => Completeness::Complete,
            Err(e) => match *e.0 {
                ParseErrorType::UnexpectedEOF
                | ParseErrorType::MissingToken(..)
                | ParseErrorType::MissingSymbol(..)
                    if is_at_end(code, e.1) =>
                {
                    Completeness::Incomplete {
                        indent: "    ".to_owned(),
                    }
                }
                _ => Completeness::Invalid,
            },
        }
    }
}

/// What Shift-Tab shows for a function: each signature of `name`, then the
/// doc comments registered with it (`FuncRegistration::with_comments`).
fn function_help(rhai: &Rhai, name: &str) -> Vec<String> {
    let metadata = rhai
        .gen_fn_metadata_to_json(false)
        .ok()
        .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok());
    let functions = metadata
        .as_ref()
        .and_then(|m| m["functions"].as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut signatures = Vec::new();
    let mut docs = Vec::new();
    for f in functions.iter().filter(|f| f["name"] == name) {
        if let Some(sig) = f["signature"].as_str() {
            signatures.push(sig.to_owned());
        }
        for block in f["docComments"].as_array().into_iter().flatten() {
            let text: Vec<&str> = block
                .as_str()
                .unwrap_or_default()
                .lines()
                .map(|l| l.trim_start().trim_start_matches("///").trim_start())
                .collect();
            let text = text.join("\n");
            if !docs.contains(&text) {
                docs.push(text);
            }
        }
    }
    signatures.sort();
    signatures.dedup();
    signatures.extend(docs);
    signatures
}

/// Names a cell declares before the cursor (`let x`, `const y`, `fn f`).
fn declared_names(code: &str) -> Vec<String> {
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .filter(|w| matches!(w[0], "let" | "const" | "fn"))
        .map(|w| w[1].to_owned())
        .collect()
}

/// Whether a parse error position is at (or past) the last line of the code.
fn is_at_end(code: &str, pos: Position) -> bool {
    pos.line()
        .is_none_or(|line| line >= code.trim_end().lines().count())
}
