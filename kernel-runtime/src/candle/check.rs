//! Checking functions for tests: `assert`, `assert_eq`, `assert_ne`,
//! `assert_close`.
//!
//! Why built in: a graded notebook's tests run in the same session as the
//! engineer's answers, so a test that calls a function the answers could
//! replace (or compares with an operator an answer could fool, nbgrader
//! #1379) proves nothing. These compare in Rust, by value (numbers of any
//! kind, strings, booleans, arrays and maps element by element, tensors by
//! shape and values), and no cell may define a function with the name of a
//! built-in (`CandleEngine::run` refuses it), so a test's `assert_eq` is
//! always this one.

use candle_core::DType;
use rhai::{Dynamic, Engine, FLOAT, FuncRegistration, INT};

use super::tensor::{RResult, ScriptTensor, c, err};

/// A value as the checks compare it.
#[derive(Debug, PartialEq)]
enum Value {
    Number(f64),
    Text(String),
    Bool(bool),
    Unit,
    List(Vec<Value>),
    Map(Vec<(String, Value)>),
    Tensor {
        shape: Vec<usize>,
        values: Vec<f64>,
    },
    /// Something else: compared by its type and printed form.
    Other(String, String),
}

fn value(v: &Dynamic) -> RResult<Value> {
    if let Some(i) = v.clone().try_cast::<INT>() {
        return Ok(Value::Number(i as f64));
    }
    if let Some(f) = v.clone().try_cast::<FLOAT>() {
        return Ok(Value::Number(f));
    }
    if let Some(b) = v.clone().try_cast::<bool>() {
        return Ok(Value::Bool(b));
    }
    if v.is_unit() {
        return Ok(Value::Unit);
    }
    if v.is_string() {
        return Ok(Value::Text(v.clone().into_string().unwrap_or_default()));
    }
    if let Some(t) = v.read_lock::<ScriptTensor>() {
        let t = &t.t;
        let values = c(t
            .flatten_all()
            .and_then(|f| f.to_dtype(DType::F64))
            .and_then(|f| f.to_vec1::<f64>()))?;
        return Ok(Value::Tensor {
            shape: t.dims().to_vec(),
            values,
        });
    }
    if v.is_array() {
        let a = v
            .read_lock::<rhai::Array>()
            .map(|a| a.clone())
            .unwrap_or_default();
        return Ok(Value::List(a.iter().map(value).collect::<RResult<_>>()?));
    }
    if v.is_map() {
        let m = v
            .read_lock::<rhai::Map>()
            .map(|m| m.clone())
            .unwrap_or_default();
        let mut entries = m
            .iter()
            .map(|(k, v)| Ok((k.to_string(), value(v)?)))
            .collect::<RResult<Vec<_>>>()?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        return Ok(Value::Map(entries));
    }
    Ok(Value::Other(v.type_name().to_owned(), v.to_string()))
}

/// How far apart two values are: `None` when they cannot be compared
/// (types or shapes differ), else the largest absolute difference of
/// their numbers (0 for equal non-numbers, infinity for unequal ones).
/// The larger of two differences, where NaN is the largest of all
/// (`f64::max` drops a NaN, so a NaN followed by a finite difference would
/// pass as close).
fn worst(m: f64, d: f64) -> f64 {
    if m.is_nan() || d.is_nan() {
        f64::NAN
    } else {
        m.max(d)
    }
}

fn distance(a: &Value, b: &Value) -> Option<f64> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Some(if x == y { 0.0 } else { (x - y).abs() }),
        (
            Value::Tensor {
                shape: s1,
                values: v1,
            },
            Value::Tensor {
                shape: s2,
                values: v2,
            },
        ) => (s1 == s2).then(|| {
            v1.iter()
                .zip(v2)
                .map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() })
                .fold(0.0, worst)
        }),
        (Value::List(x), Value::List(y)) => {
            if x.len() != y.len() {
                return None;
            }
            x.iter()
                .zip(y)
                .try_fold(0.0f64, |m, (a, b)| distance(a, b).map(|d| worst(m, d)))
        }
        (Value::Map(x), Value::Map(y)) => {
            if x.len() != y.len() || x.iter().zip(y).any(|(a, b)| a.0 != b.0) {
                return None;
            }
            x.iter().zip(y).try_fold(0.0f64, |m, (a, b)| {
                distance(&a.1, &b.1).map(|d| worst(m, d))
            })
        }
        (a, b) if std::mem::discriminant(a) == std::mem::discriminant(b) => {
            Some(if a == b { 0.0 } else { f64::INFINITY })
        }
        _ => None,
    }
}

fn equal(a: &Dynamic, b: &Dynamic) -> RResult<bool> {
    Ok(distance(&value(a)?, &value(b)?) == Some(0.0))
}

