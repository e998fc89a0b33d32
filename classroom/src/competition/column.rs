//! Typed columns of a solution or a submission, and the parsing of one CSV
//! field into them with a message a participant can act on.

use std::fmt;

/// What a column's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any non-empty text: a class label.
    Label,
    /// A whole number: an ordinal rating.
    Integer,
    /// A finite number.
    Real,
    /// A finite number above -1 (RMSLE takes `ln(1 + x)`).
    AboveMinusOne,
    /// A number from 0 to 1.
    Probability,
    /// Space-separated items, best first; may be empty.
    List,
    /// A [`Kind::List`] of which only the first `k` items count (MAP@K's
    /// predictions): the rest are not kept.
    Ranked(usize),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Label => "a label",
            Kind::Integer => "a whole number",
            Kind::Real => "a number",
            Kind::AboveMinusOne => "a number above -1",
            Kind::Probability => "a probability from 0 to 1",
            Kind::List | Kind::Ranked(_) => "a space-separated list",
        })
    }
}

/// One column's values, in row order.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Labels(Vec<String>),
    Integers(Vec<i64>),
    /// Reals, probabilities and numbers above -1.
    Reals(Vec<f64>),
    /// Each row's items as written: separated by white space, best first
    /// (split where they are scored, so a row costs one string).
    Lists(Vec<String>),
}

/// One parsed field, before it goes into its [`Column`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Label(String),
    Integer(i64),
    Real(f64),
    /// The items as written, separated by white space.
    List(String),
}

impl Value {
    /// Parses `raw` as `kind`; the message says what is wrong with the
    /// value, quoting at most 40 characters of it.
    pub fn parse(kind: Kind, raw: &str) -> Result<Value, String> {
        if raw.is_empty() && !matches!(kind, Kind::List | Kind::Ranked(_)) {
            return Err(format!("is empty; expected {kind}"));
        }
        Ok(match kind {
            Kind::Label => Value::Label(raw.to_string()),
            Kind::Integer => {
                // "3" and "3.0" are the same rating, as sklearn reads them.
                let n = raw.parse::<i64>().ok().or_else(|| {
                    raw.parse::<f64>()
                        .ok()
                        .filter(|x| x.fract() == 0.0 && x.abs() < 9.0e15)
                        .map(|x| x as i64)
                });
                Value::Integer(n.ok_or_else(|| format!("{} is not {kind}", quoted(raw)))?)
            }
            Kind::Real | Kind::AboveMinusOne | Kind::Probability => {
                let x = raw
                    .parse::<f64>()
                    .map_err(|_| format!("{} is not a number", quoted(raw)))?;
                if x.is_nan() {
                    return Err("is NaN; expected a finite number".to_string());
                }
                if x.is_infinite() {
                    return Err("is infinite; expected a finite number".to_string());
                }
                match kind {
                    Kind::Probability if !(0.0..=1.0).contains(&x) => {
                        return Err(format!("{} is not {kind}", quoted(raw)));
                    }
                    Kind::AboveMinusOne if x <= -1.0 => {
                        return Err(format!("{} is not {kind}", quoted(raw)));
                    }
                    _ => {}
                }
                Value::Real(x)
            }
            Kind::List => Value::List(raw.to_string()),
            // Items past the K-th never count: they are not kept.
            Kind::Ranked(k) => Value::List(first_items(raw, k).to_string()),
        })
    }
}

/// `raw` up to the end of its `k`-th white-space-separated item.
fn first_items(raw: &str, k: usize) -> &str {
    let mut items = 0;
    let mut in_item = false;
    for (i, c) in raw.char_indices() {
        if c.is_whitespace() {
            if in_item {
                items += 1;
                in_item = false;
                if items == k {
                    return &raw[..i];
                }
            }
        } else {
            in_item = true;
        }
    }
    raw
}

/// Longest stretch of a participant's value quoted back in a message.
const QUOTE: usize = 40;

pub(crate) fn quoted(raw: &str) -> String {
    match raw.char_indices().nth(QUOTE) {
        Some((cut, _)) => format!("{:?}…", &raw[..cut]),
        None => format!("{raw:?}"),
    }
}

