//! API tokens, browser sessions and one-time login codes: each stored as a
//! SHA-256 hash, never in plain text.

use rand::RngCore;
use rusqlite::{OptionalExtension as _, params};

use super::{Store, StoreError, User, now};

pub fn hash_token(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

impl Store {
    /// Creates a token for `user`; returns (token id, plain token).
    pub fn create_token(&self, user: &str, label: &str) -> Result<(String, String), StoreError> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        self.with(|c| {
            Store::active_user(c, user)?;
            c.execute(
                "INSERT INTO tokens (id, user_name, sha256, label, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, user, hash_token(&token), label, now()],
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

    /// Revokes a browser session (a token `/api/login` created) by its
    /// token; API tokens are left alone. Returns whether one was revoked.
    pub fn revoke_session(&self, token: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE tokens SET revoked = ?1 WHERE sha256 = ?2 AND label = 'browser' AND revoked IS NULL",
                params![now(), hash_token(token)],
            )?;
            Ok(n > 0)
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

    /// The user a live token belongs to.
    pub fn user_for_token(&self, token: &str) -> Result<Option<User>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT u.name, u.role, u.grp FROM tokens t JOIN users u ON u.name = t.user_name
                 WHERE t.sha256 = ?1 AND t.revoked IS NULL AND u.deactivated IS NULL",
                [hash_token(token)],
                User::from_row,
            )
            .optional()?)
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
}
