//! The seam between the Jupyter protocol and a language.
//!
//! An [`Engine`] evaluates cells, completes and inspects code. It lives on one
//! dedicated thread (see [`crate::executor`]) and never sees a socket: what a
//! cell prints or displays goes through the [`Output`] it is handed, and the
//! protocol layer turns that into iopub messages. Interrupts arrive from the
//! control channel on another thread, through the engine's [`Interrupter`].

use jupyter_protocol::{
    ClearOutput, DisplayData, JupyterMessage, JupyterMessageContent, Media, MediaType,
    StreamContent, Transient, UpdateDisplayData,
};
use tokio::sync::mpsc;

/// What a language needs to tell `kernel_info_reply`.
#[derive(Debug, Clone)]
pub struct LanguageSpec {
    pub implementation: &'static str,
    pub language: &'static str,
    pub language_version: String,
    pub mimetype: &'static str,
    pub file_extension: &'static str,
    pub pygments_lexer: &'static str,
    pub codemirror_mode: &'static str,
    /// First lines of the banner; the device line is appended by the server.
    pub banner: String,
    pub help_links: Vec<(&'static str, &'static str)>,
}

/// An error a cell produced; sent as an `error` message and an error reply.
#[derive(Debug, Clone, PartialEq)]
pub struct CellError {
    pub ename: String,
    pub evalue: String,
    pub traceback: Vec<String>,
}

impl CellError {
    pub fn new(ename: impl Into<String>, evalue: impl Into<String>) -> Self {
        let evalue = evalue.into();
        let ename = ename.into();
        CellError {
            traceback: vec![format!("{ename}: {evalue}")],
            ename,
            evalue,
        }
    }

    /// The error every interrupted cell reports, whichever the language.
    pub fn interrupted(detail: impl Into<String>) -> Self {
        CellError::new("KeyboardInterrupt", detail)
    }
}

/// Completion candidates for `complete_reply`. Offsets are in characters
/// (Unicode code points), as protocol 5.2+ says.
#[derive(Debug, Clone, Default)]
pub struct Completions {
    pub matches: Vec<String>,
    pub cursor_start: usize,
    pub cursor_end: usize,
}

/// Answer to `is_complete_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completeness {
    Complete,
    Incomplete { indent: String },
    Invalid,
    Unknown,
}

/// A language backend. Runs on its own thread and may block.
pub trait Engine {
    /// Runs one cell. `Ok(Some(media))` becomes an `execute_result`.
    fn execute(&mut self, code: &str, out: &Output) -> Result<Option<Media>, CellError>;
    fn complete(&mut self, code: &str, cursor_pos: usize) -> Completions;
    /// Help for the name under the cursor, or `None` when nothing is known.
    fn inspect(&mut self, code: &str, cursor_pos: usize) -> Option<Media>;
    fn is_complete(&mut self, code: &str) -> Completeness;
    /// Work every session pays for once, done before the first cell asks
    /// for it (academy-rust: the prelude's build, then cells that leave
    /// nothing behind). Runs on the engine thread once a client is there;
    /// `waiting` says a request has come, which waits for the step under
    /// way, so an engine stops at the next step it can. Nothing it prints
    /// reaches a client.
    fn warm_up(&mut self, _waiting: &dyn Fn() -> bool) {}
}

/// Stops the cell that is running, from another thread.
pub trait Interrupter: Send + Sync {
    fn interrupt(&self);
}

/// Where a running cell sends what it prints and displays.
///
/// Cloneable and `Send`, so that helper threads (evcxr's stdout reader) can
/// publish too. Sending blocks when the iopub queue is full: a cell that
/// prints faster than the socket drains is slowed down, and memory stays
/// bounded.
#[derive(Clone)]
pub struct Output {
    parent: JupyterMessage,
    iopub: mpsc::Sender<JupyterMessage>,
}

impl Output {
    pub fn new(parent: JupyterMessage, iopub: mpsc::Sender<JupyterMessage>) -> Self {
        Output { parent, iopub }
    }

    /// An output for work no request asked for ([`Engine::warm_up`]):
    /// what is sent to it goes nowhere.
    pub fn nowhere() -> Self {
        let (iopub, _) = mpsc::channel(1);
        Output {
            parent: JupyterMessage::new(ClearOutput { wait: false }, None),
            iopub,
        }
    }

    fn publish(&self, content: impl Into<JupyterMessageContent>) {
        let message = JupyterMessage::new(content.into(), Some(&self.parent));
        // The receiver only goes away when the kernel is shutting down; output
        // produced then has nowhere to go.
        let _ = self.iopub.blocking_send(message);
    }

    pub fn stdout(&self, text: &str) {
        if !text.is_empty() {
            self.publish(StreamContent::stdout(text));
        }
    }

    pub fn stderr(&self, text: &str) {
        if !text.is_empty() {
            self.publish(StreamContent::stderr(text));
        }
    }

    /// Sends `display_data`; with a `display_id`, later updates replace it.
    pub fn display(&self, data: Vec<MediaType>, display_id: Option<&str>) {
        let mut msg = DisplayData::new(Media::new(data));
        if let Some(id) = display_id {
            msg.transient = Some(Transient {
                display_id: Some(id.to_owned()),
            });
        }
        self.publish(msg);
    }

    /// Replaces an earlier display in place (`update_display_data`).
    pub fn update_display(&self, data: Vec<MediaType>, display_id: &str) {
        self.publish(UpdateDisplayData::new(Media::new(data), display_id));
    }

    pub fn clear_output(&self, wait: bool) {
        self.publish(ClearOutput { wait });
    }
}

/// Converts a character offset into a byte offset of `s`, clamped to its end.
pub fn char_to_byte_offset(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(i, _)| i)
}

/// Converts a byte offset of `s` into a character offset.
pub fn byte_to_char_offset(s: &str, byte: usize) -> usize {
    s.char_indices().take_while(|(i, _)| *i < byte).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_code_points_not_bytes() {
        let s = "let é = 1;";
        assert_eq!(char_to_byte_offset(s, 5), 6);
        assert_eq!(byte_to_char_offset(s, 6), 5);
        assert_eq!(char_to_byte_offset(s, 99), s.len());
    }
}