impl Column {
    /// An empty column for values of `kind`.
    pub fn new(kind: Kind, capacity: usize) -> Column {
        match kind {
            Kind::Label => Column::Labels(Vec::with_capacity(capacity)),
            Kind::Integer => Column::Integers(Vec::with_capacity(capacity)),
            Kind::Real | Kind::AboveMinusOne | Kind::Probability => {
                Column::Reals(Vec::with_capacity(capacity))
            }
            Kind::List | Kind::Ranked(_) => Column::Lists(Vec::with_capacity(capacity)),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Column::Labels(v) => v.len(),
            Column::Integers(v) => v.len(),
            Column::Reals(v) => v.len(),
            Column::Lists(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parses `raw` as `kind` and appends it; the message says what is
    /// wrong with the value, quoting at most 40 characters of it.
    pub fn push(&mut self, kind: Kind, raw: &str) -> Result<(), String> {
        let value = Value::parse(kind, raw)?;
        self.push_value(value)
    }

    /// A column of `rows` placeholder values of `kind`, each to be [`Column::set`].
    pub fn filled(kind: Kind, rows: usize) -> Column {
        match kind {
            Kind::Label => Column::Labels(vec![String::new(); rows]),
            Kind::Integer => Column::Integers(vec![0; rows]),
            Kind::Real | Kind::AboveMinusOne | Kind::Probability => Column::Reals(vec![0.0; rows]),
            Kind::List | Kind::Ranked(_) => Column::Lists(vec![String::new(); rows]),
        }
    }

    /// Puts a value [`Value::parse`] made for this column's kind at `row`.
    pub fn set(&mut self, row: usize, value: Value) -> Result<(), String> {
        let fits = match (self, value) {
            (Column::Labels(v), Value::Label(x)) => v.get_mut(row).map(|slot| *slot = x),
            (Column::Integers(v), Value::Integer(x)) => v.get_mut(row).map(|slot| *slot = x),
            (Column::Reals(v), Value::Real(x)) => v.get_mut(row).map(|slot| *slot = x),
            (Column::Lists(v), Value::List(x)) => v.get_mut(row).map(|slot| *slot = x),
            _ => None,
        };
        fits.ok_or_else(|| "cannot hold this value".to_string())
    }

    /// Appends a value [`Value::parse`] made for this column's kind.
    pub fn push_value(&mut self, value: Value) -> Result<(), String> {
        match (self, value) {
            (Column::Labels(v), Value::Label(x)) => v.push(x),
            (Column::Integers(v), Value::Integer(x)) => v.push(x),
            (Column::Reals(v), Value::Real(x)) => v.push(x),
            (Column::Lists(v), Value::List(x)) => v.push(x),
            _ => return Err("cannot hold this value".to_string()),
        }
        Ok(())
    }

    /// The values at `rows`, in that order, moved out (each row taken at
    /// most once; a string or list taken twice is empty the second time).
    pub fn take_rows(&mut self, rows: &[usize]) -> Column {
        match self {
            Column::Labels(v) => {
                Column::Labels(rows.iter().map(|r| std::mem::take(&mut v[*r])).collect())
            }
            Column::Integers(v) => Column::Integers(rows.iter().map(|r| v[*r]).collect()),
            Column::Reals(v) => Column::Reals(rows.iter().map(|r| v[*r]).collect()),
            Column::Lists(v) => {
                Column::Lists(rows.iter().map(|r| std::mem::take(&mut v[*r])).collect())
            }
        }
    }

    /// The values at `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Column {
        match self {
            Column::Labels(v) => Column::Labels(rows.iter().map(|r| v[*r].clone()).collect()),
            Column::Integers(v) => Column::Integers(rows.iter().map(|r| v[*r]).collect()),
            Column::Reals(v) => Column::Reals(rows.iter().map(|r| v[*r]).collect()),
            Column::Lists(v) => Column::Lists(rows.iter().map(|r| v[*r].clone()).collect()),
        }
    }

    /// The label at `row`, for a label column.
    pub fn label(&self, row: usize) -> Option<&str> {
        match self {
            Column::Labels(v) => v.get(row).map(String::as_str),
            _ => None,
        }
    }
}
