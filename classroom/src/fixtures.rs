//! Test fixtures: the three source notebooks, submissions made from their
//! releases, and a fake grader that fills in outputs the way a kernel
//! would. No kernel or Python is needed.

use serde_json::{Value, json};

use crate::metadata;
use crate::notebook::{Notebook, source_of};
use crate::source::Source;

pub(crate) const PYTHON: &[u8] = include_bytes!("../fixtures/python-assignment.ipynb");
pub(crate) const RUST: &[u8] = include_bytes!("../fixtures/rust-assignment.ipynb");
pub(crate) const CANDLE: &[u8] = include_bytes!("../fixtures/candle-assignment.ipynb");
pub(crate) const NBGRADER_SOURCE: &[u8] =
    include_bytes!("../fixtures/nbgrader-ps1-problem1.source.ipynb");
pub(crate) const NBGRADER_RELEASE: &[u8] =
    include_bytes!("../fixtures/nbgrader-ps1-problem1.release.ipynb");

pub(crate) fn python() -> Source {
    Source::parse(PYTHON).expect("the python fixture is a valid source")
}

pub(crate) fn rust() -> Source {
    Source::parse(RUST).expect("the rust fixture is a valid source")
}

pub(crate) fn candle() -> Source {
    Source::parse(CANDLE).expect("the candle fixture is a valid source")
}

/// The source notebook as JSON, edited by `edit`, parsed as a source.
pub(crate) fn source_with(
    bytes: &[u8],
    edit: impl FnOnce(&mut Value),
) -> Result<Source, crate::FormatError> {
    let mut v: Value = serde_json::from_slice(bytes).expect("fixture JSON");
    edit(&mut v);
    Source::from_notebook(Notebook::from_value(v)?)
}

/// The release as JSON, for tampering with.
pub(crate) fn released_json(source: &Source) -> Value {
    source.release().to_value().clone()
}

/// A submission: the release with the given answer cells' text replaced.
pub(crate) fn answered(source: &Source, answers: &[(&str, &str)]) -> Notebook {
    let mut v = released_json(source);
    for cell in v["cells"].as_array_mut().expect("cells") {
        if let Some((_, text)) = answers
            .iter()
            .find(|(id, _)| metadata::grade_id(cell) == Some(id))
        {
            cell["source"] = json!(text);
        }
    }
    Notebook::from_value(v).expect("a valid submission")
}

/// The index of the cell with `grade_id` in a notebook value.
pub(crate) fn index_of(v: &Value, grade_id: &str) -> usize {
    v["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .position(|c| metadata::grade_id(c) == Some(grade_id))
        .expect("a cell with that grade_id")
}

/// The source text of the cell with `grade_id`.
pub(crate) fn text_of<'a>(nb: &'a Notebook, grade_id: &str) -> &'a str {
    source_of(&nb.cells()[index_of(nb.to_value(), grade_id)])
}

pub(crate) fn stream(name: &str, text: &str) -> Value {
    json!({"output_type": "stream", "name": name, "text": text})
}

pub(crate) fn error(ename: &str, evalue: &str, traceback: &[&str]) -> Value {
    json!({"output_type": "error", "ename": ename, "evalue": evalue, "traceback": traceback})
}

pub(crate) fn result(text: &str) -> Value {
    json!({"output_type": "execute_result", "execution_count": 1, "metadata": {},
           "data": {"text/plain": text}})
}

/// A fake grader run: every code cell gets the outputs `run` returns for
/// its grade_id and source text, and an execution count.
pub(crate) fn execute(
    rebuilt: &Notebook,
    run: impl Fn(Option<&str>, &str) -> Vec<Value>,
) -> Notebook {
    let mut nb = rebuilt.clone();
    let cells: Vec<(Option<String>, String, bool)> = nb
        .cells()
        .iter()
        .map(|c| {
            (
                metadata::grade_id(c).map(str::to_owned),
                source_of(c).to_owned(),
                c["cell_type"] == "code",
            )
        })
        .collect();
    for (i, (id, text, code)) in cells.into_iter().enumerate() {
        if code {
            let count = u64::try_from(i + 1).unwrap_or(u64::MAX);
            nb.set_outputs(i, run(id.as_deref(), &text), Some(count));
        }
    }
    nb
}

/// A fake grader where every cell runs cleanly and prints nothing.
pub(crate) fn execute_clean(rebuilt: &Notebook) -> Notebook {
    execute(rebuilt, |_, _| Vec::new())
}

/// Every JSON path of a value, as pointers.
pub(crate) fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                pointers(
                    item,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        _ => {}
    }
}

pub(crate) fn replacements() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(-1),
        json!(1e300),
        json!(18446744073709551615u64),
        json!("BEGIN SOLUTION"),
        json!([]),
        json!({}),
    ]
}
