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

/// One user on the ops list.
#[derive(Debug, Clone, Serialize)]
pub struct PersonRow {
    #[serde(flatten)]
    pub account: Account,
    /// The last request with any of their tokens or sessions (RFC 3339).
    pub last_seen: Option<String>,
    /// GPU-hours of their kernels within the period asked for.
    pub gpu_hours: f64,
}

/// A page of the ops list, and how many match in all.
#[derive(Debug, Clone, Serialize)]
pub struct PeoplePage {
    pub total: u64,
    pub users: Vec<PersonRow>,
}

/// `search` as a LIKE pattern that matches it anywhere, literally.
fn like_anywhere(search: &str) -> String {
    let mut p = String::from("%");
    for ch in search.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

impl Store {
    /// Users whose name, e-mail or group holds `search` (all for ""), by
    /// name, `limit` of them from `offset`; with their last request and
    /// their GPU-hours between `from_ms` and `to_ms`.
    pub fn people_page(
        &self,
        search: &str,
        offset: u64,
        limit: u64,
        (from_ms, to_ms): (u64, u64),
    ) -> Result<PeoplePage, StoreError> {
        let pattern = like_anywhere(search.trim());
        let filter = "(?1 = '%%' OR u.name LIKE ?1 ESCAPE '\\' OR u.email LIKE ?1 ESCAPE '\\'
                       OR u.grp LIKE ?1 ESCAPE '\\')";
        self.with(|c| {
            let total: i64 = c
                .prepare_cached(&format!("SELECT COUNT(*) FROM users u WHERE {filter}"))?
                .query_row([&pattern], |r| r.get(0))?;
            let mut stmt = c.prepare_cached(&format!(
                "SELECT u.name, u.email, u.role, u.grp, u.deactivated,
                    (SELECT MAX(t.last_used) FROM tokens t WHERE t.user_name = u.name),
                    (SELECT COALESCE(SUM(g.gpus * (MIN(COALESCE(g.ended, ?5), ?5) - MAX(g.started, ?4))), 0)
                     FROM usage g WHERE g.user_name = u.name AND g.gpus > 0
                       AND g.started < ?5 AND (g.ended IS NULL OR g.ended > ?4))
                 FROM users u WHERE {filter} ORDER BY u.name LIMIT ?2 OFFSET ?3"
            ))?;
            let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            let users = stmt
                .query_map(
                    params![pattern, clamp(limit), clamp(offset), clamp(from_ms), clamp(to_ms)],
                    |r| {
                        let last: Option<i64> = r.get(5)?;
                        let gpu_ms: f64 = r.get(6)?;
                        Ok(PersonRow {
                            account: Account::from_row(r)?,
                            last_seen: last
                                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                                .map(crate::timefmt::iso),
                            gpu_hours: gpu_ms / 3_600_000.0,
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(PeoplePage {
                total: u64::try_from(total).unwrap_or(0),
                users,
            })
        })
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

    #[test]
    fn the_ops_list_pages_searches_literally_and_sums_gpu_hours_in_the_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        let people: Vec<Person> = (0..30)
            .map(|i| {
                person(
                    &format!("u{i:02}"),
                    None,
                    Some(if i < 10 { "cohort_a" } else { "cohortxa" }),
                )
            })
            .collect();
        store.enrol(&people, false).unwrap();
        let page = store.people_page("", 25, 10, (0, 1)).unwrap();
        assert_eq!(page.total, 30);
        let names: Vec<_> = page.users.iter().map(|u| u.account.name.as_str()).collect();
        assert_eq!(names, ["u25", "u26", "u27", "u28", "u29"]);
        // `_` is a letter here, not LIKE's any-character.
        assert_eq!(
            store.people_page("cohort_a", 0, 100, (0, 1)).unwrap().total,
            10
        );
        assert_eq!(
            store.people_page("U0", 0, 100, (0, 1)).unwrap().total,
            10,
            "case-insensitive"
        );
        // 2 GPUs for an hour, half of it inside the period.
        let hour = 3_600_000;
        store
            .ledger_start(&super::super::UsageRow {
                kernel_id: uuid::Uuid::new_v4(),
                user: "u03".into(),
                group: "cohort_a".into(),
                spec: "academy-candle".into(),
                model: None,
                gpus: 2,
                cpus: 1.0,
                started: 10 * hour,
                ended: None,
            })
            .unwrap();
        let row = |from, to| store.people_page("u03", 0, 1, (from, to)).unwrap().users[0].gpu_hours;
        assert!((row(10 * hour + hour / 2, 11 * hour) - 1.0).abs() < 1e-9);
        assert_eq!(row(0, 10 * hour), 0.0);
    }
}
