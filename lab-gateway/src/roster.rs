//! A list of people to enrol (`lab user import`, `POST /api/admin/users`),
//! read and checked whole before anything is written.
//!
//! The CSV has a header; `name` is required, `email`, `role` and `group`
//! are optional columns (a column left out keeps what each user has; an
//! empty cell clears an e-mail or a group, and gives a new user the
//! engineer role). Every problem is named by its line, and one problem
//! refuses the whole list, so a typo never half-enrols a cohort.

use std::collections::HashMap;

use crate::store::{Person, Role};

/// Why a list was refused: each problem with its line (or person).
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct Refused {
    pub problems: Vec<String>,
}

/// At most this many problems are named; the count says the rest.
const SHOWN: usize = 20;

/// The people of a CSV list.
pub fn read_csv(bytes: &[u8]) -> Result<Vec<Person>, Refused> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let refuse = |p: String| Refused { problems: vec![p] };
    let header = reader
        .headers()
        .map_err(|e| refuse(format!("the header cannot be read: {e}")))?
        .clone();
    let mut at = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        let known = ["name", "email", "role", "group"];
        let Some(k) = known.iter().find(|k| h.eq_ignore_ascii_case(k)) else {
            return Err(refuse(format!(
                "unknown column {h:?} in the header (name, email, role, group)"
            )));
        };
        if at.insert(*k, i).is_some() {
            return Err(refuse(format!("the column {k:?} is twice in the header")));
        }
    }
    let Some(&name_at) = at.get("name") else {
        return Err(refuse("the header has no \"name\" column".into()));
    };
    let mut people = Vec::new();
    let mut problems = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!(
                    "line {}: {e}",
                    e.position().map_or(0, |p| p.line())
                ));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let cell = |k: &str| at.get(k).map(|&i| record.get(i).unwrap_or(""));
        let optional = |k: &str| cell(k).map(|v| (!v.is_empty()).then(|| v.to_owned()));
        let role = match cell("role") {
            None | Some("") => None,
            Some(r) => match Role::parse(&r.to_ascii_lowercase()) {
                Ok(r) => Some(r),
                Err(e) => {
                    problems.push(format!("line {line}: {e}"));
                    continue;
                }
            },
        };
        people.push((
            line,
            Person {
                name: record.get(name_at).unwrap_or("").to_owned(),
                email: optional("email"),
                role,
                group: optional("group"),
            },
        ));
    }
    let checked = check(people.iter().map(|(l, p)| (format!("line {l}"), p)));
    problems.extend(checked.err().map(|r| r.problems).unwrap_or_default());
    refused(problems)?;
    Ok(people.into_iter().map(|(_, p)| p).collect())
}

/// Checks a list given as JSON (each person named by their place).
pub fn check_list(people: &[Person]) -> Result<(), Refused> {
    check(
        people
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("person {}", i + 1), p)),
    )
}

/// Names, groups and e-mails well formed; no name twice.
fn check<'p>(people: impl Iterator<Item = (String, &'p Person)>) -> Result<(), Refused> {
    let mut problems = Vec::new();
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (at, p) in people {
        if let Err(e) = scheduler::quota::validate_name(&p.name) {
            problems.push(format!("{at}: user name {:?}: {e}", p.name));
        }
        if let Some(Some(g)) = &p.group
            && let Err(e) = scheduler::quota::validate_name(g)
        {
            problems.push(format!("{at}: group {g:?}: {e}"));
        }
        if let Some(Some(mail)) = &p.email
            && !plausible_email(mail)
        {
            problems.push(format!("{at}: {mail:?} is not an e-mail address"));
        }
        if let Some(first) = seen.insert(&p.name, at.clone()) {
            problems.push(format!("{at}: {:?} is listed already ({first})", p.name));
        }
    }
    refused(problems)
}

/// One `@` with something on both sides and no space: enough to catch a
/// column put in the wrong place, without refusing real addresses.
fn plausible_email(mail: &str) -> bool {
    matches!(mail.split_once('@'), Some((local, domain))
        if !local.is_empty() && !domain.is_empty() && !domain.contains('@'))
        && !mail.chars().any(char::is_whitespace)
}

fn refused(mut problems: Vec<String>) -> Result<(), Refused> {
    if problems.is_empty() {
        return Ok(());
    }
    let more = problems.len().saturating_sub(SHOWN);
    problems.truncate(SHOWN);
    if more > 0 {
        problems.push(format!("and {more} more"));
    }
    Err(Refused { problems })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_reads_with_its_optional_columns_and_bad_rows_are_named_by_line() {
        let people = read_csv(b"\xef\xbb\xbfName,Role,group\nana,Trainer,staff\nbob,,\n").unwrap();
        assert_eq!(people[0].role, Some(Role::Trainer));
        assert_eq!(people[0].group, Some(Some("staff".into())));
        assert_eq!(people[0].email, None, "no email column: kept");
        assert_eq!((people[1].role, &people[1].group), (None, &Some(None)));

        let err = read_csv(b"name,email,role\nana,ana@x.org,root\n../x,,\nana,ana,\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("line 2: unknown role \"root\""), "{text}");
        assert!(text.contains("line 3: user name \"../x\""), "{text}");
        assert!(
            text.contains("line 4: \"ana\" is not an e-mail address"),
            "{text}"
        );
        assert!(
            read_csv(b"name,grup\nana,x\n")
                .unwrap_err()
                .to_string()
                .contains("unknown column \"grup\"")
        );
        let twice = read_csv(b"name\nana\nbob\nana\n").unwrap_err().to_string();
        assert!(
            twice.contains("line 4: \"ana\" is listed already (line 2)"),
            "{twice}"
        );
    }
}
