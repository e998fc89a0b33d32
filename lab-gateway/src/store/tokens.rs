//! API tokens, browser sessions and one-time login codes: each stored as a
//! SHA-256 hash, never in plain text.
//!
//! A token is an API token (the CLI's, and personal ones a user makes with
//! a label and an expiry) or a browser session (made by signing in, with an
//! absolute lifetime and an idle timeout). Its last use is kept, to the
//! minute (or a quarter of a session's idle timeout, if shorter), so
//! checking a token rarely writes.

use std::time::Duration;

use rand::RngCore;
use rusqlite::{OptionalExtension as _, params};
use serde::Serialize;

use super::{Store, StoreError, User, now};

pub fn hash_token(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// For scripts, `lab` commands and `jupyter server --gateway-url`.
    Api,
    /// A browser's sign-in (its cookie).
    Session,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Api => "api",
            TokenKind::Session => "session",
        }
    }
}

/// A live token as its owner (or ops) sees it: never the token itself.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Token)]
pub struct TokenInfo {
    pub id: String,
    pub kind: TokenKind,
    pub label: String,
    pub created: String,
    /// RFC 3339; none: never.
    pub expires: Option<String>,
    pub last_used: Option<String>,
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn iso_of(unix: Option<i64>) -> Option<String> {
    unix.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(crate::timefmt::iso)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// A token that is live now: not revoked, not expired, not idle too long.
const LIVE: &str = "t.revoked IS NULL AND (t.expires IS NULL OR t.expires > ?2)
     AND (t.idle_s IS NULL OR t.last_used IS NULL OR t.last_used + t.idle_s > ?2)";

impl Store {
    /// Creates an API token for `user` that does not expire; returns
    /// (token id, plain token).
    pub fn create_token(&self, user: &str, label: &str) -> Result<(String, String), StoreError> {
        self.insert_token(user, label, TokenKind::Api, None, None)
    }

    /// A personal API token that expires `lifetime` from now.
    pub fn create_personal_token(
        &self,
        user: &str,
        label: &str,
        lifetime: Duration,
    ) -> Result<(String, String), StoreError> {
        self.insert_token(user, label, TokenKind::Api, Some(lifetime), None)
    }

    /// A browser session: it ends `lifetime` from now, or after `idle`
    /// without a request, whichever comes first.
    pub fn create_session(
        &self,
        user: &str,
        lifetime: Duration,
        idle: Option<Duration>,
    ) -> Result<(String, String), StoreError> {
        self.insert_token(user, "browser", TokenKind::Session, Some(lifetime), idle)
    }

    fn insert_token(
        &self,
        user: &str,
        label: &str,
        kind: TokenKind,
        lifetime: Option<Duration>,
        idle: Option<Duration>,
    ) -> Result<(String, String), StoreError> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let at = unix_now();
        self.with(|c| {
            Store::active_user(c, user)?;
            c.execute(
                "INSERT INTO tokens (id, user_name, sha256, label, created, kind, expires, idle_s, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    user,
                    hash_token(&token),
                    label,
                    now(),
                    kind.as_str(),
                    lifetime.map(|l| at.saturating_add(secs(l))),
                    idle.map(secs),
                    idle.map(|_| at),
                ],
            )?;
            Ok(())
        })?;
        Ok((id, token))
    }

