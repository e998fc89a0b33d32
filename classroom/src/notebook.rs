//! A Jupyter notebook (nbformat 4) as JSON, checked once so that nothing
//! downstream has to guess its shape.
//!
//! The notebook stays a [`serde_json::Value`] so every field we don't
//! model (cell ids, widget state, a frontend's metadata) survives a round
//! trip. [`Notebook::from_value`] is the only way in and guarantees: the
//! root is an object with `"nbformat": 4`, an object `metadata` and a
//! `cells` array; every cell is an object with a `cell_type` of `code`,
//! `markdown` or `raw`, an object `metadata` and a string `source`; a code
//! cell has an `outputs` array of objects and an `execution_count` that is
//! null or an integer. Missing `metadata`, `outputs` and `execution_count`
//! are filled in; lists of lines are joined (nbformat's `rejoin_lines`).
//!
//! It must not interpret nbgrader metadata: that is [`crate::metadata`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::FormatError;
use crate::nbjson;

/// nbgrader's `ClearSolutions.text_stub`: what replaces a written answer.
pub const TEXT_STUB: &str = "YOUR ANSWER HERE";

/// Deepest output object [`Notebook::set_outputs`] keeps, so that the
/// notebook as a whole stays within what we write and parse back.
pub const OUTPUT_DEPTH: usize = nbjson::MAX_DEPTH - 8;

/// A parsed, shape-checked nbformat 4 notebook.
#[derive(Debug, Clone, PartialEq)]
pub struct Notebook(Value);

/// The kernels Academy Lab grades with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    Rust,
    /// Candle notebooks are Rhai scripts run by the `academy-candle` kernel.
    Candle,
}

impl Language {
    /// The kernelspec name the gateway starts for this language.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Language::Python => "python3",
            Language::Rust => "academy-rust",
            Language::Candle => "academy-candle",
        }
    }

    /// What replaces a code solution in the released notebook. Python's is
    /// nbgrader's own `ClearSolutions.code_stub["python"]`; the others fail
    /// the same way when run unanswered (a panic, a Rhai exception).
    pub fn code_stub(self) -> &'static str {
        match self {
            Language::Python => "# YOUR CODE HERE\nraise NotImplementedError()",
            Language::Rust => "// YOUR CODE HERE\ntodo!()",
            Language::Candle => "// YOUR CODE HERE\nthrow \"not implemented\";",
        }
    }

    fn from_kernel_name(name: &str) -> Option<Language> {
        match name {
            "python3" | "python" => Some(Language::Python),
            "academy-rust" => Some(Language::Rust),
            "academy-candle" => Some(Language::Candle),
            _ => None,
        }
    }

    fn from_language_name(name: &str) -> Option<Language> {
        match name.to_ascii_lowercase().as_str() {
            "python" => Some(Language::Python),
            "rust" => Some(Language::Rust),
            "rhai" => Some(Language::Candle),
            _ => None,
        }
    }
}

fn not_notebook(reason: &str) -> FormatError {
    FormatError::NotNotebook(reason.to_owned())
}

