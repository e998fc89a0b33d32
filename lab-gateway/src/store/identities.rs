//! Users who sign in through an OpenID provider, made and kept up to date
//! from its claims (just in time, as JupyterHub's authenticators do).
//!
//! A provider's subject is tied to one user for good at its first sign-in.
//! That user is made then, or is one ops enrolled beforehand under the
//! same name (`lab user import`) and no other subject holds; the local
//! admin made at the first start is never taken over this way. Every sign-in
//! sets the role, quota group and e-mail the claims give.

use rusqlite::{OptionalExtension as _, params};

use super::{Role, Store, StoreError, User, now};

/// What the provider's claims say, as a user here.
pub struct SignIn<'a> {
    pub provider: &'a str,
    pub subject: &'a str,
    pub name: &'a str,
    pub email: Option<&'a str>,
    /// None: kept (a new user: engineer).
    pub role: Option<Role>,
    /// None: kept (a new user: none).
    pub group: Option<Option<&'a str>>,
}

/// Why a sign-in found no user to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInRefused {
    #[error("the user name {0:?} belongs to another account here; ask ops to rename one of them")]
    Taken(String),
    #[error(
        "the user name {0:?} is a local administrator here and cannot be signed into from a provider"
    )]
    LocalAdmin(String),
    #[error("your account here ({0}) is deactivated; ask ops")]
    Deactivated(String),
}

impl Store {
    /// The user `s` signs in as: made, or linked, or found, and updated
    /// from the claims; all in one transaction.
    pub fn sign_in(&self, s: &SignIn<'_>) -> Result<Result<User, SignInRefused>, StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        let tx = conn.transaction()?;
        let linked: Option<String> = tx
            .query_row(
                "SELECT user_name FROM identities WHERE provider = ?1 AND subject = ?2",
                params![s.provider, s.subject],
                |r| r.get(0),
            )
            .optional()?;
        let name = match linked {
            Some(name) => name,
            None => {
                let existing: Option<(Role, bool)> = tx
                    .query_row(
                        "SELECT u.role, EXISTS (SELECT 1 FROM identities i WHERE i.user_name = u.name)
                         FROM users u WHERE u.name = ?1",
                        [s.name],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                match existing {
                    Some((_, true)) => return Ok(Err(SignInRefused::Taken(s.name.to_owned()))),
                    Some((Role::Admin, false)) => {
                        return Ok(Err(SignInRefused::LocalAdmin(s.name.to_owned())));
                    }
                    Some(_) => {}
                    None => {
                        scheduler::quota::validate_name(s.name)
                            .map_err(|e| StoreError::InvalidName(format!("user name: {e}")))?;
                        tx.execute(
                            "INSERT INTO users (name, role, grp, email, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![
                                s.name,
                                s.role.unwrap_or(Role::Engineer),
                                s.group.flatten(),
                                s.email,
                                now()
                            ],
                        )?;
                    }
                }
                tx.execute(
                    "INSERT INTO identities (provider, subject, user_name, linked) VALUES (?1, ?2, ?3, ?4)",
                    params![s.provider, s.subject, s.name, now()],
                )?;
                s.name.to_owned()
            }
        };
        let deactivated: Option<String> = tx.query_row(
            "SELECT deactivated FROM users WHERE name = ?1",
            [&name],
            |r| r.get(0),
        )?;
        if deactivated.is_some() {
            return Ok(Err(SignInRefused::Deactivated(name)));
        }
        tx.execute(
            "UPDATE users SET role = COALESCE(?2, role), grp = CASE WHEN ?5 THEN ?3 ELSE grp END,
                              email = COALESCE(?4, email) WHERE name = ?1",
            params![name, s.role, s.group.flatten(), s.email, s.group.is_some()],
        )?;
        let user = tx.query_row(
            "SELECT name, role, grp FROM users WHERE name = ?1",
            [&name],
            User::from_row,
        )?;
        tx.commit()?;
        Ok(Ok(user))
    }

    /// The user a provider's subject is tied to, if any.
    pub fn identity_user(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT user_name FROM identities WHERE provider = ?1 AND subject = ?2",
                params![provider, subject],
                |r| r.get(0),
            )
            .optional()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign_in<'a>(
        subject: &'a str,
        name: &'a str,
        role: Role,
        group: Option<&'a str>,
    ) -> SignIn<'a> {
        SignIn {
            provider: "uni",
            subject,
            name,
            email: None,
            role: Some(role),
            group: Some(group),
        }
    }

    #[test]
    fn a_subject_is_made_linked_and_updated_and_names_are_never_shared() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        store.add_user("admin", Role::Admin, None).unwrap();
        store
            .add_user("enrolled", Role::Engineer, Some("c1"))
            .unwrap();

        let ana = store
            .sign_in(&sign_in("s-ana", "ana", Role::Engineer, Some("c7")))
            .unwrap()
            .unwrap();
        assert_eq!(
            (ana.role, ana.group.as_deref()),
            (Role::Engineer, Some("c7"))
        );
        // Moved by the provider: moved here; a new name claim keeps the user.
        let again = store
            .sign_in(&sign_in("s-ana", "ana-lee", Role::Trainer, Some("c8")))
            .unwrap()
            .unwrap();
        assert_eq!(
            (again.name.as_str(), again.role, again.group.as_deref()),
            ("ana", Role::Trainer, Some("c8"))
        );
        // Another subject with the same name: refused.
        assert_eq!(
            store
                .sign_in(&sign_in("s-other", "ana", Role::Engineer, None))
                .unwrap()
                .err(),
            Some(SignInRefused::Taken("ana".into()))
        );
        // One ops enrolled: linked; the local admin: never.
        let e = store
            .sign_in(&sign_in("s-e", "enrolled", Role::Engineer, Some("c2")))
            .unwrap()
            .unwrap();
        assert_eq!(e.group.as_deref(), Some("c2"));
        assert_eq!(
            store
                .sign_in(&sign_in("s-root", "admin", Role::Admin, None))
                .unwrap()
                .err(),
            Some(SignInRefused::LocalAdmin("admin".into()))
        );
        store.deactivate_user("ana").unwrap();
        assert_eq!(
            store
                .sign_in(&sign_in("s-ana", "ana", Role::Engineer, None))
                .unwrap()
                .err(),
            Some(SignInRefused::Deactivated("ana".into()))
        );
        assert_eq!(
            store.identity_user("uni", "s-e").unwrap().as_deref(),
            Some("enrolled")
        );
        // Claims that manage neither role nor cohort keep what ops gave.
        store
            .enrol(
                &[crate::store::Person {
                    name: "enrolled".into(),
                    email: None,
                    role: Some(Role::Trainer),
                    group: None,
                }],
                false,
            )
            .unwrap();
        let kept = SignIn {
            role: None,
            group: None,
            ..sign_in("s-e", "enrolled", Role::Engineer, None)
        };
        let e = store.sign_in(&kept).unwrap().unwrap();
        assert_eq!((e.role, e.group.as_deref()), (Role::Trainer, Some("c2")));
    }
}