fn shown(v: &Dynamic) -> String {
    match v.read_lock::<ScriptTensor>() {
        Some(t) => crate::display::tensor_summary(&t.t),
        None => super::show::describe(v),
    }
}

fn failed(what: &str, message: Option<&str>, left: &Dynamic, right: &Dynamic) -> RResult<()> {
    let mut text = format!(
        "assertion failed: {what}\n  left: {}\n right: {}",
        shown(left),
        shown(right)
    );
    if let Some(m) = message {
        text = format!("{m}\n{text}");
    }
    err(text)
}

fn assert_eq(a: Dynamic, b: Dynamic, message: Option<&str>) -> RResult<()> {
    if equal(&a, &b)? {
        Ok(())
    } else {
        failed("left == right", message, &a, &b)
    }
}

fn assert_ne(a: Dynamic, b: Dynamic, message: Option<&str>) -> RResult<()> {
    if equal(&a, &b)? {
        failed("left != right", message, &a, &b)
    } else {
        Ok(())
    }
}

fn assert_close(a: Dynamic, b: Dynamic, tolerance: f64, message: Option<&str>) -> RResult<()> {
    if tolerance.is_nan() || tolerance < 0.0 {
        return err(format!(
            "assert_close: the tolerance must be 0 or more, not {tolerance}"
        ));
    }
    match distance(&value(&a)?, &value(&b)?) {
        Some(d) if d <= tolerance => Ok(()),
        Some(d) => failed(
            &format!("|left - right| <= {tolerance} (largest difference {d})"),
            message,
            &a,
            &b,
        ),
        None => failed(
            "left and right have the same shape and type",
            message,
            &a,
            &b,
        ),
    }
}

fn assert_true(cond: Dynamic, message: Option<&str>) -> RResult<()> {
    match cond.as_bool() {
        Ok(true) => Ok(()),
        Ok(false) => err(message.map_or("assertion failed".to_owned(), |m| {
            format!("assertion failed: {m}")
        })),
        Err(t) => err(format!("assert expects a boolean, not {t}")),
    }
}

pub fn register(engine: &mut Engine) {
    FuncRegistration::new("assert")
        .with_params_info(["condition: bool"])
        .with_comments(["/// Fails the cell unless `condition` is true. Tests may rely on it: no cell can redefine it."])
        .register_into_engine(engine, |c: Dynamic| assert_true(c, None));
    FuncRegistration::new("assert")
        .with_params_info(["condition: bool", "message: &str"])
        .register_into_engine(engine, |c: Dynamic, m: &str| assert_true(c, Some(m)));
    FuncRegistration::new("assert_eq")
        .with_params_info(["left", "right"])
        .with_comments(["/// Fails the cell unless `left` equals `right` by value: numbers of any type, strings,\n/// booleans, arrays and maps element by element, tensors by shape and values."])
        .register_into_engine(engine, |a: Dynamic, b: Dynamic| assert_eq(a, b, None));
    FuncRegistration::new("assert_eq")
        .with_params_info(["left", "right", "message: &str"])
        .register_into_engine(engine, |a: Dynamic, b: Dynamic, m: &str| {
            assert_eq(a, b, Some(m))
        });
    FuncRegistration::new("assert_ne")
        .with_params_info(["left", "right"])
        .with_comments([
            "/// Fails the cell if `left` equals `right` (compared as `assert_eq` does).",
        ])
        .register_into_engine(engine, |a: Dynamic, b: Dynamic| assert_ne(a, b, None));
    FuncRegistration::new("assert_ne")
        .with_params_info(["left", "right", "message: &str"])
        .register_into_engine(engine, |a: Dynamic, b: Dynamic, m: &str| {
            assert_ne(a, b, Some(m))
        });
    FuncRegistration::new("assert_close")
        .with_params_info(["left", "right", "tolerance: f64"])
        .with_comments(["/// Fails the cell unless every number of `left` is within `tolerance` of `right`'s\n/// (numbers, arrays, or tensors of the same shape)."])
        .register_into_engine(engine, |a: Dynamic, b: Dynamic, t: FLOAT| assert_close(a, b, t, None));
    FuncRegistration::new("assert_close")
        .with_params_info(["left", "right", "tolerance: f64"])
        .register_into_engine(engine, |a: Dynamic, b: Dynamic, t: INT| {
            assert_close(a, b, t as f64, None)
        });
    FuncRegistration::new("assert_close")
        .with_params_info(["left", "right", "tolerance: f64", "message: &str"])
        .register_into_engine(engine, |a: Dynamic, b: Dynamic, t: FLOAT, m: &str| {
            assert_close(a, b, t, Some(m))
        });
}
