//! People in bulk (issue 17): enrolment from a list, applied in one
//! transaction, and deactivation.
//!
//! Enrolment is idempotent: each person is compared with their row and
//! only a difference is written, so a second run of the same list changes
//! nothing, and a dry run computes the same answer and rolls it back. A
//! field the list does not give (`None`) is kept as it is.
//!
//! Deactivation keeps the user's rows (files, submissions, scores) and ends
//! what lets them act: their tokens and browser sessions are revoked and
//! their login codes deleted, and no new one can be made while they are
//! deactivated. Their kernels are the kernel manager's to stop.

use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

use super::{Role, Store, StoreError, now};

/// One person of a list: a field left out is kept as it is (a new user
/// gets the engineer role and no group).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub name: String,
    #[serde(default, deserialize_with = "given")]
    pub email: Option<Option<String>>,
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default, deserialize_with = "given")]
    pub group: Option<Option<String>>,
}

/// A field that is present is `Some`, even when it is `null`.
fn given<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// What a user is, as enrolment compares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub name: String,
    pub email: Option<String>,
    pub role: Role,
    pub group: Option<String>,
    /// When they were deactivated; none while active.
    pub deactivated: Option<String>,
}

/// One field's change: before, after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: &'static str,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What an enrolment did, or would do in a dry run.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Enrolment {
    pub added: Vec<Account>,
    pub changed: Vec<(String, Vec<FieldChange>)>,
    pub unchanged: usize,
    /// Listed people who are deactivated: their fields are updated, and
    /// they stay deactivated (only an explicit reactivation restores them).
    pub deactivated: Vec<String>,
    pub dry_run: bool,
}

impl Account {
    fn from_row(r: &rusqlite::Row) -> rusqlite::Result<Account> {
        Ok(Account {
            name: r.get(0)?,
            email: r.get(1)?,
            role: r.get(2)?,
            group: r.get(3)?,
            deactivated: r.get(4)?,
        })
    }

    /// This account with what `p` gives, and what that changes.
    fn with(&self, p: &Person) -> (Account, Vec<FieldChange>) {
        let mut after = self.clone();
        let mut changes = Vec::new();
        let mut set = |field, before: &mut Option<String>, to: &Option<Option<String>>| {
            if let Some(to) = to
                && to != before
            {
                changes.push(FieldChange {
                    field,
                    before: before.clone(),
                    after: to.clone(),
                });
                *before = to.clone();
            }
        };
        set("email", &mut after.email, &p.email);
        set("group", &mut after.group, &p.group);
        if let Some(role) = p.role
            && role != self.role
        {
            changes.push(FieldChange {
                field: "role",
                before: Some(self.role.as_str().into()),
                after: Some(role.as_str().into()),
            });
            after.role = role;
        }
        (after, changes)
    }
}

const ACCOUNT: &str = "SELECT name, email, role, grp, deactivated FROM users";

impl Store {
    /// Adds the people who are not users and updates those whose fields
    /// differ, all or nothing; with `dry_run`, only says what it would do.
    /// The names (and groups) must have been checked by the caller.
    pub fn enrol(&self, people: &[Person], dry_run: bool) -> Result<Enrolment, StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        let tx = conn.transaction()?;
        let mut report = Enrolment {
            dry_run,
            ..Enrolment::default()
        };
        {
            let mut find = tx.prepare_cached(&format!("{ACCOUNT} WHERE name = ?1"))?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO users (name, email, role, grp, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut update = tx.prepare_cached(
                "UPDATE users SET email = ?2, role = ?3, grp = ?4 WHERE name = ?1",
            )?;
            let created = now();
            for p in people {
                match find.query_row([&p.name], Account::from_row).optional()? {
                    None => {
                        let account = Account {
                            name: p.name.clone(),
                            email: p.email.clone().flatten(),
                            role: p.role.unwrap_or(Role::Engineer),
                            group: p.group.clone().flatten(),
                            deactivated: None,
                        };
                        insert.execute(params![
                            account.name,
                            account.email,
                            account.role,
                            account.group,
                            created
                        ])?;
                        report.added.push(account);
                    }
                    Some(account) => {
                        if account.deactivated.is_some() {
                            report.deactivated.push(account.name.clone());
                        }
                        let (after, changes) = account.with(p);
                        if changes.is_empty() {
                            report.unchanged += 1;
                        } else {
                            update.execute(params![
                                after.name,
                                after.email,
                                after.role,
                                after.group
                            ])?;
                            report.changed.push((after.name, changes));
                        }
                    }
                }
            }
        }
        if dry_run {
            tx.rollback()?;
        } else {
            tx.commit()?;
        }
        Ok(report)
    }

