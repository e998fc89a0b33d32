//! Small data sets for exercises: synthetic ones, and CSV files to read
//! and (a competition's predictions) to write.
//!
//! Generators take a seed so a notebook gives the same data on every run,
//! which lets tests assert on a trained model's loss and accuracy. Each call
//! has a generator of its own, seeded by that argument, not the session's
//! (`manual_seed`, [`super::random`]): a data set does not change when a
//! notebook draws more or fewer numbers before it.

use std::rc::Rc;

use candle_core::Tensor;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, Normal};
use rhai::{Array, Dynamic, Engine, INT, Map};

use super::Session;
use super::tensor::{RResult, ScriptTensor, c, err, usize_of};

fn dataset(x: Tensor, y: Tensor) -> Map {
    let mut m = Map::new();
    m.insert("x".into(), Dynamic::from(ScriptTensor::new(x)));
    m.insert("y".into(), Dynamic::from(ScriptTensor::new(y)));
    m
}

fn floats(a: &Array) -> RResult<Vec<f64>> {
    a.iter()
        .map(|v| {
            v.as_float()
                .or_else(|_| v.as_int().map(|i| i as f64))
                .map_err(|t| format!("expected numbers, found {t}").into())
        })
        .collect()
}

fn normal(noise: f64) -> RResult<Normal<f64>> {
    Normal::new(0.0, noise.abs()).map_err(|e| e.to_string().into())
}

/// `y = x·w + b + noise`, x uniform in [-1, 1].
fn regression(s: &Session, n: INT, w: Array, b: f64, noise: f64, seed: INT) -> RResult<Map> {
    let n = usize_of(n)?;
    let w = floats(&w)?;
    if w.is_empty() {
        return err("regression needs at least one weight");
    }
    let mut rng = StdRng::seed_from_u64(seed as u64);
    let dist = normal(noise)?;
    let mut xs = Vec::with_capacity(n * w.len());
    let mut ys = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f64> = (0..w.len()).map(|_| rng.random_range(-1.0..1.0)).collect();
        let y = row.iter().zip(&w).map(|(x, w)| x * w).sum::<f64>() + b + dist.sample(&mut rng);
        xs.extend(row.iter().map(|&v| v as f32));
        ys.push(y as f32);
    }
    Ok(dataset(
        c(Tensor::from_vec(xs, (n, w.len()), &s.device))?,
        c(Tensor::from_vec(ys, (n, 1), &s.device))?,
    ))
}

/// Two interleaving half circles, labels 0 and 1.
fn moons(s: &Session, n: INT, noise: f64, seed: INT) -> RResult<Map> {
    let n = usize_of(n)?;
    let mut rng = StdRng::seed_from_u64(seed as u64);
    let dist = normal(noise)?;
    let mut xs = Vec::with_capacity(2 * n);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % 2) as u32;
        let a = rng.random_range(0.0..std::f64::consts::PI);
        let (x, y) = if label == 0 {
            (a.cos(), a.sin())
        } else {
            (1.0 - a.cos(), 0.5 - a.sin())
        };
        xs.push((x + dist.sample(&mut rng)) as f32);
        xs.push((y + dist.sample(&mut rng)) as f32);
        ys.push(label);
    }
    Ok(dataset(
        c(Tensor::from_vec(xs, (n, 2), &s.device))?,
        c(Tensor::from_vec(ys, n, &s.device))?,
    ))
}

/// `classes` arms of a spiral in the plane.
fn spirals(s: &Session, n: INT, classes: INT, noise: f64, seed: INT) -> RResult<Map> {
    let (n, k) = (usize_of(n)?, usize_of(classes)?.max(1));
    let mut rng = StdRng::seed_from_u64(seed as u64);
    let dist = normal(noise)?;
    let mut xs = Vec::with_capacity(2 * n);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        let label = i % k;
        let r = rng.random_range(0.05..1.0f64);
        let theta =
            label as f64 * 2.0 * std::f64::consts::PI / k as f64 + r * 4.0 + dist.sample(&mut rng);
        xs.push((r * theta.cos()) as f32);
        xs.push((r * theta.sin()) as f32);
        ys.push(label as u32);
    }
    Ok(dataset(
        c(Tensor::from_vec(xs, (n, 2), &s.device))?,
        c(Tensor::from_vec(ys, n, &s.device))?,
    ))
}