impl Notebook {
    /// Parses notebook bytes (JSON, nbformat 4).
    pub fn parse(bytes: &[u8]) -> Result<Notebook, FormatError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| FormatError::Json(e.to_string()))?;
        Notebook::from_value(value)
    }

    /// Checks and normalises a notebook already decoded as JSON.
    pub fn from_value(mut v: Value) -> Result<Notebook, FormatError> {
        if nbjson::depth_exceeds(&v, nbjson::MAX_DEPTH) {
            return Err(FormatError::Json(format!(
                "nested deeper than {} levels",
                nbjson::MAX_DEPTH
            )));
        }
        let root = v
            .as_object_mut()
            .ok_or_else(|| not_notebook("the top level is not an object"))?;
        match root.get("nbformat").and_then(Value::as_u64) {
            Some(4) => {}
            Some(n) => return Err(not_notebook(&format!("nbformat is {n}, not 4"))),
            None => return Err(not_notebook("nbformat is missing or not an integer")),
        }
        match root.get("metadata") {
            None => {
                root.insert("metadata".into(), Value::Object(Map::new()));
            }
            Some(Value::Object(_)) => {}
            Some(_) => return Err(not_notebook("metadata is not an object")),
        }
        let Some(Value::Array(cells)) = root.get_mut("cells") else {
            return Err(not_notebook("cells is missing or not an array"));
        };
        for (index, cell) in cells.iter_mut().enumerate() {
            check_cell(index, cell)?;
        }
        nbjson::rejoin_cells(cells);
        Ok(Notebook(v))
    }

    /// The notebook as JSON.
    pub fn to_value(&self) -> &Value {
        &self.0
    }

    /// The bytes nbformat would write: sorted keys, 1-space indent, lines
    /// split into lists, a trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        nbjson::write_notebook(&self.0)
    }

    /// The language its kernel runs: `metadata.kernelspec.name` first
    /// (`python3`/`python`, `academy-rust`, `academy-candle`), else
    /// `metadata.language_info.name` or `metadata.kernelspec.language`
    /// (`python`, `rust`, `rhai`), the field nbgrader's `ClearSolutions`
    /// reads to pick a stub.
    pub fn language(&self) -> Result<Language, FormatError> {
        let meta = &self.0["metadata"];
        let kernel = meta["kernelspec"]["name"].as_str();
        let info = meta["language_info"]["name"]
            .as_str()
            .or_else(|| meta["kernelspec"]["language"].as_str());
        kernel
            .and_then(Language::from_kernel_name)
            .or_else(|| info.and_then(Language::from_language_name))
            .ok_or_else(|| FormatError::UnknownLanguage {
                kernel: kernel.map(str::to_owned),
                language: info.map(str::to_owned),
            })
    }

    /// `metadata.kernelspec.name`, if it is a string.
    pub fn kernel_name(&self) -> Option<String> {
        self.0["metadata"]["kernelspec"]["name"]
            .as_str()
            .map(str::to_owned)
    }

    /// The cells, each an object as the module docs describe.
    pub fn cells(&self) -> &[Value] {
        self.0["cells"].as_array().map_or(&[], Vec::as_slice)
    }

    /// The code cells to run, in order: each one's index among the cells
    /// and its source.
    pub fn code_cells(&self) -> Vec<(usize, String)> {
        self.cells()
            .iter()
            .enumerate()
            .filter(|(_, c)| c["cell_type"] == "code")
            .map(|(i, c)| (i, c["source"].as_str().unwrap_or("").to_owned()))
            .collect()
    }

    /// Records what the grader got from running cell `index`: its outputs
    /// (nbformat output objects; lists of lines are joined; anything not an
    /// object, or nested deeper than [`OUTPUT_DEPTH`], is dropped) and the
    /// `execution_count` from the kernel's `execute_reply`.
    ///
    /// Pass the count even when a cell printed nothing: a test cell with
    /// neither outputs nor a count was never run, and [`crate::score()`]
    /// gives it 0 (nbgrader never scores a notebook it could not run to
    /// the end). Out-of-range indices and non-code cells are left alone.
    pub fn set_outputs(&mut self, index: usize, outputs: Vec<Value>, execution_count: Option<u64>) {
        let Some(cell) = self.cells_mut().get_mut(index) else {
            return;
        };
        if cell["cell_type"] != "code" {
            return;
        }
        let mut outputs: Vec<Value> = outputs
            .into_iter()
            .filter(|o| o.is_object() && !nbjson::depth_exceeds(o, OUTPUT_DEPTH))
            .collect();
        for output in &mut outputs {
            nbjson::rejoin_output(output);
        }
        cell["outputs"] = Value::Array(outputs);
        cell["execution_count"] = execution_count.map_or(Value::Null, Value::from);
    }

    pub(crate) fn cells_mut(&mut self) -> &mut [Value] {
        // from_value guarantees an array; the empty fallback keeps this total.
        match self.0.get_mut("cells") {
            Some(Value::Array(cells)) => cells,
            _ => &mut [],
        }
    }

    pub(crate) fn metadata_mut(&mut self) -> Option<&mut Map<String, Value>> {
        self.0.get_mut("metadata").and_then(Value::as_object_mut)
    }
}