    /// Every user with their e-mail and state, by name.
    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{ACCOUNT} ORDER BY name"))?;
            let rows = stmt
                .query_map([], Account::from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// One user with their e-mail and state.
    pub fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                &format!("{ACCOUNT} WHERE name = ?1"),
                [name],
                Account::from_row,
            )
            .optional()?)
        })
    }

    /// Deactivates a user: their tokens, sessions and login codes end.
    /// `false` if they were deactivated already (nothing changes).
    pub fn deactivate_user(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        let tx = conn.transaction()?;
        if !Store::user_exists(&tx, name)? {
            return Err(StoreError::NoUser(name.to_owned()));
        }
        let at = now();
        let n = tx.execute(
            "UPDATE users SET deactivated = ?2 WHERE name = ?1 AND deactivated IS NULL",
            params![name, at],
        )?;
        tx.execute(
            "UPDATE tokens SET revoked = ?2 WHERE user_name = ?1 AND revoked IS NULL",
            params![name, at],
        )?;
        tx.execute("DELETE FROM login_codes WHERE user_name = ?1", [name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Lets a deactivated user sign in again (with a new token or login
    /// code: the old ones stay revoked). `false` if they were active.
    pub fn reactivate_user(&self, name: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            if !Store::user_exists(c, name)? {
                return Err(StoreError::NoUser(name.to_owned()));
            }
            let n = c.execute(
                "UPDATE users SET deactivated = NULL WHERE name = ?1 AND deactivated IS NOT NULL",
                [name],
            )?;
            Ok(n > 0)
        })
    }

    /// Which of `names` are deactivated users.
    pub fn deactivated_among<'n>(
        &self,
        names: impl IntoIterator<Item = &'n str>,
    ) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT 1 FROM users WHERE name = ?1 AND deactivated IS NOT NULL",
            )?;
            let mut out = Vec::new();
            for name in names {
                if stmt.exists([name])? {
                    out.push(name.to_owned());
                }
            }
            Ok(out)
        })
    }

    /// Refuses a deactivated user (for what would let them act again).
    pub(super) fn active_user(c: &rusqlite::Connection, name: &str) -> Result<(), StoreError> {
        let deactivated: Option<Option<String>> = c
            .query_row(
                "SELECT deactivated FROM users WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        match deactivated {
            None => Err(StoreError::NoUser(name.to_owned())),
            Some(Some(_)) => Err(StoreError::Deactivated(name.to_owned())),
            Some(None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(name: &str, role: Option<Role>, group: Option<&str>) -> Person {
        Person {
            name: name.into(),
            email: Some(Some(format!("{name}@example.org"))),
            role,
            group: Some(group.map(str::to_owned)),
        }
    }

    #[test]
    fn enrolling_twice_changes_nothing_the_second_time_and_a_dry_run_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        store.add_user("bob", Role::Engineer, None).unwrap();
        let people = vec![
            person("ana", Some(Role::Trainer), Some("staff")),
            person("bob", None, Some("cohort-1")),
        ];
        let dry = store.enrol(&people, true).unwrap();
        assert_eq!(dry.added.len(), 1);
        assert_eq!(dry.changed.len(), 1);
        assert!(
            store.account("ana").unwrap().is_none(),
            "a dry run writes nothing"
        );

        let first = store.enrol(&people, false).unwrap();
        assert_eq!((first.added, first.changed), (dry.added, dry.changed));
        let bob = store.account("bob").unwrap().unwrap();
        assert_eq!(
            (bob.role, bob.group.as_deref()),
            (Role::Engineer, Some("cohort-1"))
        );

        let second = store.enrol(&people, false).unwrap();
        assert!(second.added.is_empty() && second.changed.is_empty());
        assert_eq!(second.unchanged, 2);

        // A field left out is kept; one given as null is cleared.
        let moved = Person {
            name: "bob".into(),
            email: None,
            role: Some(Role::Ops),
            group: Some(None),
        };
        let third = store.enrol(&[moved], false).unwrap();
        let bob = store.account("bob").unwrap().unwrap();
        assert_eq!(bob.email.as_deref(), Some("bob@example.org"));
        assert_eq!((bob.role, bob.group), (Role::Ops, None));
        let fields: Vec<_> = third.changed[0].1.iter().map(|c| c.field).collect();
        assert_eq!(fields, ["group", "role"]);
    }

    #[test]
    fn a_deactivated_user_has_no_live_token_and_gets_no_new_one_until_reactivated() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        store.add_user("eve", Role::Engineer, None).unwrap();
        let (_, token) = store.create_token("eve", "cli").unwrap();
        let code = store
            .create_login_code("eve", std::time::Duration::from_secs(60))
            .unwrap();
        assert!(store.deactivate_user("eve").unwrap());
        assert!(!store.deactivate_user("eve").unwrap());
        assert!(store.user_for_token(&token).unwrap().is_none());
        assert!(store.login_code_user(&code, false).unwrap().is_none());
        assert!(matches!(
            store.create_token("eve", "cli"),
            Err(StoreError::Deactivated(_))
        ));
        assert_eq!(store.deactivated_among(["eve", "nobody"]).unwrap(), ["eve"]);
        // Enrolment updates them and leaves them deactivated.
        let report = store
            .enrol(&[person("eve", Some(Role::Trainer), None)], false)
            .unwrap();
        assert_eq!(report.deactivated, ["eve"]);
        assert!(store.account("eve").unwrap().unwrap().deactivated.is_some());

        assert!(store.reactivate_user("eve").unwrap());
        assert!(
            store.user_for_token(&token).unwrap().is_none(),
            "old tokens stay revoked"
        );
        let (_, fresh) = store.create_token("eve", "cli").unwrap();
        assert_eq!(
            store.user_for_token(&fresh).unwrap().unwrap().role,
            Role::Trainer
        );
    }
}