/// Gaussian blobs around `classes` centres in `dims` dimensions.
fn blobs(s: &Session, n: INT, classes: INT, dims: INT, seed: INT) -> RResult<Map> {
    let (n, k, d) = (
        usize_of(n)?,
        usize_of(classes)?.max(1),
        usize_of(dims)?.max(1),
    );
    let mut rng = StdRng::seed_from_u64(seed as u64);
    let centres: Vec<Vec<f64>> = (0..k)
        .map(|_| (0..d).map(|_| rng.random_range(-5.0..5.0)).collect())
        .collect();
    let dist = normal(1.0)?;
    let mut xs = Vec::with_capacity(n * d);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        let label = i % k;
        xs.extend(
            centres[label]
                .iter()
                .map(|c| (c + dist.sample(&mut rng)) as f32),
        );
        ys.push(label as u32);
    }
    Ok(dataset(
        c(Tensor::from_vec(xs, (n, d), &s.device))?,
        c(Tensor::from_vec(ys, n, &s.device))?,
    ))
}

/// Reads a numeric CSV. A first row that does not parse as numbers is the header.
fn read_csv(s: &Session, path: &str) -> RResult<Map> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_path(path)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut columns: Vec<String> = Vec::new();
    let mut values: Vec<f32> = Vec::new();
    let mut rows = 0usize;
    let mut width = 0usize;
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("{path}: {e}"))?;
        let parsed: Result<Vec<f32>, _> = record.iter().map(|f| f.trim().parse::<f32>()).collect();
        match parsed {
            Ok(row) => {
                if width == 0 {
                    width = row.len();
                } else if row.len() != width {
                    return err(format!(
                        "{path}: line {} has {} fields, expected {width}",
                        i + 1,
                        row.len()
                    ));
                }
                values.extend(row);
                rows += 1;
            }
            Err(_) if i == 0 => columns = record.iter().map(|f| f.trim().to_owned()).collect(),
            Err(e) => return err(format!("{path}: line {} is not numeric: {e}", i + 1)),
        }
    }
    if rows == 0 {
        return err(format!("{path} holds no numeric rows"));
    }
    if columns.is_empty() {
        columns = (0..width).map(|i| format!("c{i}")).collect();
    }
    let mut m = Map::new();
    m.insert(
        "columns".into(),
        Dynamic::from(columns.into_iter().map(Dynamic::from).collect::<Array>()),
    );
    m.insert(
        "data".into(),
        Dynamic::from(ScriptTensor::new(c(Tensor::from_vec(
            values,
            (rows, width),
            &s.device,
        ))?)),
    );
    Ok(m)
}

/// One column of `write_csv`: a 1-D tensor or an array of numbers.
fn column_values(v: &Dynamic, name: &str) -> RResult<Vec<f64>> {
    if let Some(t) = v.clone().try_cast::<ScriptTensor>() {
        let t = c(t.t.to_dtype(candle_core::DType::F64))?;
        return match t.rank() {
            1 => c(t.to_vec1::<f64>()),
            2 if c(t.dim(1))? == 1 => c(c(t.squeeze(1))?.to_vec1::<f64>()),
            _ => err(format!(
                "column {name:?}: expected a 1-D tensor, found shape {:?}",
                t.dims()
            )),
        };
    }
    if let Some(a) = v.clone().try_cast::<Array>() {
        return floats(&a);
    }
    err(format!(
        "column {name:?}: expected a tensor or an array of numbers, found {}",
        v.type_name()
    ))
}

