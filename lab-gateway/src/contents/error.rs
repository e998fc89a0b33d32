//! Why a contents operation failed, as the contents API's clients need to
//! tell it apart; `crate::error` maps each to its status.

/// A contents operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum ContentsError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Exists(String),
    /// A path that leaves the user's folder (`..`, absolute, a symlink out).
    #[error("{0}")]
    Outside(String),
    /// A request that cannot be carried out as asked (a bad model, the root).
    #[error("{0}")]
    Invalid(String),
    /// A file or body over `limits.contents_file`.
    #[error("{0}")]
    TooLarge(String),
    /// The file system failed for another reason (logged, not shown).
    #[error("file system: {0}")]
    Io(#[source] std::io::Error),
    #[error("cannot encode the notebook: {0}")]
    Encode(#[source] serde_json::Error),
}
