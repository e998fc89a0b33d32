//! `[[login.oidc]]` in lab.toml: one OpenID Connect provider each, with how
//! its claims become a user here (name, role, quota group).
//!
//! The client secret never sits in the TOML (which ops keep in git and
//! print): it is read at start from a file or a variable, and its `Debug`
//! shows no character of it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// One `[[login.oidc]]` table, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFile {
    /// A short name, in URLs (`/login/oidc/NAME`).
    pub name: String,
    /// What the sign-in button says after "Sign in with" (default: `name`).
    pub display_name: Option<String>,
    /// The issuer URL; `/.well-known/openid-configuration` is read from it.
    pub issuer: String,
    pub client_id: String,
    /// A file holding the client secret (the whole file, trimmed).
    pub client_secret_file: Option<PathBuf>,
    /// ... or a variable holding it.
    pub client_secret_env: Option<String>,
    /// Refused, with a clear reason: the secret is never in the TOML.
    pub client_secret: Option<toml::Value>,
    /// Scopes besides `openid` (default `profile`, `email`).
    pub scopes: Option<Vec<String>>,
    /// The claim that names the user (default `preferred_username`).
    pub username_claim: Option<String>,
    /// The claim that lists the user's groups (default `groups`).
    pub groups_claim: Option<String>,
    /// The claim with the e-mail address (default `email`).
    pub email_claim: Option<String>,
    /// Only members of one of these groups may sign in (none: anyone the
    /// provider signs in).
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Groups whose members get each role (the highest wins; otherwise
    /// engineer).
    #[serde(default)]
    pub admin_groups: Vec<String>,
    #[serde(default)]
    pub ops_groups: Vec<String>,
    #[serde(default)]
    pub trainer_groups: Vec<String>,
    /// A provider group → the quota group (cohort) its members are in here.
    #[serde(default)]
    pub cohorts: BTreeMap<String, String>,
}

/// A provider, checked, with its secret read.
#[derive(Clone)]
pub struct OidcProvider {
    pub name: String,
    pub display_name: String,
    pub issuer: String,
    pub client_id: String,
    secret: String,
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub groups_claim: String,
    pub email_claim: String,
    pub allowed_groups: Vec<String>,
    pub admin_groups: Vec<String>,
    pub ops_groups: Vec<String>,
    pub trainer_groups: Vec<String>,
    pub cohorts: BTreeMap<String, String>,
}

impl OidcProvider {
    /// The client secret, for the token request only.
    pub fn client_secret(&self) -> &str {
        &self.secret
    }
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"(hidden)")
            .finish_non_exhaustive()
    }
}

impl OidcFile {
    pub fn provider(&self) -> Result<OidcProvider, ConfigError> {
        let what = |m: String| ConfigError::Invalid(format!("[[login.oidc]] {:?}: {m}", self.name));
        scheduler::quota::validate_name(&self.name).map_err(|e| what(format!("name: {e}")))?;
        if self.client_secret.is_some() {
            return Err(what(
                "client_secret does not belong in lab.toml: put it in a file (client_secret_file) or a variable (client_secret_env)".into(),
            ));
        }
        let secret = match (&self.client_secret_file, &self.client_secret_env) {
            (Some(path), None) => std::fs::read_to_string(path)
                .map_err(|e| what(format!("client_secret_file {}: {e}", path.display())))?,
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| what(format!("client_secret_env: the variable {var} is not set")))?,
            _ => {
                return Err(what(
                    "give the client secret by exactly one of client_secret_file and client_secret_env".into(),
                ));
            }
        };
        let secret = secret.trim().to_owned();
        if secret.is_empty() {
            return Err(what("the client secret is empty".into()));
        }
        if !(self.issuer.starts_with("https://") || self.issuer.starts_with("http://")) {
            return Err(what(format!(
                "issuer {:?} is not an http(s) URL",
                self.issuer
            )));
        }
        for group in self.cohorts.values() {
            scheduler::quota::validate_name(group)
                .map_err(|e| what(format!("cohort {group:?}: {e}")))?;
        }
        let mut scopes = vec!["openid".to_owned()];
        for s in self
            .scopes
            .clone()
            .unwrap_or_else(|| vec!["profile".into(), "email".into()])
        {
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        Ok(OidcProvider {
            name: self.name.clone(),
            display_name: self
                .display_name
                .clone()
                .unwrap_or_else(|| self.name.clone()),
            issuer: self.issuer.trim_end_matches('/').to_owned(),
            client_id: self.client_id.clone(),
            secret,
            scopes,
            username_claim: self
                .username_claim
                .clone()
                .unwrap_or_else(|| "preferred_username".into()),
            groups_claim: self.groups_claim.clone().unwrap_or_else(|| "groups".into()),
            email_claim: self.email_claim.clone().unwrap_or_else(|| "email".into()),
            allowed_groups: self.allowed_groups.clone(),
            admin_groups: self.admin_groups.clone(),
            ops_groups: self.ops_groups.clone(),
            trainer_groups: self.trainer_groups.clone(),
            cohorts: self.cohorts.clone(),
        })
    }
}

/// Every provider of the file, names unique.
pub fn providers(files: &[OidcFile]) -> Result<Vec<OidcProvider>, ConfigError> {
    let mut out: Vec<OidcProvider> = Vec::new();
    for f in files {
        let p = f.provider()?;
        if out.iter().any(|o| o.name == p.name) {
            return Err(ConfigError::Invalid(format!(
                "[[login.oidc]]: the name {:?} is given twice",
                p.name
            )));
        }
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_comes_from_a_file_or_a_variable_and_never_shows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cr3t-value\n").unwrap();
        let toml = format!(
            "name = \"uni\"\nissuer = \"https://id.example/\"\nclient_id = \"lab\"\nclient_secret_file = {:?}\n",
            path.display().to_string()
        );
        let file: OidcFile = toml::from_str(&toml).unwrap();
        let p = file.provider().unwrap();
        assert_eq!(p.client_secret(), "s3cr3t-value");
        assert_eq!(p.issuer, "https://id.example");
        assert_eq!(p.scopes, ["openid", "profile", "email"]);
        assert!(!format!("{p:?}").contains("s3cr3t"));

        let inline: OidcFile = toml::from_str(
            "name = \"uni\"\nissuer = \"https://id.example\"\nclient_id = \"lab\"\nclient_secret = \"oops\"\n",
        )
        .unwrap();
        let err = inline.provider().unwrap_err().to_string();
        assert!(
            err.contains("does not belong in lab.toml") && !err.contains("oops"),
            "{err}"
        );
    }
}