/// A number as a CSV field: whole numbers without a point (ids, class
/// labels), others with the shortest digits that read back the same.
fn field(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Writes `columns` (names) and `values` (one tensor or array per column,
/// of equal length) as a CSV file with a header: a competition's
/// `submission.csv`, for one.
fn write_csv(path: &str, columns: Array, values: Array) -> RResult<()> {
    if columns.len() != values.len() {
        return err(format!(
            "{} column names for {} columns",
            columns.len(),
            values.len()
        ));
    }
    let names: Vec<String> = columns.iter().map(|n| n.to_string()).collect();
    let data: Vec<Vec<f64>> = names
        .iter()
        .zip(&values)
        .map(|(name, v)| column_values(v, name))
        .collect::<RResult<_>>()?;
    let rows = data.first().map_or(0, Vec::len);
    if let Some((name, col)) = names.iter().zip(&data).find(|(_, d)| d.len() != rows) {
        return err(format!(
            "column {name:?} has {} values; the first has {rows}",
            col.len()
        ));
    }
    let mut w = csv::Writer::from_path(path).map_err(|e| format!("cannot write {path}: {e}"))?;
    let fail = |e: csv::Error| -> Box<rhai::EvalAltResult> { format!("{path}: {e}").into() };
    w.write_record(&names).map_err(fail)?;
    for i in 0..rows {
        w.write_record(data.iter().map(|col| field(col[i])))
            .map_err(fail)?;
    }
    w.flush().map_err(|e| format!("{path}: {e}"))?;
    Ok(())
}

/// Shuffles and splits `x`/`y` row-wise into train and test parts.
fn split(x: ScriptTensor, y: ScriptTensor, test_fraction: f64, seed: INT) -> RResult<Map> {
    let n = c(x.t.dim(0))?;
    if c(y.t.dim(0))? != n {
        return err("x and y must have the same number of rows");
    }
    let mut idx: Vec<u32> = (0..n as u32).collect();
    let mut rng = StdRng::seed_from_u64(seed as u64);
    for i in (1..idx.len()).rev() {
        idx.swap(i, rng.random_range(0..=i));
    }
    let n_test = ((n as f64) * test_fraction.clamp(0.0, 1.0)).round() as usize;
    let dev = x.t.device().clone();
    let pick = |t: &Tensor, ids: &[u32]| -> RResult<ScriptTensor> {
        let ids = c(Tensor::from_vec(ids.to_vec(), ids.len(), &dev))?;
        Ok(ScriptTensor::new(c(t.index_select(&ids, 0))?))
    };
    let (test, train) = idx.split_at(n_test);
    let mut m = Map::new();
    m.insert("x_train".into(), Dynamic::from(pick(&x.t, train)?));
    m.insert("y_train".into(), Dynamic::from(pick(&y.t, train)?));
    m.insert("x_test".into(), Dynamic::from(pick(&x.t, test)?));
    m.insert("y_test".into(), Dynamic::from(pick(&y.t, test)?));
    Ok(m)
}

/// Mini-batches: an array of `#{x, y}` maps of at most `size` rows.
fn batches(x: ScriptTensor, y: ScriptTensor, size: INT) -> RResult<Array> {
    let size = usize_of(size)?.max(1);
    let n = c(x.t.dim(0))?;
    let mut out = Array::new();
    let mut start = 0;
    while start < n {
        let len = size.min(n - start);
        out.push(Dynamic::from(dataset(
            c(x.t.narrow(0, start, len))?,
            c(y.t.narrow(0, start, len))?,
        )));
        start += len;
    }
    Ok(out)
}

pub fn register(engine: &mut Engine, session: &Rc<Session>) {
    let s = session.clone();
    engine.register_fn(
        "make_regression",
        move |n: INT, w: Array, b: f64, noise: f64, seed: INT| regression(&s, n, w, b, noise, seed),
    );
    let s = session.clone();
    engine.register_fn(
        "make_regression",
        move |n: INT, w: Array, b: f64, noise: f64| regression(&s, n, w, b, noise, 0),
    );
    let s = session.clone();
    engine.register_fn("make_moons", move |n: INT, noise: f64, seed: INT| {
        moons(&s, n, noise, seed)
    });
    let s = session.clone();
    engine.register_fn("make_moons", move |n: INT, noise: f64| {
        moons(&s, n, noise, 0)
    });
    let s = session.clone();
    engine.register_fn(
        "make_spirals",
        move |n: INT, k: INT, noise: f64, seed: INT| spirals(&s, n, k, noise, seed),
    );
    let s = session.clone();
    engine.register_fn("make_blobs", move |n: INT, k: INT, d: INT, seed: INT| {
        blobs(&s, n, k, d, seed)
    });
    let s = session.clone();
    engine.register_fn("read_csv", move |path: &str| read_csv(&s, path));
    engine.register_fn("write_csv", write_csv);
    engine.register_fn("train_test_split", split);
    engine.register_fn(
        "train_test_split",
        |x: ScriptTensor, y: ScriptTensor, f: f64| split(x, y, f, 0),
    );
    engine.register_fn("batches", batches);
}
