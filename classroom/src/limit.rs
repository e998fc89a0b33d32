//! Trimming what a graded cell printed, before it is scored and stored,
//! and the output nbgrader records for a cell that timed out.
//!
//! nbgrader's `LimitOutput` (run after `Execute`, before `SaveAutoGrades`):
//! - streams: at most `max_lines` = [`MAX_STREAM_LINES`] lines per cell,
//!   counting `text.split("\n")` pieces across its stream outputs; the
//!   output that would pass the limit keeps `max_lines - length - 1` lines
//!   and gains a `... Output truncated ...` line; stream outputs after the
//!   limit is reached are dropped;
//! - tracebacks longer than `max_traceback` = [`MAX_TRACEBACK_LINES`]
//!   entries keep the first 50, a `... Traceback truncated ...` entry and
//!   the last 49.
//!
//! nbgrader drops every stream output after the line limit, `stderr` ones
//! included, and a `stderr` stream scores 0 (see [`crate::score()`]), so
//! printing 1000 lines first turns a 0 into full points. Here a dropped
//! stream keeps its place and name with its text reduced to the truncation
//! line, so trimming never changes a score.
//!
//! On top, a byte budget per cell (`Policy::output_limit_bytes`): once the
//! outputs' JSON passes it, rich `data` is replaced by a `text/plain`
//! notice and long text is cut, again without removing an `error` or a
//! `stderr` stream, or changing an `execute_result` that holds a number.

use serde_json::{Value, json};

use crate::nbjson::{depth_exceeds, multiline, rejoin_output};
use crate::notebook::OUTPUT_DEPTH;

/// nbgrader's `LimitOutput.max_lines`.
pub const MAX_STREAM_LINES: usize = 1000;
/// nbgrader's `LimitOutput.max_traceback`.
pub const MAX_TRACEBACK_LINES: usize = 100;

const OUTPUT_TRUNCATED: &str = "... Output truncated ...";
const TRACEBACK_TRUNCATED: &str = "... Traceback truncated ...";
/// What a trimmed `execute_result` text may keep without losing a number.
const RESULT_KEEP: usize = 1024;

/// nbgrader's `Execute.error_on_timeout`: the error output appended to a
/// cell the kernel did not finish within the cell timeout (it scores 0).
pub fn timeout_error() -> Value {
    json!({
        "output_type": "error",
        "ename": "CellTimeoutError",
        "evalue": "",
        "traceback": ["\u{1b}[0;31mCellTimeoutError\u{1b}[0m: No reply from kernel before timeout"],
    })
}

/// Applies nbgrader's line limits, then the byte budget, to one cell's
/// outputs (module docs). Outputs that are not objects, or nest deeper
/// than [`OUTPUT_DEPTH`], are dropped.
pub fn limit_outputs(outputs: Vec<Value>, max_bytes: u64) -> Vec<Value> {
    let mut outputs: Vec<Value> = outputs
        .into_iter()
        .filter(|o| o.is_object() && !depth_exceeds(o, OUTPUT_DEPTH))
        .collect();
    for output in &mut outputs {
        rejoin_output(output);
    }
    limit_lines(&mut outputs);
    for output in &mut outputs {
        limit_traceback(output);
    }
    let budget = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    if size(&outputs) > budget {
        limit_bytes(&mut outputs, budget);
    }
    outputs
}

fn limit_lines(outputs: &mut [Value]) {
    let mut length = 0usize;
    for output in outputs.iter_mut() {
        if output["output_type"] != "stream" {
            continue;
        }
        let Some(text) = multiline(&output["text"]) else {
            continue;
        };
        if length >= MAX_STREAM_LINES {
            output["text"] = Value::String(OUTPUT_TRUNCATED.into());
            continue;
        }
        let mut lines: Vec<&str> = text.split('\n').collect();
        if lines.len() + length > MAX_STREAM_LINES {
            lines.truncate(MAX_STREAM_LINES.saturating_sub(length + 1));
            lines.push(OUTPUT_TRUNCATED);
        }
        length += lines.len();
        output["text"] = Value::String(lines.join("\n"));
    }
}

fn limit_traceback(output: &mut Value) {
    let Some(tb) = output.get_mut("traceback").and_then(Value::as_array_mut) else {
        return;
    };
    if tb.len() > MAX_TRACEBACK_LINES {
        let start = MAX_TRACEBACK_LINES / 2;
        let end = MAX_TRACEBACK_LINES - start - 1;
        let tail = tb.split_off(tb.len() - end);
        tb.truncate(start);
        tb.push(Value::String(TRACEBACK_TRUNCATED.into()));
        tb.extend(tail);
    }
}

fn size(outputs: &[Value]) -> usize {
    outputs
        .iter()
        .map(|o| serde_json::to_vec(o).map_or(0, |v| v.len()))
        .sum()
}

