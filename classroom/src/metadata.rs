//! nbgrader's cell metadata (`metadata.nbgrader`, schema version 3): what a
//! cell is, and the rules a trainer's source must follow.
//!
//! The flags, as nbgrader's `utils` reads them:
//! - `is_grade`: `grade`; `is_solution`: `solution`; `is_task`: `task`
//!   (each false when absent);
//! - `is_locked`: false for a solution cell, true for a grade cell,
//!   otherwise `locked`. So a test cell is locked even if its metadata says
//!   `"locked": false`, as nbgrader's own examples do.
//!
//! The rules [`validate`] applies to a source cell, from nbgrader's
//! `nbgraderformat/v3.json` and `MetadataValidatorV3`:
//! - `metadata.nbgrader` is an object with only the keys `schema_version`,
//!   `grade`, `locked`, `solution`, `task`, `grade_id`, `points`,
//!   `checksum`, `cell_type` (`additionalProperties: false`);
//! - `schema_version` is 3. nbgrader treats a missing one as 0 and refuses
//!   anything but 3 ("run `nbgrader update`"), and so do we;
//! - `grade`, `locked`, `solution` are required booleans, `task` an
//!   optional one;
//! - `grade_id` matches `^[a-zA-Z0-9_\-]*$` and must be non-empty when
//!   grade, solution or locked is set; `points` is a number >= 0 and is
//!   required on grade cells; `checksum` is 32 characters; `cell_type` is
//!   raw, code or markdown;
//! - a markdown cell is grade and solution together or neither (unless it
//!   is a task); a task cell is markdown;
//! - grade ids of cells with grade, solution or locked are unique
//!   (checked by [`crate::source`], which sees every cell).
//!
//! Stricter than nbgrader, because nbgrader crashes or grades wrongly
//! otherwise: a task cell needs a grade_id and points (nbgrader's
//! `SaveCells` raises `KeyError` without them) and is neither grade nor
//! solution (it would be saved twice under one name); a raw cell has no
//! flags (it can't be run or answered; nbgrader would count a raw grade
//! cell as manual); points are finite and at most [`MAX_POINTS`] so totals
//! stay finite; and task ids are unique too.

use serde_json::{Map, Value};

use crate::error::FormatError;
use crate::notebook::cell_type_of;

/// The largest `points` a cell may carry; keeps every total finite.
pub const MAX_POINTS: f64 = 1_000_000.0;

const KEYS: [&str; 9] = [
    "schema_version",
    "grade",
    "locked",
    "solution",
    "task",
    "grade_id",
    "points",
    "checksum",
    "cell_type",
];

fn nbgrader(cell: &Value) -> Option<&Map<String, Value>> {
    cell["metadata"]["nbgrader"].as_object()
}

fn flag(cell: &Value, key: &str) -> bool {
    nbgrader(cell).is_some_and(|m| m.get(key) == Some(&Value::Bool(true)))
}

/// nbgrader's `is_grade`. Only JSON `true` counts: a submission can't make
/// a cell graded with `"grade": 1`.
pub fn is_grade(cell: &Value) -> bool {
    flag(cell, "grade")
}

/// nbgrader's `is_solution`.
pub fn is_solution(cell: &Value) -> bool {
    flag(cell, "solution")
}

/// nbgrader's `is_task`.
pub fn is_task(cell: &Value) -> bool {
    flag(cell, "task")
}

/// nbgrader's `is_locked`: solution cells never, grade cells always,
/// otherwise the `locked` flag.
pub fn is_locked(cell: &Value) -> bool {
    if nbgrader(cell).is_none() || is_solution(cell) {
        false
    } else {
        is_grade(cell) || flag(cell, "locked")
    }
}

/// `metadata.nbgrader.grade_id`, if it is a string.
pub fn grade_id(cell: &Value) -> Option<&str> {
    nbgrader(cell)?.get("grade_id")?.as_str()
}

/// `metadata.nbgrader.points`, if it is a number.
pub fn points(cell: &Value) -> Option<f64> {
    nbgrader(cell)?.get("points")?.as_f64()
}

/// What a valid source cell is, from its nbgrader metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Flags {
    pub grade: bool,
    pub solution: bool,
    pub locked: bool,
    pub task: bool,
    /// Empty only when no flag is set.
    pub grade_id: String,
    /// Present on grade and task cells.
    pub points: Option<f64>,
}

