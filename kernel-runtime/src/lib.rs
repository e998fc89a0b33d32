//! The Jupyter kernels of Academy Lab.
//!
//! One binary, `academy-kernel`, serves two languages over the Jupyter wire
//! protocol 5.3 (ZeroMQ, HMAC-SHA256 signed):
//!
//! - `academy-rust`: Rust evaluated by the `evcxr` library ([`rust`]);
//! - `academy-candle`: Rhai scripts with candle bound in ([`candle`]), whose
//!   cells run without a compile step and can be interrupted without losing
//!   the session's variables.
//!
//! The protocol layer ([`server`]) knows nothing about either language: it
//! talks to an [`engine::Engine`] that runs on its own thread ([`executor`]).
//! Nothing in this crate knows about HTTP or the gateway.

pub mod candle;
pub mod connection;
pub mod device;
pub mod display;
pub mod engine;
pub mod error;
pub mod executor;
pub mod install;
pub mod launch;
pub mod notebook;
pub mod rust;
pub mod server;

pub use error::KernelError;

/// Which language a kernel process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// Rust through evcxr.
    Rust,
    /// Rhai with candle bound in.
    Candle,
}

impl Language {
    /// The kernelspec name Jupyter knows this kernel by.
    pub fn kernelspec_name(self) -> &'static str {
        match self {
            Language::Rust => "academy-rust",
            Language::Candle => "academy-candle",
        }
    }
}
