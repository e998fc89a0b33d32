//! A large file read in parts (one a core) says exactly what it says read
//! whole: the same predictions, the same problems in the same order with
//! the same lines, the same count of the rest. A quote anywhere makes a
//! file be read whole (`Table::parts`), so each file is checked against
//! itself with one id quoted, which the CSV reader unquotes.

use super::*;

const ROWS: usize = 60_000;

fn metric() -> Metric {
    Metric::RocAuc {
        positive: "1".into(),
    }
}

fn solution() -> Solution {
    let mut csv = String::from("id,target,Usage\n");
    for i in 0..ROWS {
        let usage = if i % 3 == 0 { "Public" } else { "Private" };
        csv.push_str(&format!("r{i},{},{usage}\n", (i * 7 % 5 == 0) as u8));
    }
    Solution::parse(csv.as_bytes(), usize::MAX, &Columns::default(), &metric()).unwrap()
}

/// The submission's lines after the header; `quoted` quotes the first id.
fn file(lines: &[String], quoted: bool) -> Vec<u8> {
    let mut csv = String::from("id,target\n");
    for (k, line) in lines.iter().enumerate() {
        if quoted && k == 0 {
            let (id, rest) = line.split_once(',').unwrap();
            csv.push_str(&format!("\"{id}\",{rest}\n"));
        } else {
            csv.push_str(line);
            csv.push('\n');
        }
    }
    csv.into_bytes()
}

fn both(
    lines: &[String],
) -> (
    Result<Predictions, Rejection>,
    Result<Predictions, Rejection>,
) {
    let solution = solution();
    let read = |bytes: Vec<u8>| {
        submission::read(
            &bytes,
            usize::MAX,
            &Columns::default(),
            &metric(),
            &solution,
        )
    };
    assert!(
        file(lines, false).len() > 256 * 1024,
        "big enough to be read in parts"
    );
    (read(file(lines, false)), read(file(lines, true)))
}

fn valid() -> Vec<String> {
    (0..ROWS)
        .map(|i| format!("r{i},{}", (i * 13 % 101) as f64 / 100.0))
        .collect()
}

#[test]
fn a_valid_file_read_in_parts_gives_the_same_predictions_and_scores() {
    let mut lines = valid();
    // Out of the solution's order in places, and blank lines.
    lines.swap(10, ROWS - 10);
    lines.insert(ROWS / 2, String::new());
    let (parts, whole) = both(&lines);
    let (parts, whole) = (parts.unwrap(), whole.unwrap());
    assert_eq!(parts, whole);
    let solution = solution();
    assert_eq!(
        score(&metric(), &solution, parts).unwrap(),
        score(&metric(), &solution, whole).unwrap()
    );
}

#[test]
fn a_refused_file_read_in_parts_names_the_same_problems() {
    let mut lines = valid();
    // Around the middle, where the parts meet, and at both ends.
    lines[ROWS / 2] = format!("r{},0.5", ROWS / 2 - 1); // a repeat across the cut
    lines[ROWS / 2 + 1] = "x-unknown,0.5".into();
    lines[ROWS / 2 + 2] = "x-unknown,0.5".into(); // the same unknown id again
    lines[3] = "r3,NaN".into();
    lines[ROWS - 2] = ",0.5".into();
    lines[ROWS - 3] = "r77,0.1,extra".into();
    lines[5] = "r5,maybe".into();
    let (parts, whole) = both(&lines);
    let (parts, whole) = (parts.unwrap_err(), whole.unwrap_err());
    assert_eq!(parts, whole);
    assert!(parts.problems.len() >= 6, "{parts}");
    // Many problems: the first twenty by line, the rest counted.
    let many: Vec<String> = (0..ROWS)
        .map(|i| {
            if i % 7 == 0 {
                format!("r{i},bad")
            } else {
                format!("r{i},0.5")
            }
        })
        .collect();
    let (parts, whole) = both(&many);
    let (parts, whole) = (parts.unwrap_err(), whole.unwrap_err());
    assert_eq!(parts, whole);
    assert_eq!(parts.problems.len(), problems::SHOWN);
    assert!(parts.more > 8000, "{}", parts.more);
}

#[test]
fn a_line_that_is_not_utf8_is_named_whole_or_split_across_fields() {
    let solution = Solution::parse(
        b"id,target,Usage\na,1,Public\nb,0,Public\nc,1,Private\nd,0,Private\n",
        usize::MAX,
        &Columns::default(),
        &metric(),
    )
    .unwrap();
    let mut csv = b"id,target\na,0.5\nb,0.\xff\nc\xc3,\xa90.5\nd,0.5\n".to_vec();
    let read =
        |csv: &[u8]| submission::read(csv, usize::MAX, &Columns::default(), &metric(), &solution);
    let problems = read(&csv).unwrap_err().problems;
    let utf8: Vec<Option<u64>> = problems
        .iter()
        .filter(|p| p.message == "is not valid UTF-8 text")
        .map(|p| p.line)
        .collect();
    assert_eq!(utf8, [Some(3), Some(4)], "{problems:?}");
    // Whole characters are fine.
    csv = "id,target\na,0.5\nb,0.5\nc,0.5\nd,0.5\n"
        .as_bytes()
        .to_vec();
    assert!(read(&csv).is_ok());
}

#[test]
fn a_line_that_is_not_utf8_reads_the_same_in_parts() {
    let solution = solution();
    let read = |bytes: &[u8]| {
        submission::read(bytes, usize::MAX, &Columns::default(), &metric(), &solution)
    };
    let lines = valid();
    let mut plain = file(&lines, false);
    let mut quoted = file(&lines, true);
    // Past the middle, in the second part; and a blank line before it. The
    // same line in both files (the quoted one is two quotes longer, on its
    // first row).
    let at = plain.len() * 3 / 4;
    let at = at + plain[at..].iter().position(|b| *b == b'\n').unwrap() + 1;
    for (bytes, at) in [(&mut plain, at), (&mut quoted, at + 2)] {
        bytes.splice(at..at, b"\nr1,0.\xff\n".iter().copied());
    }
    let bad = plain.windows(6).position(|w| w == b"r1,0.\xff").unwrap();
    let line = 1 + plain[..bad].iter().filter(|b| **b == b'\n').count() as u64;
    let (parts, whole) = (read(&plain).unwrap_err(), read(&quoted).unwrap_err());
    assert_eq!(parts.problems[0].line, Some(line), "{parts}");
    assert_eq!(parts, whole);
    assert_eq!(parts.problems[0].message, "is not valid UTF-8 text");
}