impl Flags {
    /// Whether any flag gives the cell a role (else it is a plain cell
    /// that happens to carry nbgrader metadata).
    pub fn any(&self) -> bool {
        self.grade || self.solution || self.locked || self.task
    }
}

/// Checks a source cell's nbgrader metadata (rules in the module docs).
/// `Ok(None)`: the cell has none.
pub fn validate(index: usize, cell: &Value) -> Result<Option<Flags>, FormatError> {
    let Some(raw) = cell["metadata"].get("nbgrader") else {
        return Ok(None);
    };
    let id_hint = raw["grade_id"].as_str().filter(|id| valid_id(id));
    let fail = |problem: String| FormatError::cell(index, id_hint, problem);
    let meta = raw
        .as_object()
        .ok_or_else(|| fail("metadata.nbgrader is not an object".into()))?;
    if let Some(key) = meta.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(fail(format!(
            "metadata.nbgrader has the unknown key {key:?} (nbgrader's schema allows only {})",
            KEYS.join(", ")
        )));
    }
    match meta.get("schema_version") {
        Some(v) if v.as_u64() == Some(3) => {}
        None => {
            return Err(fail(
                "metadata.nbgrader has no schema_version; nbgrader 0.9 needs 3 (run `nbgrader update` on the source)".into(),
            ));
        }
        Some(v) => {
            return Err(fail(format!(
                "metadata.nbgrader.schema_version is {v}; nbgrader 0.9 needs 3 (run `nbgrader update` on the source)"
            )));
        }
    }
    let boolean = |key: &str, required: bool| -> Result<bool, FormatError> {
        match meta.get(key) {
            Some(Value::Bool(b)) => Ok(*b),
            None if !required => Ok(false),
            None => Err(fail(format!("metadata.nbgrader.{key} is missing"))),
            Some(_) => Err(fail(format!(
                "metadata.nbgrader.{key} is not true or false"
            ))),
        }
    };
    let grade = boolean("grade", true)?;
    let solution = boolean("solution", true)?;
    let locked = boolean("locked", true)?;
    let task = boolean("task", false)?;
    let any = grade || solution || locked || task;

    let grade_id = match meta.get("grade_id") {
        None => String::new(),
        Some(Value::String(id)) if valid_id(id) => id.clone(),
        Some(_) => {
            return Err(fail(
                "metadata.nbgrader.grade_id must be letters, digits, '_' and '-' only".into(),
            ));
        }
    };
    if any && grade_id.is_empty() {
        return Err(fail(
            "a grade, solution, locked or task cell needs a grade_id".into(),
        ));
    }
    let points = match meta.get("points") {
        None => None,
        Some(Value::Number(n)) => {
            let p = n.as_f64().filter(|p| p.is_finite());
            match p {
                Some(p) if (0.0..=MAX_POINTS).contains(&p) => Some(p),
                _ => {
                    return Err(fail(format!(
                        "metadata.nbgrader.points is {n}; it must be between 0 and {MAX_POINTS}"
                    )));
                }
            }
        }
        Some(_) => return Err(fail("metadata.nbgrader.points is not a number".into())),
    };
    if (grade || task) && points.is_none() {
        return Err(fail("a grade or task cell needs points".into()));
    }
    match meta.get("checksum") {
        None => {}
        Some(Value::String(s)) if s.chars().count() == 32 => {}
        Some(_) => {
            return Err(fail(
                "metadata.nbgrader.checksum is not 32 characters".into(),
            ));
        }
    }
    match meta.get("cell_type").map(|t| t.as_str()) {
        None | Some(Some("raw" | "code" | "markdown")) => {}
        Some(_) => {
            return Err(fail(
                "metadata.nbgrader.cell_type is not raw, code or markdown".into(),
            ));
        }
    }

    let cell_type = cell_type_of(cell);
    if task {
        if cell_type != "markdown" {
            return Err(fail("a task cell must be markdown".into()));
        }
        if grade || solution {
            return Err(fail(
                "a task cell can't also be a grade or solution cell".into(),
            ));
        }
    } else if cell_type == "markdown" && grade && !solution {
        return Err(fail(
            "a markdown grade cell must also be a solution cell (a manually graded answer)".into(),
        ));
    } else if cell_type == "markdown" && solution && !grade {
        return Err(fail(
            "a markdown solution cell must also be a grade cell (a manually graded answer)".into(),
        ));
    }
    if cell_type == "raw" && (grade || solution) {
        return Err(fail("a raw cell can't be a grade or solution cell".into()));
    }
    Ok(Some(Flags {
        grade,
        solution,
        locked,
        task,
        grade_id,
        points,
    }))
}