    /// Revokes a token by its id, or by the token itself. Returns whether one was revoked.
    pub fn revoke_token(&self, id_or_token: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE tokens SET revoked = ?1 WHERE (id = ?2 OR sha256 = ?3) AND revoked IS NULL",
                params![now(), id_or_token, hash_token(id_or_token)],
            )?;
            Ok(n > 0)
        })
    }

    /// Revokes one of `user`'s own tokens by its id; `false` if they have
    /// no live token with that id (someone else's is not theirs to end).
    pub fn revoke_own_token(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE tokens SET revoked = ?1 WHERE id = ?2 AND user_name = ?3 AND revoked IS NULL",
                params![now(), id, user],
            )?;
            Ok(n > 0)
        })
    }

    /// Revokes a browser session by its token; API tokens are left alone.
    /// Returns whether one was revoked.
    pub fn revoke_session(&self, token: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE tokens SET revoked = ?1 WHERE sha256 = ?2 AND kind = 'session' AND revoked IS NULL",
                params![now(), hash_token(token)],
            )?;
            Ok(n > 0)
        })
    }

    /// Ends every live browser session of `user`; returns how many.
    pub fn end_sessions(&self, user: &str) -> Result<usize, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                &format!(
                    "UPDATE tokens AS t SET revoked = ?1
                     WHERE t.user_name = ?3 AND t.kind = 'session' AND {LIVE}"
                ),
                params![now(), unix_now(), user],
            )?)
        })
    }

    /// `user`'s live tokens and sessions, newest first.
    pub fn tokens_of(&self, user: &str) -> Result<Vec<TokenInfo>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT t.id, t.kind, t.label, t.created, t.expires, t.last_used FROM tokens t
                 WHERE t.user_name = ?1 AND {LIVE} ORDER BY t.created DESC, t.id"
            ))?;
            let rows = stmt
                .query_map(params![user, unix_now()], |r| {
                    let kind: String = r.get(1)?;
                    Ok(TokenInfo {
                        id: r.get(0)?,
                        kind: if kind == "session" {
                            TokenKind::Session
                        } else {
                            TokenKind::Api
                        },
                        label: r.get(2)?,
                        created: r.get(3)?,
                        expires: iso_of(r.get(4)?),
                        last_used: iso_of(r.get(5)?),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// Revokes every live token of `user` with this label (the previous start's login token).
    pub fn revoke_label(&self, user: &str, label: &str) -> Result<usize, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE tokens SET revoked = ?1 WHERE user_name = ?2 AND label = ?3 AND revoked IS NULL",
                params![now(), user, label],
            )?)
        })
    }

    /// A one-time login code for `user`, valid `ttl` from now: what the
    /// printed login URL carries instead of a token. Stored hashed, as tokens.
    pub fn create_login_code(
        &self,
        user: &str,
        ttl: std::time::Duration,
    ) -> Result<String, StoreError> {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let code = hex::encode(bytes);
        let expires = chrono::Utc::now().timestamp() + ttl.as_secs() as i64;
        self.with(|c| {
            Store::active_user(c, user)?;
            c.execute(
                "DELETE FROM login_codes WHERE expires < ?1",
                [chrono::Utc::now().timestamp()],
            )?;
            c.execute(
                "INSERT INTO login_codes (sha256, user_name, expires) VALUES (?1, ?2, ?3)",
                params![hash_token(&code), user, expires],
            )?;
            Ok(())
        })?;
        Ok(code)
    }

    /// The user a live login code is for; `redeem` also uses it up, so a
    /// code logs in once.
    pub fn login_code_user(&self, code: &str, redeem: bool) -> Result<Option<User>, StoreError> {
        self.with(|c| {
            let user = c
                .query_row(
                    "SELECT u.name, u.role, u.grp FROM login_codes l JOIN users u ON u.name = l.user_name
                     WHERE l.sha256 = ?1 AND l.expires >= ?2 AND u.deactivated IS NULL",
                    params![hash_token(code), chrono::Utc::now().timestamp()],
                    User::from_row,
                )
                .optional()?;
            if redeem && user.is_some() {
                // Whoever deletes the row redeems it: two racing logins get one session.
                let n = c.execute("DELETE FROM login_codes WHERE sha256 = ?1", [hash_token(code)])?;
                if n == 0 {
                    return Ok(None);
                }
            }
            Ok(user)
        })
    }

    /// The user a live token belongs to (and its last use, kept).
    pub fn user_for_token(&self, token: &str) -> Result<Option<User>, StoreError> {
        let sha = hash_token(token);
        let at = unix_now();
        self.with(|c| {
            let user = c
                .prepare_cached(&format!(
                    "SELECT u.name, u.role, u.grp FROM tokens t JOIN users u ON u.name = t.user_name
                     WHERE t.sha256 = ?1 AND {LIVE} AND u.deactivated IS NULL"
                ))?
                .query_row(params![sha, at], User::from_row)
                .optional()?;
            if user.is_some() {
                c.prepare_cached(
                    "UPDATE tokens SET last_used = ?2 WHERE sha256 = ?1
                     AND (last_used IS NULL OR last_used < ?2 - MIN(60, COALESCE(idle_s, 240) / 4))",
                )?
                .execute(params![sha, at])?;
            }
            Ok(user)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Role;
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        store
            .add_user("alice", Role::Engineer, Some("cohort-1"))
            .unwrap();
        let (id, token) = store.create_token("alice", "cli").unwrap();
        assert_eq!(store.user_for_token(&token).unwrap().unwrap().name, "alice");
        let raw = std::fs::read(dir.path().join("lab.db")).unwrap();
        let wal = std::fs::read(dir.path().join("lab.db-wal")).unwrap_or_default();
        let needle = token.as_bytes();
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
        assert!(!wal.windows(needle.len()).any(|w| w == needle));
        assert!(store.revoke_token(&id).unwrap());
        assert!(store.user_for_token(&token).unwrap().is_none());
    }

    #[test]
    fn a_new_login_token_retires_the_previous_one_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        store.add_user("admin", Role::Admin, None).unwrap();
        let (_, api) = store.create_token("admin", "cli").unwrap();
        let (_, first) = store.create_token("admin", "login").unwrap();
        assert_eq!(store.revoke_label("admin", "login").unwrap(), 1);
        let (_, second) = store.create_token("admin", "login").unwrap();
        assert!(store.user_for_token(&first).unwrap().is_none());
        assert!(store.user_for_token(&second).unwrap().is_some());
        assert!(store.user_for_token(&api).unwrap().is_some());
    }

    #[test]
    fn expired_and_idle_tokens_are_dead_and_listed_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        store.add_user("ana", Role::Engineer, None).unwrap();
        let hour = Duration::from_secs(3600);
        let (id, personal) = store.create_personal_token("ana", "laptop", hour).unwrap();
        let (_, session) = store.create_session("ana", hour, Some(hour)).unwrap();
        let (_, expired) = store
            .create_personal_token("ana", "old", Duration::ZERO)
            .unwrap();
        let (_, idle) = store
            .create_session("ana", hour, Some(Duration::ZERO))
            .unwrap();
        assert!(store.user_for_token(&personal).unwrap().is_some());
        assert!(store.user_for_token(&session).unwrap().is_some());
        assert!(store.user_for_token(&expired).unwrap().is_none());
        assert!(store.user_for_token(&idle).unwrap().is_none());
        let listed = store.tokens_of("ana").unwrap();
        let kinds: Vec<_> = listed.iter().map(|t| (t.label.as_str(), t.kind)).collect();
        assert_eq!(kinds.len(), 2);
        assert!(
            kinds.contains(&("laptop", TokenKind::Api))
                && kinds.contains(&("browser", TokenKind::Session))
        );
        assert!(
            listed
                .iter()
                .all(|t| t.expires.is_some() && t.last_used.is_some())
        );
        // Someone else cannot revoke it; its owner can; sessions end apart.
        store.add_user("bob", Role::Engineer, None).unwrap();
        assert!(!store.revoke_own_token("bob", &id).unwrap());
        assert!(store.revoke_own_token("ana", &id).unwrap());
        assert!(store.user_for_token(&personal).unwrap().is_none());
        assert_eq!(store.end_sessions("ana").unwrap(), 1);
        assert!(store.user_for_token(&session).unwrap().is_none());
    }
}
