//! Tensors in Rhai: creation, arithmetic, reductions, indexing, dtype and
//! device moves, and autograd.
//!
//! One script type, `Tensor`, wraps a candle tensor and, when it was made
//! with `param(...)`, the candle `Var` behind it, so the same value can be
//! used in arithmetic and updated by an optimiser. Operators broadcast like
//! NumPy. Every candle error becomes a Rhai runtime error with candle's
//! message; nothing here panics on user input.

use std::rc::Rc;

use candle_core::{DType, Device, Shape, Tensor, Var, backprop::GradStore};
use std::ops::{Range, RangeInclusive};

use rhai::{Array, Dynamic, Engine, EvalAltResult, INT};

use super::Session;

pub type RResult<T> = Result<T, Box<EvalAltResult>>;

/// A tensor as scripts see it.
#[derive(Clone, Debug)]
pub struct ScriptTensor {
    pub t: Tensor,
    /// Set for trainable parameters made with `param(...)` or by a layer.
    pub var: Option<Var>,
}

impl ScriptTensor {
    pub fn new(t: Tensor) -> Self {
        ScriptTensor { t, var: None }
    }
    pub fn from_var(v: Var) -> Self {
        ScriptTensor {
            t: v.as_tensor().clone(),
            var: Some(v),
        }
    }
}

/// The gradients `backward()` returns.
#[derive(Clone)]
pub struct Grads(pub Rc<GradStore>);

/// Turns a candle error into a script error.
pub fn c<T>(r: candle_core::Result<T>) -> RResult<T> {
    r.map_err(|e| {
        let msg = e.to_string();
        // candle appends a backtrace when RUST_BACKTRACE is set; the user
        // wants the first line.
        let first = msg.lines().next().unwrap_or("candle error").to_owned();
        first.into()
    })
}

pub fn err<T>(msg: impl Into<String>) -> RResult<T> {
    Err(msg.into().into())
}

pub fn parse_dtype(s: &str) -> RResult<DType> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "f32" | "float32" | "float" => DType::F32,
        "f64" | "float64" | "double" => DType::F64,
        "f16" | "float16" | "half" => DType::F16,
        "bf16" | "bfloat16" => DType::BF16,
        "u8" | "uint8" => DType::U8,
        "u32" | "uint32" => DType::U32,
        "i64" | "int64" | "long" => DType::I64,
        other => {
            return err(format!(
                "unknown dtype {other:?}; use f32, f64, f16, bf16, u8, u32 or i64"
            ));
        }
    })
}

pub fn parse_device(s: &str, default: &Device) -> RResult<Device> {
    let s = s.to_ascii_lowercase();
    if s == "cpu" {
        return Ok(Device::Cpu);
    }
    if s == "gpu" || s == "cuda" {
        return if default.is_cuda() {
            Ok(default.clone())
        } else {
            c(Device::new_cuda(0))
        };
    }
    if let Some(n) = s.strip_prefix("cuda:") {
        let n: usize = n.parse().map_err(|_| format!("bad device {s:?}"))?;
        return c(Device::new_cuda(n));
    }
    err(format!(
        "unknown device {s:?}; use \"cpu\", \"cuda\" or \"cuda:N\""
    ))
}

/// A shape from a Rhai int or array of ints.
pub fn to_shape(v: &Dynamic) -> RResult<Shape> {
    if let Ok(n) = v.as_int() {
        return Ok(Shape::from(usize_of(n)?));
    }
    if let Some(arr) = v.read_lock::<Array>() {
        let dims = arr
            .iter()
            .map(|d| {
                d.as_int()
                    .map_err(|t| format!("a shape holds ints, not {t}"))
                    .and_then(|n| usize_of(n).map_err(|e| e.to_string()))
            })
            .collect::<Result<Vec<usize>, String>>()?;
        return Ok(Shape::from(dims));
    }
    err(format!(
        "a shape is an int or an array of ints, not {}",
        v.type_name()
    ))
}

