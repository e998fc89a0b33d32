//! The code every evcxr child process runs before its first cell: our
//! display helpers, and a small runtime that makes a cell's end observable.
//!
//! evcxr catches a panic that escapes a cell and only prints the fact on the
//! child's stdout (`EVCXR_PANIC_NOTIFICATION`), a line it consumes itself;
//! the cell's evaluation returns `Ok`. The message goes to the child's
//! stderr, which evcxr reads on a thread of its own, with nothing tying it
//! to the cell's end (evcxr 0.22, `child_process.rs`, `eval_context.rs`).
//! So the runtime below:
//! - installs a panic hook that keeps the cell thread's last panic (message,
//!   location, a backtrace if `RUST_BACKTRACE` asks for one) instead of
//!   printing it. A panic the cell catches itself (`catch_unwind`) stays
//!   silent; one on another thread is printed on stderr as Rust would;
//! - puts a relay thread between the child's stdout (fd 1) and evcxr. Where
//!   evcxr's own catch reports a panic, the relay writes our `PANIC` line
//!   with the kept message first. Before evcxr's end-of-cell line it writes a
//!   `SYNC` token on stderr, then the same token on stdout. The kernel sees
//!   the stdout token before the cell's evaluation returns, and waits for the
//!   stderr one: everything the cell wrote to stderr is ahead of it.
//!
//! The escape is detected from evcxr's line, not from the hook, so a cell
//! that replaces the hook (`std::panic::set_hook`) still fails; only the
//! message is then unknown.
//!
//! Cells share one copy of std (evcxr links them with `prefer-dynamic`), so
//! the hook set here is the one every later cell panics through; the
//! shared object of this code is never unloaded. Nothing here runs in the
//! kernel process, and nothing is left in the user's namespace but the
//! display helpers: the runtime lives inside a block.

/// Helpers defined in every session before its first cell.
const DISPLAY_HELPERS: &str = r#"
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