fn limit_bytes(outputs: &mut [Value], budget: usize) {
    let notice = format!("... Output removed: over the {budget}-byte limit ...");
    let mut left = budget;
    for output in outputs.iter_mut() {
        let fits = serde_json::to_vec(output).map_or(0, |v| v.len()) <= left;
        if !fits {
            match output["output_type"].as_str() {
                Some("stream") => {
                    let text = multiline(&output["text"]).unwrap_or_default();
                    output["text"] = Value::String(cut(&text, left / 2, OUTPUT_TRUNCATED));
                }
                Some("error") => {
                    for key in ["ename", "evalue"] {
                        let text = output[key].as_str().unwrap_or_default().to_owned();
                        output[key] = Value::String(cut(&text, 256, "..."));
                    }
                    output["traceback"] = json!([TRACEBACK_TRUNCATED]);
                }
                Some("execute_result") => {
                    let text = multiline(&output["data"]["text/plain"]).unwrap_or_default();
                    let kept = if text.trim().len() <= RESULT_KEEP {
                        text.trim().to_owned()
                    } else {
                        notice.clone()
                    };
                    output["data"] = json!({ "text/plain": kept });
                }
                _ => output["data"] = json!({ "text/plain": notice.clone() }),
            }
        }
        let used = serde_json::to_vec(output).map_or(0, |v| v.len());
        left = left.saturating_sub(used);
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with
/// `marker` on its own line when something was cut.
fn cut(text: &str, max: usize, marker: &str) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n{marker}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::tests_points;

    fn stream(name: &str, text: &str) -> Value {
        json!({"output_type": "stream", "name": name, "text": text})
    }

    fn lines(n: usize) -> String {
        (0..n)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn streams_keep_nbgraders_thousand_lines_per_cell() {
        let out = limit_outputs(vec![stream("stdout", &lines(1500))], u64::MAX);
        let text = out[0]["text"].as_str().unwrap();
        assert_eq!(text.split('\n').count(), MAX_STREAM_LINES);
        assert!(text.ends_with(OUTPUT_TRUNCATED));
        assert!(text.starts_with("line 0\nline 1\n"));
    }

    #[test]
    fn a_stderr_write_after_a_thousand_lines_still_scores_zero() {
        let outputs = limit_outputs(
            vec![stream("stdout", &lines(2000)), stream("stderr", "warning")],
            u64::MAX,
        );
        assert_eq!(outputs.len(), 2);
        let cell = json!({"outputs": outputs, "execution_count": 1});
        assert_eq!(tests_points(&cell, 5.0), 0.0);
    }

    #[test]
    fn long_tracebacks_keep_their_head_and_tail() {
        let tb: Vec<Value> = (0..300).map(|i| json!(format!("frame {i}"))).collect();
        let out = limit_outputs(
            vec![json!({"output_type": "error", "ename": "E", "evalue": "v", "traceback": tb})],
            u64::MAX,
        );
        let tb = out[0]["traceback"].as_array().unwrap();
        assert_eq!(tb.len(), MAX_TRACEBACK_LINES);
        assert_eq!(tb[49], "frame 49");
        assert_eq!(tb[50], TRACEBACK_TRUNCATED);
        assert_eq!(tb[99], "frame 299");
    }

    #[test]
    fn the_byte_budget_replaces_rich_data_but_keeps_errors_and_numbers() {
        let image = json!({"output_type": "display_data", "metadata": {},
                           "data": {"image/png": "A".repeat(100_000), "text/plain": "<Figure>"}});
        let result = json!({"output_type": "execute_result", "execution_count": 1, "metadata": {},
                            "data": {"text/plain": "0.5", "text/html": "x".repeat(50_000)}});
        let error = json!({"output_type": "error", "ename": "AssertionError", "evalue": "e".repeat(10_000),
                           "traceback": vec!["t".repeat(1000); 50]});
        let out = limit_outputs(vec![image, result, error], 2_000);
        assert!(size(&out) <= 3_000, "{}", size(&out));
        assert!(
            out[0]["data"]["text/plain"]
                .as_str()
                .unwrap()
                .contains("over the")
        );
        assert_eq!(out[1]["data"]["text/plain"], "0.5");
        assert_eq!(out[2]["output_type"], "error");
        let cell = json!({"outputs": out, "execution_count": 1});
        assert_eq!(tests_points(&cell, 1.0), 0.5);
    }

    #[test]
    fn cutting_text_respects_character_boundaries() {
        assert_eq!(cut("ééé", 3, "~"), "é\n~");
        assert_eq!(cut("abc", 3, "~"), "abc");
    }

    #[test]
    fn the_timeout_error_is_nbgraders() {
        let cell = json!({"outputs": [timeout_error()], "execution_count": 1});
        assert_eq!(tests_points(&cell, 2.0), 0.0);
        assert_eq!(timeout_error()["ename"], "CellTimeoutError");
    }
}