pub fn usize_of(n: INT) -> RResult<usize> {
    usize::try_from(n).map_err(|_| format!("expected a non-negative number, got {n}").into())
}

/// Resolves a possibly negative dimension index.
pub fn dim_of(t: &Tensor, d: INT) -> RResult<usize> {
    let rank = t.rank() as INT;
    let d2 = if d < 0 { rank + d } else { d };
    if d2 < 0 || d2 >= rank.max(1) {
        return err(format!(
            "dimension {d} out of range for a tensor of rank {rank}"
        ));
    }
    Ok(d2 as usize)
}

/// Builds a tensor from a number or nested arrays of numbers.
pub fn from_dynamic(v: &Dynamic, device: &Device) -> RResult<Tensor> {
    fn walk(
        v: &Dynamic,
        depth: usize,
        shape: &mut Vec<usize>,
        vals: &mut Vec<f64>,
        ints: &mut bool,
    ) -> RResult<()> {
        if let Some(arr) = v.read_lock::<Array>() {
            if shape.len() == depth {
                shape.push(arr.len());
            } else if shape[depth] != arr.len() {
                return err(format!(
                    "ragged nested array: expected length {} at depth {depth}, got {}",
                    shape[depth],
                    arr.len()
                ));
            }
            for item in arr.iter() {
                walk(item, depth + 1, shape, vals, ints)?;
            }
            return Ok(());
        }
        if shape.len() > depth {
            return err("ragged nested array: a number where an array was expected");
        }
        if let Ok(i) = v.as_int() {
            vals.push(i as f64);
        } else if let Ok(f) = v.as_float() {
            *ints = false;
            vals.push(f);
        } else if let Ok(b) = v.as_bool() {
            vals.push(if b { 1.0 } else { 0.0 });
        } else {
            return err(format!("a tensor holds numbers, not {}", v.type_name()));
        }
        Ok(())
    }
    let mut shape = Vec::new();
    let mut vals = Vec::new();
    let mut ints = true;
    walk(v, 0, &mut shape, &mut vals, &mut ints)?;
    if vals.len() != shape.iter().product::<usize>() {
        return err("ragged nested array");
    }
    if ints && !vals.is_empty() {
        let v: Vec<i64> = vals.iter().map(|&x| x as i64).collect();
        c(Tensor::from_vec(v, shape, device))
    } else {
        let v: Vec<f32> = vals.iter().map(|&x| x as f32).collect();
        c(Tensor::from_vec(v, shape, device))
    }
}

/// A Rhai operand for arithmetic: a tensor or a scalar.
fn operand(v: &Dynamic) -> Option<Result<ScriptTensor, f64>> {
    if let Some(t) = v.read_lock::<ScriptTensor>() {
        return Some(Ok(t.clone()));
    }
    v.as_float()
        .ok()
        .or_else(|| v.as_int().ok().map(|i| i as f64))
        .map(Err)
}

