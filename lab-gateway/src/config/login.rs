//! `[login]` in lab.toml: how long a browser session lasts, how long it
//! may sit idle, and the longest expiry a personal API token may have.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, parse_duration};

/// The file's `[login]` table, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginFile {
    /// A browser session ends this long after sign-in (default `7d`).
    pub session_lifetime: Option<String>,
    /// ... or after this long without a request (default `1d`; `off`).
    pub session_idle: Option<String>,
    /// The longest expiry a personal token may be given (default `366d`).
    pub token_max_lifetime: Option<String>,
    /// OpenID Connect providers (`[[login.oidc]]`), beside the token login.
    #[serde(default)]
    pub oidc: Vec<super::oidc::OidcFile>,
}

/// Sessions' and personal tokens' lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginPolicy {
    pub session_lifetime: Duration,
    pub session_idle: Option<Duration>,
    pub token_max_lifetime: Duration,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl Default for LoginPolicy {
    fn default() -> Self {
        LoginPolicy {
            session_lifetime: 7 * DAY,
            session_idle: Some(DAY),
            token_max_lifetime: 366 * DAY,
        }
    }
}

impl LoginFile {
    pub fn policy(&self) -> Result<LoginPolicy, ConfigError> {
        let d = LoginPolicy::default();
        let read = |v: &Option<String>, what: &str| {
            v.as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|e| ConfigError::Invalid(format!("[login] {what}: {e}")))
        };
        let needed = |v: Option<Option<Duration>>, what: &str, default: Duration| match v {
            None => Ok(default),
            Some(Some(d)) if !d.is_zero() => Ok(d),
            Some(_) => Err(ConfigError::Invalid(format!(
                "[login] {what} cannot be off: give a duration such as 12h"
            ))),
        };
        Ok(LoginPolicy {
            session_lifetime: needed(
                read(&self.session_lifetime, "session_lifetime")?,
                "session_lifetime",
                d.session_lifetime,
            )?,
            session_idle: read(&self.session_idle, "session_idle")?.unwrap_or(d.session_idle),
            token_max_lifetime: needed(
                read(&self.token_max_lifetime, "token_max_lifetime")?,
                "token_max_lifetime",
                d.token_max_lifetime,
            )?,
        })
    }
}
