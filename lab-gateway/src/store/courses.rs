//! Who may change a course: its owner (who first published to it) and the
//! co-trainers the owner names. Courses published before owners were
//! recorded have no row: only admins change them until one names an owner.

use rusqlite::{OptionalExtension as _, params};

use super::{Store, StoreError};

/// A course's owner and co-trainers (sorted).
#[derive(Debug, Clone, PartialEq)]
pub struct CourseStaff {
    pub owner: String,
    pub trainers: Vec<String>,
}

impl Store {
    /// The owner and co-trainers of `course`; `None` if no owner is recorded.
    pub fn course_staff(&self, course: &str) -> Result<Option<CourseStaff>, StoreError> {
        self.with(|c| {
            let owner: Option<String> = c
                .query_row(
                    "SELECT owner FROM course_owners WHERE course = ?1",
                    params![course],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(owner) = owner else {
                return Ok(None);
            };
            let mut stmt = c.prepare(
                "SELECT user_name FROM course_trainers WHERE course = ?1 ORDER BY user_name",
            )?;
            let trainers = stmt
                .query_map(params![course], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(Some(CourseStaff { owner, trainers }))
        })
    }

    /// Makes `user` the owner of `course` unless it has one; returns the
    /// owner either way (two first publishes at once: one wins).
    pub fn claim_course(&self, course: &str, user: &str) -> Result<String, StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO course_owners (course, owner) VALUES (?1, ?2)",
                params![course, user],
            )?;
            Ok(c.query_row(
                "SELECT owner FROM course_owners WHERE course = ?1",
                params![course],
                |r| r.get(0),
            )?)
        })
    }

    /// Gives `course` to `owner` (an admin's decision).
    pub fn set_course_owner(&self, course: &str, owner: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO course_owners (course, owner) VALUES (?1, ?2)",
                params![course, owner],
            )?;
            c.execute(
                "DELETE FROM course_trainers WHERE course = ?1 AND user_name = ?2",
                params![course, owner],
            )?;
            Ok(())
        })
    }

    pub fn add_course_trainer(&self, course: &str, user: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO course_trainers (course, user_name) VALUES (?1, ?2)",
                params![course, user],
            )?;
            Ok(())
        })
    }

    /// Whether `user` was a co-trainer of `course`.
    pub fn remove_course_trainer(&self, course: &str, user: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM course_trainers WHERE course = ?1 AND user_name = ?2",
                params![course, user],
            )? > 0)
        })
    }
}