/// Brings two tensors to a common dtype (the wider float) before an op.
fn coerce(a: &Tensor, b: &Tensor) -> RResult<(Tensor, Tensor)> {
    if a.dtype() == b.dtype() {
        return Ok((a.clone(), b.clone()));
    }
    let rank = |d: DType| match d {
        DType::F64 => 5,
        DType::F32 => 4,
        DType::BF16 | DType::F16 => 3,
        DType::I64 => 2,
        DType::U32 => 1,
        _ => 0,
    };
    let target = if rank(a.dtype()) >= rank(b.dtype()) {
        a.dtype()
    } else {
        b.dtype()
    };
    Ok((c(a.to_dtype(target))?, c(b.to_dtype(target))?))
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

fn binary(op: Op, a: &Dynamic, b: &Dynamic) -> RResult<ScriptTensor> {
    let (Some(x), Some(y)) = (operand(a), operand(b)) else {
        return err(format!(
            "cannot combine {} and {}",
            a.type_name(),
            b.type_name()
        ));
    };
    let out = match (x, y) {
        (Ok(x), Ok(y)) => {
            let (x, y) = coerce(&x.t, &y.t)?;
            c(match op {
                Op::Add => x.broadcast_add(&y),
                Op::Sub => x.broadcast_sub(&y),
                Op::Mul => x.broadcast_mul(&y),
                Op::Div => x.broadcast_div(&y),
            })?
        }
        (Ok(t), Err(s)) => c(match op {
            Op::Add => t.t.affine(1.0, s),
            Op::Sub => t.t.affine(1.0, -s),
            Op::Mul => t.t.affine(s, 0.0),
            Op::Div => t.t.affine(1.0 / s, 0.0),
        })?,
        (Err(s), Ok(t)) => c(match op {
            Op::Add => t.t.affine(1.0, s),
            Op::Sub => t.t.affine(-1.0, s),
            Op::Mul => t.t.affine(s, 0.0),
            Op::Div => t.t.recip().and_then(|r| r.affine(s, 0.0)),
        })?,
        (Err(_), Err(_)) => return err("expected a tensor operand"),
    };
    Ok(ScriptTensor::new(out))
}

fn shape_array(t: &Tensor) -> Array {
    t.dims().iter().map(|&d| Dynamic::from(d as INT)).collect()
}

/// The tensor's values as nested Rhai arrays (ints for integer dtypes).
pub fn to_array(t: &Tensor) -> RResult<Dynamic> {
    let cpu = c(t.to_device(&Device::Cpu))?;
    let integer = matches!(t.dtype(), DType::U8 | DType::U32 | DType::I64);
    let flat = c(c(cpu.to_dtype(DType::F64))?.flatten_all())?;
    let vals = c(flat.to_vec1::<f64>())?;
    fn build(vals: &[f64], dims: &[usize], integer: bool) -> Dynamic {
        if dims.is_empty() {
            let v = vals.first().copied().unwrap_or(f64::NAN);
            return if integer {
                Dynamic::from(v as INT)
            } else {
                Dynamic::from(v)
            };
        }
        let step = dims[1..].iter().product::<usize>().max(1);
        let arr: Array = (0..dims[0])
            .map(|i| build(&vals[i * step..], &dims[1..], integer))
            .collect();
        Dynamic::from(arr)
    }
    Ok(build(&vals, t.dims(), integer))
}

/// A scalar from a one-element tensor.
pub fn item(t: &Tensor) -> RResult<f64> {
    if t.elem_count() != 1 {
        return err(format!(
            "item() needs a tensor with one element, this one has shape {:?}",
            t.dims()
        ));
    }
    let v = c(c(c(t.flatten_all())?.to_dtype(DType::F64))?.to_vec1::<f64>())?;
    Ok(v[0])
}

fn index(t: &Tensor, i: INT) -> RResult<Tensor> {
    if t.rank() == 0 {
        return err("cannot index a scalar tensor");
    }
    let n = t.dim(0).map_err(|e| e.to_string())? as INT;
    let j = if i < 0 { n + i } else { i };
    if j < 0 || j >= n {
        return err(format!(
            "index {i} out of range for a dimension of size {n}"
        ));
    }
    c(t.get(j as usize))
}

fn slice(t: &Tensor, dim: usize, start: INT, end: INT) -> RResult<Tensor> {
    let n = c(t.dim(dim))? as INT;
    let fix = |x: INT| if x < 0 { (n + x).max(0) } else { x.min(n) };
    let (s, e) = (fix(start), fix(end));
    if e < s {
        return err(format!(
            "empty or reversed slice {start}..{end} of a dimension of size {n}"
        ));
    }
    c(t.narrow(dim, s as usize, (e - s) as usize))
}

pub fn register(engine: &mut Engine, session: &Rc<Session>) {
    engine.register_type_with_name::<ScriptTensor>("Tensor");
    engine.register_type_with_name::<Grads>("Grads");
    // print(t) and string interpolation show the values (elided), then the summary.
    engine.register_fn("to_string", |t: &mut ScriptTensor| {
        super::show::describe(&Dynamic::from(t.clone()))
    });
    engine.register_fn("to_debug", |t: &mut ScriptTensor| {
        crate::display::tensor_summary(&t.t)
    });

    // ---- creation ----
    let dev = session.device.clone();
    macro_rules! with_dev {
        ($name:literal, |$d:ident $(, $arg:ident : $ty:ty)*| $body:expr) => {{
            let dev = dev.clone();
            engine.register_fn($name, move |$($arg: $ty),*| -> RResult<ScriptTensor> {
                let $d = &dev;
                Ok(ScriptTensor::new($body))
            });
        }};
    }
    with_dev!("tensor", |d, v: Dynamic| from_dynamic(&v, d)?);
    with_dev!("tensor", |d, v: Dynamic, dtype: &str| c(from_dynamic(
        &v, d
    )?
    .to_dtype(parse_dtype(dtype)?))?);
    with_dev!("zeros", |d, s: Dynamic| c(Tensor::zeros(
        to_shape(&s)?,
        DType::F32,
        d
    ))?);
    with_dev!("zeros", |d, s: Dynamic, dt: &str| c(Tensor::zeros(
        to_shape(&s)?,
        parse_dtype(dt)?,
        d
    ))?);
    with_dev!("ones", |d, s: Dynamic| c(Tensor::ones(
        to_shape(&s)?,
        DType::F32,
        d
    ))?);
    with_dev!("ones", |d, s: Dynamic, dt: &str| c(Tensor::ones(
        to_shape(&s)?,
        parse_dtype(dt)?,
        d
    ))?);
    with_dev!("full", |d, s: Dynamic, v: f64| c(Tensor::full(
        v as f32,
        to_shape(&s)?,
        d
    ))?);
    // randn, rand, randn_like and randperm: see random.rs (the session's generator).
    with_dev!("arange", |d, n: INT| c(Tensor::arange(0i64, n, d))?);
    with_dev!("arange", |d, a: INT, b: INT| c(Tensor::arange(a, b, d))?);
    with_dev!("arange", |d, a: f64, b: f64, step: f64| c(
        Tensor::arange_step(a as f32, b as f32, step as f32, d)
    )?);
    with_dev!("linspace", |d, a: f64, b: f64, n: INT| {
        let n = usize_of(n)?;
        let step = if n > 1 { (b - a) / (n - 1) as f64 } else { 0.0 };
        let v: Vec<f32> = (0..n).map(|i| (a + step * i as f64) as f32).collect();
        c(Tensor::from_vec(v, n, d))?
    });
    with_dev!("eye", |d, n: INT| c(Tensor::eye(
        usize_of(n)?,
        DType::F32,
        d
    ))?);
    engine.register_fn(
        "zeros_like",
        |t: &mut ScriptTensor| -> RResult<ScriptTensor> {
            Ok(ScriptTensor::new(c(t.t.zeros_like())?))
        },
    );
    engine.register_fn(
        "ones_like",
        |t: &mut ScriptTensor| -> RResult<ScriptTensor> {
            Ok(ScriptTensor::new(c(t.t.ones_like())?))
        },
    );

    // ---- devices and dtypes ----
    {
        let dev = dev.clone();
        engine.register_fn("device", move || crate::device::device_name(&dev));
    }
    {
        let dev = dev.clone();
        engine.register_fn("synchronize", move || -> RResult<()> {
            c(dev.synchronize())
        });
    }
    engine.register_fn("cuda_available", candle_core::utils::cuda_is_available);
    engine.register_get("shape", |t: &mut ScriptTensor| shape_array(&t.t));
    engine.register_fn("dims", |t: &mut ScriptTensor| shape_array(&t.t));
    engine.register_fn("dim", |t: &mut ScriptTensor, d: INT| -> RResult<INT> {
        Ok(c(t.t.dim(dim_of(&t.t, d)?))? as INT)
    });
    engine.register_get("rank", |t: &mut ScriptTensor| t.t.rank() as INT);
    engine.register_get("numel", |t: &mut ScriptTensor| t.t.elem_count() as INT);
    engine.register_get("dtype", |t: &mut ScriptTensor| {
        t.t.dtype().as_str().to_owned()
    });
    engine.register_get("device", |t: &mut ScriptTensor| {
        crate::device::device_name(t.t.device())
    });
    engine.register_get("is_var", |t: &mut ScriptTensor| t.var.is_some());
    engine.register_fn(
        "to_dtype",
        |t: &mut ScriptTensor, d: &str| -> RResult<ScriptTensor> {
            Ok(ScriptTensor::new(c(t.t.to_dtype(parse_dtype(d)?))?))
        },
    );
    {
        let dev = dev.clone();
        engine.register_fn(
            "to_device",
            move |t: &mut ScriptTensor, d: &str| -> RResult<ScriptTensor> {
                Ok(ScriptTensor::new(c(t
                    .t
                    .to_device(&parse_device(d, &dev)?))?))
            },
        );
    }
    engine.register_fn("cpu", |t: &mut ScriptTensor| -> RResult<ScriptTensor> {
        Ok(ScriptTensor::new(c(t.t.to_device(&Device::Cpu))?))
    });
    {
        let dev = dev.clone();
        engine.register_fn(
            "cuda",
            move |t: &mut ScriptTensor| -> RResult<ScriptTensor> {
                Ok(ScriptTensor::new(c(t
                    .t
                    .to_device(&parse_device("cuda", &dev)?))?))
            },
        );
    }
    engine.register_fn("item", |t: &mut ScriptTensor| item(&t.t));
    engine.register_fn("to_float", |t: &mut ScriptTensor| item(&t.t));
    engine.register_fn("to_array", |t: &mut ScriptTensor| to_array(&t.t));

    // ---- arithmetic ----
    for (name, op) in [
        ("+", Op::Add),
        ("-", Op::Sub),
        ("*", Op::Mul),
        ("/", Op::Div),
    ] {
        engine.register_fn(name, move |a: ScriptTensor, b: ScriptTensor| {
            binary(op, &Dynamic::from(a), &Dynamic::from(b))
        });
        engine.register_fn(name, move |a: ScriptTensor, b: f64| {
            binary(op, &Dynamic::from(a), &Dynamic::from(b))
        });
        engine.register_fn(name, move |a: ScriptTensor, b: INT| {
            binary(op, &Dynamic::from(a), &Dynamic::from(b))
        });
        engine.register_fn(name, move |a: f64, b: ScriptTensor| {
            binary(op, &Dynamic::from(a), &Dynamic::from(b))
        });
        engine.register_fn(name, move |a: INT, b: ScriptTensor| {
            binary(op, &Dynamic::from(a), &Dynamic::from(b))
        });
    }
    engine.register_fn("-", |a: ScriptTensor| -> RResult<ScriptTensor> {
        Ok(ScriptTensor::new(c(a.t.neg())?))
    });
    engine.register_fn(
        "matmul",
        |a: &mut ScriptTensor, b: ScriptTensor| -> RResult<ScriptTensor> {
            let (x, y) = coerce(&a.t, &b.t)?;
            let out = if x.rank() == y.rank() && x.rank() >= 2 {
                x.matmul(&y)
            } else {
                x.broadcast_matmul(&y)
            };
            Ok(ScriptTensor::new(c(out)?))
        },
    );
    engine.register_fn(
        "pow",
        |a: &mut ScriptTensor, e: f64| -> RResult<ScriptTensor> {
            Ok(ScriptTensor::new(c(a.t.powf(e))?))
        },
    );
    engine.register_fn(
        "pow",
        |a: &mut ScriptTensor, e: INT| -> RResult<ScriptTensor> {
            Ok(ScriptTensor::new(c(a.t.powf(e as f64))?))
        },
    );
    engine.register_fn(
        "clamp",
        |a: &mut ScriptTensor, lo: f64, hi: f64| -> RResult<ScriptTensor> {
            Ok(ScriptTensor::new(c(a.t.clamp(lo, hi))?))
        },
    );
    macro_rules! unary {
        ($($name:literal => |$t:ident| $body:expr),* $(,)?) => {$(
            engine.register_fn($name, |$t: &mut ScriptTensor| -> RResult<ScriptTensor> {
                let $t = &$t.t;
                Ok(ScriptTensor::new(c($body)?))
            });
        )*};
    }
    unary! {
        "exp" => |t| t.exp(), "log" => |t| t.log(), "sqrt" => |t| t.sqrt(), "sqr" => |t| t.sqr(),
        "abs" => |t| t.abs(), "neg" => |t| t.neg(), "sin" => |t| t.sin(), "cos" => |t| t.cos(),
        "tanh" => |t| t.tanh(), "relu" => |t| t.relu(), "gelu" => |t| t.gelu(), "silu" => |t| t.silu(),
        "sigmoid" => |t| candle_nn::ops::sigmoid(t), "recip" => |t| t.recip(),
        "floor" => |t| t.floor(), "ceil" => |t| t.ceil(), "round" => |t| t.round(),
        "t" => |t| if t.rank() < 2 { Ok(t.clone()) } else { t.t() },
        "contiguous" => |t| t.contiguous(), "flatten" => |t| t.flatten_all(),
        "detach" => |t| Ok::<_, candle_core::Error>(t.detach()),
        "sum" => |t| t.sum_all(), "mean" => |t| t.mean_all(),
        "max" => |t| t.flatten_all().and_then(|f| f.max(0)),
        "min" => |t| t.flatten_all().and_then(|f| f.min(0)),
        "argmax" => |t| t.flatten_all().and_then(|f| f.argmax(0)),
        "argmin" => |t| t.flatten_all().and_then(|f| f.argmin(0)),
    }
    macro_rules! along {
        ($($name:literal => |$t:ident, $d:ident| $body:expr),* $(,)?) => {$(
            engine.register_fn($name, |$t: &mut ScriptTensor, d: INT| -> RResult<ScriptTensor> {
                let $d = dim_of(&$t.t, d)?;
                let $t = &$t.t;
                Ok(ScriptTensor::new(c($body)?))
            });
        )*};
    }
    along! {
        "sum" => |t, d| t.sum(d), "sum_keepdim" => |t, d| t.sum_keepdim(d),
        "mean" => |t, d| t.mean(d), "mean_keepdim" => |t, d| t.mean_keepdim(d),
        "max" => |t, d| t.max(d), "min" => |t, d| t.min(d),
        "max_keepdim" => |t, d| t.max_keepdim(d), "min_keepdim" => |t, d| t.min_keepdim(d),
        "argmax" => |t, d| t.argmax(d), "argmin" => |t, d| t.argmin(d),
        "variance" => |t, d| t.var(d), "std" => |t, d| t.var(d).and_then(|v| v.sqrt()),
        "softmax" => |t, d| candle_nn::ops::softmax(t, d),
        "log_softmax" => |t, d| candle_nn::ops::log_softmax(t, d),
        "squeeze" => |t, d| t.squeeze(d), "cumsum" => |t, d| t.cumsum(d),
    }
    engine.register_fn(
        "unsqueeze",
        |t: &mut ScriptTensor, d: INT| -> RResult<ScriptTensor> {
            let rank = t.t.rank() as INT;
            let d = if d < 0 { rank + 1 + d } else { d };
            if d < 0 || d > rank {
                return err(format!("unsqueeze dimension out of range for rank {rank}"));
            }
            Ok(ScriptTensor::new(c(t.t.unsqueeze(d as usize))?))
        },
    );
    for (name, cmp) in [
        ("eq", candle_core::op::CmpOp::Eq),
        ("ne", candle_core::op::CmpOp::Ne),
        ("lt", candle_core::op::CmpOp::Lt),
        ("le", candle_core::op::CmpOp::Le),
        ("gt", candle_core::op::CmpOp::Gt),
        ("ge", candle_core::op::CmpOp::Ge),
    ] {
        engine.register_fn(
            name,
            move |a: &mut ScriptTensor, b: ScriptTensor| -> RResult<ScriptTensor> {
                let (x, y) = coerce(&a.t, &b.t)?;
                Ok(ScriptTensor::new(compare(&x, &y, cmp)?))
            },
        );
        engine.register_fn(
            name,
            move |a: &mut ScriptTensor, b: f64| -> RResult<ScriptTensor> {
                let y = c(c(Tensor::new(b, a.t.device()))?.to_dtype(a.t.dtype()))?;
                Ok(ScriptTensor::new(compare(&a.t, &y, cmp)?))
            },
        );
    }

    // ---- shapes ----
    engine.register_fn(
        "reshape",
        |t: &mut ScriptTensor, s: Dynamic| -> RResult<ScriptTensor> {
            let shape = to_shape(&s)?;
            if shape.elem_count() != t.t.elem_count() {
                return err(format!(
                    "cannot reshape {:?} ({} elements) into {:?}",
                    t.t.dims(),
                    t.t.elem_count(),
                    shape.dims()
                ));
            }
            Ok(ScriptTensor::new(c(t.t.reshape(shape))?))
        },
    );
    engine.register_fn(
        "transpose",
        |t: &mut ScriptTensor, a: INT, b: INT| -> RResult<ScriptTensor> {
            Ok(ScriptTensor::new(c(t
                .t
                .transpose(dim_of(&t.t, a)?, dim_of(&t.t, b)?))?))
        },
    );
    engine.register_fn(
        "permute",
        |t: &mut ScriptTensor, dims: Array| -> RResult<ScriptTensor> {
            let dims = dims
                .iter()
                .map(|d| {
                    d.as_int()
                        .map_err(|_| "permute takes ints".into())
                        .and_then(|d| dim_of(&t.t, d))
                })
                .collect::<RResult<Vec<_>>>()?;
            Ok(ScriptTensor::new(c(t.t.permute(dims))?))
        },
    );
    engine.register_fn(
        "broadcast_as",
        |t: &mut ScriptTensor, s: Dynamic| -> RResult<ScriptTensor> {
            Ok(ScriptTensor::new(c(t.t.broadcast_as(to_shape(&s)?))?))
        },
    );
    engine.register_fn(
        "narrow",
        |t: &mut ScriptTensor, d: INT, start: INT, len: INT| -> RResult<ScriptTensor> {
            let d = dim_of(&t.t, d)?;
            Ok(ScriptTensor::new(slice(&t.t, d, start, start + len)?))
        },
    );
    engine.register_fn(
        "slice",
        |t: &mut ScriptTensor, d: INT, start: INT, end: INT| -> RResult<ScriptTensor> {
            let d = dim_of(&t.t, d)?;
            Ok(ScriptTensor::new(slice(&t.t, d, start, end)?))
        },
    );
    engine.register_fn(
        "select",
        |t: &mut ScriptTensor, d: INT, i: INT| -> RResult<ScriptTensor> {
            let d = dim_of(&t.t, d)?;
            let moved = c(t.t.transpose(0, d))?;
            let picked = index(&moved, i)?;
            Ok(ScriptTensor::new(if d == 0 || picked.rank() < 2 {
                picked
            } else {
                c(picked.transpose(0, d - 1))?
            }))
        },
    );
    engine.register_fn(
        "index_select",
        |t: &mut ScriptTensor, idx: ScriptTensor, d: INT| -> RResult<ScriptTensor> {
            let d = dim_of(&t.t, d)?;
            let idx = if idx.t.dtype() == DType::U32 || idx.t.dtype() == DType::I64 {
                idx.t
            } else {
                c(idx.t.to_dtype(DType::U32))?
            };
            Ok(ScriptTensor::new(c(t.t.index_select(&idx, d))?))
        },
    );
    engine.register_indexer_get(|t: &mut ScriptTensor, i: INT| -> RResult<ScriptTensor> {
        Ok(ScriptTensor::new(index(&t.t, i)?))
    });
    engine.register_indexer_get(
        |t: &mut ScriptTensor, r: Range<INT>| -> RResult<ScriptTensor> {
            Ok(ScriptTensor::new(slice(&t.t, 0, r.start, r.end)?))
        },
    );
    engine.register_indexer_get(
        |t: &mut ScriptTensor, r: RangeInclusive<INT>| -> RResult<ScriptTensor> {
            Ok(ScriptTensor::new(slice(&t.t, 0, *r.start(), *r.end() + 1)?))
        },
    );
    engine.register_fn("cat", |ts: Array, d: INT| -> RResult<ScriptTensor> {
        let ts = tensors_of(&ts)?;
        let first = ts.first().ok_or("cat needs at least one tensor")?;
        let d = dim_of(first, d)?;
        Ok(ScriptTensor::new(c(Tensor::cat(&ts, d))?))
    });
    engine.register_fn("stack", |ts: Array, d: INT| -> RResult<ScriptTensor> {
        let ts = tensors_of(&ts)?;
        if ts.is_empty() {
            return err("stack needs at least one tensor");
        }
        Ok(ScriptTensor::new(c(Tensor::stack(&ts, usize_of(d)?))?))
    });
    engine.register_fn(
        "where_cond",
        |m: &mut ScriptTensor, a: ScriptTensor, b: ScriptTensor| -> RResult<ScriptTensor> {
            Ok(ScriptTensor::new(c(m.t.where_cond(&a.t, &b.t))?))
        },
    );

    // ---- autograd ----
    engine.register_fn("param", |t: ScriptTensor| -> RResult<ScriptTensor> {
        let t = if t.t.dtype().is_float() {
            t.t
        } else {
            c(t.t.to_dtype(DType::F32))?
        };
        Ok(ScriptTensor::from_var(c(Var::from_tensor(&t))?))
    });
    engine.register_fn(
        "requires_grad",
        |t: &mut ScriptTensor| -> RResult<ScriptTensor> {
            Ok(ScriptTensor::from_var(c(Var::from_tensor(&t.t))?))
        },
    );
    engine.register_fn("backward", |t: &mut ScriptTensor| -> RResult<Grads> {
        if t.t.elem_count() != 1 {
            return err(format!(
                "backward() needs a scalar loss, this tensor has shape {:?}",
                t.t.dims()
            ));
        }
        Ok(Grads(Rc::new(c(t.t.backward())?)))
    });
    let grad_of = |g: &mut Grads, t: ScriptTensor| -> RResult<ScriptTensor> {
        match g.0.get(&t.t) {
            Some(g) => Ok(ScriptTensor::new(g.clone())),
            None => err(
                "no gradient for this tensor: was it made with param(...) and used in the loss?",
            ),
        }
    };
    engine.register_fn("get", grad_of);
    engine.register_indexer_get(grad_of);
    engine.register_fn(
        "set",
        |t: &mut ScriptTensor, v: ScriptTensor| -> RResult<()> {
            match &t.var {
                Some(var) => c(var.set(&v.t)),
                None => err("set() needs a tensor made with param(...)"),
            }
        },
    );
}

/// Element-wise comparison with NumPy broadcasting; 1 where true, else 0 (u8).
fn compare(x: &Tensor, y: &Tensor, op: candle_core::op::CmpOp) -> RResult<Tensor> {
    let shape = c(x.shape().broadcast_shape_binary_op(y.shape(), "compare"))?;
    c(c(x.broadcast_as(&shape))?.cmp(&c(y.broadcast_as(&shape))?, op))
}

pub fn tensors_of(a: &Array) -> RResult<Vec<Tensor>> {
    a.iter()
        .map(|d| {
            d.read_lock::<ScriptTensor>()
                .map(|t| t.t.clone())
                .ok_or_else(|| format!("expected tensors, found {}", d.type_name()).into())
        })
        .collect()
}