fn check_cell(index: usize, cell: &mut Value) -> Result<(), FormatError> {
    let fail = |problem: &str| FormatError::cell(index, None, problem);
    let obj = cell
        .as_object_mut()
        .ok_or_else(|| fail("is not an object"))?;
    let code = match obj.get("cell_type").and_then(Value::as_str) {
        Some("code") => true,
        Some("markdown" | "raw") => false,
        Some(other) => return Err(fail(&format!("has unknown cell_type {other:?}"))),
        None => return Err(fail("has no cell_type")),
    };
    match obj.get("metadata") {
        None => {
            obj.insert("metadata".into(), Value::Object(Map::new()));
        }
        Some(Value::Object(_)) => {}
        Some(_) => return Err(fail("metadata is not an object")),
    }
    match obj.get("source") {
        Some(source) if nbjson::multiline(source).is_some() => {}
        Some(_) => return Err(fail("source is not a string or a list of strings")),
        None => return Err(fail("has no source")),
    }
    if !code {
        return Ok(());
    }
    match obj.get("outputs") {
        None => {
            obj.insert("outputs".into(), Value::Array(Vec::new()));
        }
        Some(Value::Array(outputs)) if outputs.iter().all(Value::is_object) => {}
        Some(_) => return Err(fail("outputs is not a list of objects")),
    }
    match obj.get("execution_count") {
        None => {
            obj.insert("execution_count".into(), Value::Null);
        }
        Some(Value::Null) => {}
        Some(n) if n.is_u64() => {}
        Some(_) => return Err(fail("execution_count is not null or a whole number")),
    }
    Ok(())
}

/// A cell's source text ("" if the cell is not one [`Notebook`] checked).
pub(crate) fn source_of(cell: &Value) -> &str {
    cell["source"].as_str().unwrap_or("")
}