fn valid_id(id: &str) -> bool {
    id.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cell(kind: &str, nbgrader: Value) -> Value {
        json!({"cell_type": kind, "metadata": {"nbgrader": nbgrader}, "source": ""})
    }

    fn meta(grade: bool, solution: bool, locked: bool) -> Value {
        json!({"grade": grade, "solution": solution, "locked": locked, "grade_id": "c1",
               "points": 1, "schema_version": 3})
    }

    #[test]
    fn a_test_cell_is_locked_even_when_its_metadata_says_unlocked() {
        let c = cell("code", meta(true, false, false));
        assert!(is_locked(&c) && is_grade(&c) && !is_solution(&c));
        let answer = cell("code", meta(true, true, true));
        assert!(!is_locked(&answer));
        assert!(!is_locked(&json!({"metadata": {}})));
    }

    #[test]
    fn nbgrader_create_assignment_metadata_validates() {
        let flags = validate(0, &cell("code", meta(true, false, true)))
            .unwrap()
            .unwrap();
        assert_eq!(flags.grade_id, "c1");
        assert_eq!(flags.points, Some(1.0));
        let task = json!({"grade": false, "solution": false, "locked": true, "task": true,
                          "grade_id": "t", "points": 2, "schema_version": 3});
        assert!(validate(0, &cell("markdown", task)).unwrap().unwrap().task);
        assert_eq!(validate(0, &json!({"metadata": {}})), Ok(None));
    }

    #[test]
    fn metadata_breaking_nbgraders_schema_is_refused_with_the_cell_named() {
        let cases = [
            json!({"grade": true, "solution": false, "locked": false, "grade_id": "c1", "points": 1}),
            json!({"grade": true, "solution": false, "locked": false, "grade_id": "c1", "points": 1, "schema_version": 2}),
            json!({"grade": true, "solution": false, "locked": false, "grade_id": "c1", "points": -1, "schema_version": 3}),
            json!({"grade": true, "solution": false, "locked": false, "grade_id": "c1", "points": 1e300, "schema_version": 3}),
            json!({"grade": true, "solution": false, "locked": false, "grade_id": "c1", "points": "2", "schema_version": 3}),
            json!({"grade": true, "solution": false, "locked": false, "grade_id": "c1", "schema_version": 3}),
            json!({"grade": true, "solution": false, "locked": false, "grade_id": "", "points": 1, "schema_version": 3}),
            json!({"grade": true, "solution": false, "locked": false, "grade_id": "a b", "points": 1, "schema_version": 3}),
            json!({"grade": true, "solution": false, "grade_id": "c1", "points": 1, "schema_version": 3}),
            json!({"grade": 1, "solution": false, "locked": false, "grade_id": "c1", "points": 1, "schema_version": 3}),
            json!({"grade": true, "solution": false, "locked": false, "grade_id": "c1", "points": 1, "schema_version": 3, "extra": 1}),
            json!({"grade": true, "solution": false, "locked": false, "grade_id": "c1", "points": 1, "schema_version": 3, "checksum": "abc"}),
            json!({"grade": false, "solution": false, "locked": false, "task": true, "grade_id": "c1", "points": 1, "schema_version": 3}),
            json!([]),
        ];
        for (i, case) in cases.into_iter().enumerate() {
            let err = validate(4, &cell("code", case)).unwrap_err();
            assert!(err.to_string().starts_with("cell 5"), "case {i}: {err}");
        }
        let named = validate(
            0,
            &cell(
                "code",
                json!({"grade": true, "solution": false,
            "locked": false, "grade_id": "q1", "points": -2, "schema_version": 3}),
            ),
        )
        .unwrap_err();
        assert!(named.to_string().contains("\"q1\""), "{named}");
    }

    #[test]
    fn markdown_grade_cells_must_be_answers_as_nbgrader_requires() {
        assert!(validate(0, &cell("markdown", meta(true, false, false))).is_err());
        assert!(validate(0, &cell("markdown", meta(false, true, false))).is_err());
        assert!(validate(0, &cell("markdown", meta(true, true, false))).is_ok());
        assert!(validate(0, &cell("raw", meta(true, true, false))).is_err());
    }
}
