//! nbformat's JSON conventions, in one place so every notebook we write
//! looks like one `nbformat.write` wrote.
//!
//! nbformat writes `json.dumps(nb, sort_keys=True, indent=1,
//! ensure_ascii=False)` plus a trailing newline, after `split_lines`: a
//! cell's `source`, a stream's `text` and the non-JSON entries of `data`
//! become lists of lines, each keeping its `\n`. On read it joins them back
//! (`rejoin_lines`); [`rejoin`] does the same. We split on `\n` only where
//! Python's `splitlines` also splits on `\r`, `\x0b` and a few Unicode
//! separators; both are lossless, the bytes differ only for such text.

use serde_json::{Map, Value};

/// Deepest nesting we write. serde_json refuses more than 128 levels when
/// parsing; a [`serde_json::Value`] built in code can be deeper, and the
/// recursive writer below must not overflow the stack on it.
pub(crate) const MAX_DEPTH: usize = 128;

/// Text kept either as a string or as a list of strings (nbformat's
/// "multiline string"). `None` for anything else.
pub(crate) fn multiline(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for part in parts {
                out.push_str(part.as_str()?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// Joins `value` into one string in place if it is a list of strings.
pub(crate) fn rejoin(value: &mut Value) {
    if value.is_array()
        && let Some(joined) = multiline(value)
    {
        *value = Value::String(joined);
    }
}

fn split(value: &mut Value) {
    if let Value::String(s) = value {
        let lines: Vec<Value> = s
            .split_inclusive('\n')
            .map(|l| Value::String(l.to_owned()))
            .collect();
        *value = Value::Array(lines);
    }
}

fn is_json_mime(key: &str) -> bool {
    key == "application/json" || key.ends_with("+json")
}

/// Normalises a notebook's multiline fields to strings (nbformat's
/// `rejoin_lines`). Cells must already be checked to be objects.
pub(crate) fn rejoin_cells(cells: &mut [Value]) {
    for cell in cells {
        let Some(obj) = cell.as_object_mut() else {
            continue;
        };
        if let Some(source) = obj.get_mut("source") {
            rejoin(source);
        }
        if let Some(Value::Array(outputs)) = obj.get_mut("outputs") {
            for output in outputs {
                rejoin_output(output);
            }
        }
    }
}

/// Joins one output's multiline fields (stream `text`, non-JSON `data`).
pub(crate) fn rejoin_output(output: &mut Value) {
    let Some(obj) = output.as_object_mut() else {
        return;
    };
    if let Some(text) = obj.get_mut("text") {
        rejoin(text);
    }
    if let Some(Value::Object(data)) = obj.get_mut("data") {
        for (key, value) in data.iter_mut() {
            if !is_json_mime(key) {
                rejoin(value);
            }
        }
    }
}

fn split_cells(root: &mut Value) {
    let Some(Value::Array(cells)) = root.get_mut("cells") else {
        return;
    };
    for cell in cells {
        let Some(obj) = cell.as_object_mut() else {
            continue;
        };
        if let Some(source) = obj.get_mut("source") {
            split(source);
        }
        let Some(Value::Array(outputs)) = obj.get_mut("outputs") else {
            continue;
        };
        for output in outputs.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(text) = output.get_mut("text") {
                split(text);
            }
            if let Some(Value::Object(data)) = output.get_mut("data") {
                for (key, value) in data.iter_mut() {
                    if !is_json_mime(key) {
                        split(value);
                    }
                }
            }
        }
    }
}

/// How deeply `value` nests (a scalar is 0), without recursion.
pub(crate) fn depth_exceeds(value: &Value, limit: usize) -> bool {
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth + 1 > limit {
            return true;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    false
}

/// nbformat's bytes for a notebook value (see the module docs).
pub(crate) fn write_notebook(root: &Value) -> Vec<u8> {
    let mut copy = root.clone();
    split_cells(&mut copy);
    let mut out = String::new();
    write_value(&copy, 0, &mut out);
    out.push('\n');
    out.into_bytes()
}

fn write_value(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(indent + 1, out);
                write_value(item, indent + 1, out);
            }
            newline(indent, out);
            out.push(']');
        }
        Value::Object(map) => write_object(map, indent, out),
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn write_object(map: &Map<String, Value>, indent: usize, out: &mut String) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    out.push('{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        newline(indent + 1, out);
        out.push_str(&Value::String(key.clone()).to_string());
        out.push_str(": ");
        write_value(&map[key], indent + 1, out);
    }
    newline(indent, out);
    out.push('}');
}

fn newline(indent: usize, out: &mut String) {
    out.push('\n');
    out.extend(std::iter::repeat_n(' ', indent));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_notebook_is_written_like_nbformat_with_sorted_keys_and_split_lines() {
        let nb = json!({"nbformat": 4, "cells": [{"source": "a\nb", "cell_type": "code",
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "x\n"}],
            "metadata": {}}], "metadata": {}, "nbformat_minor": 5});
        let text = String::from_utf8(write_notebook(&nb)).unwrap();
        let expected = "{\n \"cells\": [\n  {\n   \"cell_type\": \"code\",\n   \"metadata\": {},\n   \"outputs\": [\n    {\n     \"name\": \"stdout\",\n     \"output_type\": \"stream\",\n     \"text\": [\n      \"x\\n\"\n     ]\n    }\n   ],\n   \"source\": [\n    \"a\\n\",\n    \"b\"\n   ]\n  }\n ],\n \"metadata\": {},\n \"nbformat\": 4,\n \"nbformat_minor\": 5\n}\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn rejoining_undoes_splitting() {
        let mut v = json!(["a\n", "b"]);
        rejoin(&mut v);
        assert_eq!(v, json!("a\nb"));
        let mut not_text = json!([1, 2]);
        rejoin(&mut not_text);
        assert_eq!(not_text, json!([1, 2]));
    }

    #[test]
    fn nesting_depth_is_measured_without_recursion() {
        let mut v = json!(1);
        for _ in 0..10_000 {
            v = Value::Array(vec![v]);
        }
        assert!(depth_exceeds(&v, MAX_DEPTH));
        assert!(!depth_exceeds(&json!({"a": [1, {"b": 2}]}), 3));
        assert!(depth_exceeds(&json!({"a": [1, {"b": [2]}]}), 3));
        // Dropping a 10 000-deep Value recurses in serde_json; forget it.
        std::mem::forget(v);
    }
}