/// A cell's `cell_type` ("" likewise).
pub(crate) fn cell_type_of(cell: &Value) -> &str {
    cell["cell_type"].as_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nb(cells: Value) -> Value {
        json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3"}}, "cells": cells})
    }

    #[test]
    fn a_list_source_is_joined_on_read_and_split_on_write() {
        let parsed = Notebook::from_value(nb(json!([
            {"cell_type": "markdown", "metadata": {}, "source": ["a\n", "b"]}
        ])))
        .unwrap();
        assert_eq!(parsed.cells()[0]["source"], "a\nb");
        let again = Notebook::parse(&parsed.to_bytes()).unwrap();
        assert_eq!(again, parsed);
        assert!(parsed.to_bytes().ends_with(b"}\n"));
    }

    #[test]
    fn notebooks_written_by_nbformat_come_back_byte_for_byte() {
        for bytes in [
            crate::fixtures::PYTHON,
            crate::fixtures::RUST,
            crate::fixtures::CANDLE,
            crate::fixtures::NBGRADER_SOURCE,
        ] {
            let parsed = Notebook::parse(bytes).unwrap();
            assert_eq!(
                String::from_utf8(parsed.to_bytes()).unwrap(),
                String::from_utf8(bytes.to_vec()).unwrap()
            );
        }
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let parsed = Notebook::from_value(nb(json!([
            {"cell_type": "code", "id": "abc", "metadata": {"tags": ["x"]}, "source": "1",
             "outputs": [], "execution_count": null, "extra": {"k": 1}}
        ])))
        .unwrap();
        let again = Notebook::parse(&parsed.to_bytes()).unwrap();
        assert_eq!(again.cells()[0]["id"], "abc");
        assert_eq!(again.cells()[0]["extra"]["k"], 1);
    }

    #[test]
    fn missing_outputs_and_metadata_are_filled_in() {
        let parsed = Notebook::from_value(json!({"nbformat": 4, "cells": [
            {"cell_type": "code", "source": "x"}]}))
        .unwrap();
        assert_eq!(parsed.cells()[0]["outputs"], json!([]));
        assert_eq!(parsed.cells()[0]["execution_count"], Value::Null);
        assert_eq!(parsed.to_value()["metadata"], json!({}));
    }

    #[test]
    fn malformed_notebooks_are_format_errors_not_panics() {
        let bad: &[&[u8]] = &[
            b"",
            b"{",
            b"[]",
            b"null",
            b"{\"nbformat\": 3, \"cells\": []}",
            b"{\"nbformat\": \"4\", \"cells\": []}",
            b"{\"nbformat\": 4}",
            b"{\"nbformat\": 4, \"cells\": {}}",
            b"{\"nbformat\": 4, \"cells\": [1]}",
            b"{\"nbformat\": 4, \"cells\": [{\"cell_type\": \"code\"}]}",
            b"{\"nbformat\": 4, \"cells\": [{\"cell_type\": \"heading\", \"source\": \"\"}]}",
            b"{\"nbformat\": 4, \"cells\": [{\"cell_type\": \"code\", \"source\": [1]}]}",
            b"{\"nbformat\": 4, \"cells\": [{\"cell_type\": \"code\", \"source\": \"\", \"outputs\": [1]}]}",
            b"{\"nbformat\": 4, \"cells\": [{\"cell_type\": \"code\", \"source\": \"\", \"execution_count\": -1}]}",
            b"{\"nbformat\": 4, \"metadata\": [], \"cells\": []}",
            b"{\"nbformat\": 4, \"cells\": [], \"x\": 1e999}",
            b"{\"nbformat\": 18446744073709551621, \"cells\": []}",
        ];
        for bytes in bad {
            assert!(
                Notebook::parse(bytes).is_err(),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(Notebook::parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn the_language_comes_from_the_kernelspec_then_the_language_info() {
        let lang = |meta: Value| {
            Notebook::from_value(json!({"nbformat": 4, "cells": [], "metadata": meta}))
                .unwrap()
                .language()
        };
        assert_eq!(
            lang(json!({"kernelspec": {"name": "python3"}})),
            Ok(Language::Python)
        );
        assert_eq!(
            lang(json!({"kernelspec": {"name": "academy-rust"}})),
            Ok(Language::Rust)
        );
        assert_eq!(
            lang(json!({"kernelspec": {"name": "academy-candle"}})),
            Ok(Language::Candle)
        );
        assert_eq!(
            lang(json!({"language_info": {"name": "rhai"}})),
            Ok(Language::Candle)
        );
        assert_eq!(
            lang(json!({"kernelspec": {"name": "odd", "language": "Python"}})),
            Ok(Language::Python)
        );
        assert!(lang(json!({"kernelspec": {"name": "ir"}})).is_err());
        assert!(lang(json!({"kernelspec": 5})).is_err());
    }

    #[test]
    fn set_outputs_fills_a_code_cell_and_ignores_anything_else() {
        let mut parsed = Notebook::from_value(nb(json!([
            {"cell_type": "markdown", "metadata": {}, "source": "m"},
            {"cell_type": "code", "metadata": {}, "source": "1", "outputs": [], "execution_count": null}
        ])))
        .unwrap();
        parsed.set_outputs(0, vec![json!({"output_type": "stream"})], Some(1));
        parsed.set_outputs(9, vec![], Some(1));
        assert!(parsed.cells()[0].get("outputs").is_none());
        parsed.set_outputs(
            1,
            vec![
                json!({"output_type": "stream", "name": "stdout", "text": ["a\n", "b"]}),
                json!(3),
            ],
            Some(7),
        );
        assert_eq!(parsed.cells()[1]["outputs"][0]["text"], "a\nb");
        assert_eq!(parsed.cells()[1]["outputs"].as_array().unwrap().len(), 1);
        assert_eq!(parsed.cells()[1]["execution_count"], 7);
    }

    #[test]
    fn language_names_serialise_in_lowercase() {
        assert_eq!(
            serde_json::to_value(Language::Candle).unwrap(),
            json!("candle")
        );
        assert_eq!(Language::Rust.kernel_name(), "academy-rust");
    }
}
