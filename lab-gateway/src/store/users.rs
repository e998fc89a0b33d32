//! Users and their roles.
//!
//! A role read back from the database is checked: an unknown one (a typo
//! made with `sqlite3`, a role of a newer release) is an error that names
//! it, never quietly an engineer.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, now};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Engineer,
    Trainer,
    Ops,
    Admin,
}

/// A role name that is none of [`Role`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (engineer, trainer, ops, admin)")]
pub struct UnknownRole(pub String);

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Engineer => "engineer",
            Role::Trainer => "trainer",
            Role::Ops => "ops",
            Role::Admin => "admin",
        }
    }

    /// The role named `s` (as [`Role::as_str`] spells it).
    pub fn parse(s: &str) -> Result<Role, UnknownRole> {
        match s {
            "engineer" => Ok(Role::Engineer),
            "trainer" => Ok(Role::Trainer),
            "ops" => Ok(Role::Ops),
            "admin" => Ok(Role::Admin),
            _ => Err(UnknownRole(s.to_owned())),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::parse(s)
    }
}

impl FromSql for Role {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        Role::parse(value.as_str()?).map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

impl ToSql for Role {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub group: Option<String>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// A user from a row `name, role, grp`.
    pub(super) fn from_row(r: &rusqlite::Row) -> rusqlite::Result<User> {
        Ok(User {
            name: r.get(0)?,
            role: r.get(1)?,
            group: r.get(2)?,
        })
    }
}

impl Store {
    /// Adds a user. The name becomes a folder (their notebook root) and part
    /// of pod names, so it is one plain name: letters, digits, `-`, `_`, `.`,
    /// not starting with a dot.
    pub fn add_user(&self, name: &str, role: Role, group: Option<&str>) -> Result<(), StoreError> {
        scheduler::quota::validate_name(name)
            .map_err(|e| StoreError::InvalidName(format!("user name: {e}")))?;
        self.with(|c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO users (name, role, grp, created) VALUES (?1, ?2, ?3, ?4)",
                params![name, role, group, now()],
            )?;
            if n == 0 {
                return Err(StoreError::UserExists(name.to_owned()));
            }
            Ok(())
        })
    }

    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT name, role, grp FROM users ORDER BY name")?;
            let rows = stmt
                .query_map([], User::from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    pub fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT name, role, grp FROM users WHERE name = ?1",
                [name],
                User::from_row,
            )
            .optional()?)
        })
    }

    /// Whether `name` is a user (any role, even one this release does not know).
    pub(super) fn user_exists(c: &rusqlite::Connection, name: &str) -> Result<bool, StoreError> {
        Ok(
            c.query_row("SELECT 1 FROM users WHERE name = ?1", [name], |_| Ok(()))
                .optional()?
                .is_some(),
        )
    }

    /// Moves a user into a group (`None`: into none).
    pub fn set_user_group(&self, name: &str, group: Option<&str>) -> Result<(), StoreError> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE users SET grp = ?1 WHERE name = ?2",
                params![group, name],
            )?;
            if n == 0 {
                return Err(StoreError::NoUser(name.to_owned()));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_parse_and_unknown_ones_are_refused() {
        for role in [Role::Engineer, Role::Trainer, Role::Ops, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        let err = Role::parse("superuser").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown role \"superuser\" (engineer, trainer, ops, admin)"
        );
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn an_unknown_role_in_the_database_is_an_error_not_an_engineer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        store.add_user("mallory", Role::Engineer, None).unwrap();
        let (_, token) = store.create_token("mallory", "cli").unwrap();
        store
            .with(|c| {
                c.execute("UPDATE users SET role = 'superuser'", [])?;
                Ok(())
            })
            .unwrap();
        let err = store.user_for_token(&token).unwrap_err();
        assert!(
            err.to_string().contains("unknown role \"superuser\""),
            "{err}"
        );
        assert!(store.users().is_err());
    }

    #[test]
    fn a_user_cannot_be_added_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("lab.db")).unwrap();
        store.add_user("bob", Role::Ops, None).unwrap();
        for bad in ["../x", ".pool", "", "a/b", "a b"] {
            assert!(
                matches!(
                    store.add_user(bad, Role::Engineer, None),
                    Err(StoreError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            store.add_user("bob", Role::Ops, None),
            Err(StoreError::UserExists(_))
        ));
        assert_eq!(store.user("bob").unwrap().unwrap().role, Role::Ops);
        assert!(store.user("nobody").unwrap().is_none());
    }
}