/// The child's runtime; `@MARKER@`, `@GENERATION@` and `@BACKTRACE@` are
/// filled in by [`code`]. Lines the kernel reads start with the marker:
/// `PANIC message\tlocation\tbacktrace` (each field escaped: `\\`, `\n`,
/// `\t`; empty when the hook was replaced), `SYNC generation.count`, and
/// `NO_RELAY reason` on stderr when fd 1 could not be relayed.
const RUNTIME: &str = r#"
{
    use std::io::{BufRead, Write};
    use std::os::fd::AsRawFd;
    use std::sync::Mutex;

    unsafe extern "C" {
        fn dup2(from: i32, to: i32) -> i32;
    }

    const MARKER: &str = "@MARKER@";
    const GENERATION: u64 = @GENERATION@;

    // The cell thread's last panic: message, location, backtrace.
    static LAST_PANIC: Mutex<Option<(String, String, String)>> = Mutex::new(None);

    fn escape(s: &str) -> String {
        s.replace('\\', "\\\\").replace('\n', "\\n").replace('\t', "\\t")
    }

    // evcxr sets RUST_BACKTRACE=1 for its child; use the kernel's instead.
    let backtrace: Option<&str> = @BACKTRACE@;
    // Safety: the child runs no other thread yet (this is its first code).
    unsafe {
        match backtrace {
            Some(value) => std::env::set_var("RUST_BACKTRACE", value),
            None => std::env::remove_var("RUST_BACKTRACE"),
        }
    }

    let cell_thread = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "Box<dyn Any>".to_owned()
        };
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let backtrace = match std::env::var("RUST_BACKTRACE") {
            Ok(v) if v != "0" => std::backtrace::Backtrace::force_capture().to_string(),
            _ => String::new(),
        };
        // These abort the process: evcxr will never report the cell's panic.
        let fatal = message == "panic in a function that cannot unwind"
            || message == "panic in a destructor during cleanup";
        let mut last = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner());
        if std::thread::current().id() == cell_thread && !fatal {
            *last = Some((message, location, backtrace));
            return;
        }
        let first = if fatal { last.take() } else { None };
        drop(last);
        let mut text = String::new();
        if let Some((m, l, b)) = first {
            text.push_str(&format!("the cell panicked at {l}:\n{m}\n{b}"));
        }
        let name = std::thread::current().name().unwrap_or("<unnamed>").to_owned();
        text.push_str(&format!("thread '{name}' panicked at {location}:\n{message}\n{backtrace}"));
        let _ = std::io::stderr().write_all(text.as_bytes());
    }));

    let relay = (|| -> std::io::Result<(std::io::PipeReader, std::fs::File)> {
        // Safety: fd 1 stays open for the life of the process.
        let real = unsafe { std::os::fd::BorrowedFd::borrow_raw(1) }.try_clone_to_owned()?;
        let (reader, writer) = std::io::pipe()?;
        std::io::stdout().flush()?;
        // Safety: both descriptors are open; fd 1 now writes into the pipe.
        if unsafe { dup2(writer.as_raw_fd(), 1) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((reader, std::fs::File::from(real)))
    })();
    let spawned = relay.and_then(|(reader, mut real)| {
        std::thread::Builder::new().name("academy-stdout".into()).spawn(move || {
            let mut input = std::io::BufReader::new(reader);
            let mut line = Vec::new();
            let mut completed = 0u64;
            loop {
                line.clear();
                match input.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                // evcxr matches whole lines; a cell's unfinished `print!`
                // may precede its own line, so that text is cut off first.
                let mut out = Vec::with_capacity(line.len() + 64);
                let mut ends_with = |tail: &[u8]| match line.strip_suffix(tail) {
                    Some(before) => {
                        if !before.is_empty() {
                            out.extend_from_slice(before);
                            out.push(b'\n');
                        }
                        true
                    }
                    None => false,
                };
                if ends_with(b"EVCXR_PANIC_NOTIFICATION\n") {
                    let last = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take();
                    let record = last
                        .map(|(m, l, b)| format!("{}\t{}\t{}", escape(&m), escape(&l), escape(&b)))
                        .unwrap_or_default();
                    out.extend_from_slice(format!("{MARKER} PANIC {record}\n").as_bytes());
                    out.extend_from_slice(b"EVCXR_PANIC_NOTIFICATION\n");
                } else if ends_with(b"EVCXR_EXECUTION_COMPLETE\n") {
                    completed += 1;
                    let sync = format!("{MARKER} SYNC {GENERATION}.{completed}\n");
                    let _ = std::io::stderr().write_all(sync.as_bytes());
                    // A panic the cell caught is not reported later.
                    *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    out.extend_from_slice(sync.as_bytes());
                    out.extend_from_slice(b"EVCXR_EXECUTION_COMPLETE\n");
                } else {
                    out.extend_from_slice(&line);
                }
                if real.write_all(&out).is_err() {
                    return;
                }
            }
        })
    });
    if let Err(e) = spawned {
        eprintln!("{MARKER} NO_RELAY {e}");
    }
};
"#;

/// The prelude for a fresh child: the display helpers and the runtime,
/// whose lines start with `marker`; its `SYNC` tokens start with
/// `generation`, so tokens of an earlier child never match.
pub fn code(marker: &str, generation: u64) -> String {
    // The child gets the kernel's RUST_BACKTRACE (`:env RUST_BACKTRACE=1`
    // then `:restart` asks for backtraces), not evcxr's 1.
    let backtrace = std::env::var("RUST_BACKTRACE").ok();
    let runtime = RUNTIME
        .replace("@MARKER@", marker)
        .replace("@GENERATION@", &generation.to_string())
        .replace("@BACKTRACE@", &format!("{backtrace:?}"));
    format!("{DISPLAY_HELPERS}{runtime}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_placeholder_is_filled_in() {
        let code = super::code("ACADEMY_abc", 7);
        assert!(!code.contains("@MARKER@") && !code.contains("@GENERATION@"));
        assert!(!code.contains("@BACKTRACE@"));
        assert!(code.contains("const MARKER: &str = \"ACADEMY_abc\";"));
        assert!(code.contains("const GENERATION: u64 = 7;"));
    }
}
