//! candle-nn in Rhai: parameters, layers, losses and optimisers.
//!
//! A `VarMap` holds a model's parameters; layers created on it register
//! their weights there, and an optimiser built from it updates them all.
//! Optimisers are shared handles (`Rc<RefCell<…>>`) because Rhai copies
//! values on assignment and a step must update the one optimiser.
//!
//! Layers never let candle create their weights (`VarBuilder` initialises
//! from an unseeded generator): [`super::random::variable`] does, from the
//! session's generator, so `manual_seed` fixes them.

use std::cell::RefCell;
use std::rc::Rc;

use candle_core::{DType, Module, Tensor, Var};
use candle_nn::{AdamW, Init, Optimizer as _, ParamsAdamW, SGD, VarMap};
use rhai::{Array, Dynamic, Engine, INT, Map};

use super::Session;
use super::random;
use super::tensor::{RResult, ScriptTensor, c, err, usize_of};

#[derive(Clone)]
pub struct Params(pub VarMap);

#[derive(Clone)]
pub struct Linear(pub candle_nn::Linear);

enum Opt {
    Sgd(SGD),
    AdamW(AdamW),
}

#[derive(Clone)]
pub struct Optimizer(Rc<RefCell<Opt>>);

/// A varmap's variables ordered by name: `VarMap::all_vars` follows a
/// `HashMap`, whose order changes from run to run.
fn sorted_vars(vm: &VarMap) -> Vec<Var> {
    let vars = vm.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut named: Vec<(&String, &Var)> = vars.iter().collect();
    named.sort_by_key(|(name, _)| *name);
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

fn vars_of(source: &Dynamic) -> RResult<Vec<Var>> {
    if let Some(p) = source.read_lock::<Params>() {
        return Ok(sorted_vars(&p.0));
    }
    if let Some(a) = source.read_lock::<Array>() {
        return a
            .iter()
            .map(
                |d| match d.read_lock::<ScriptTensor>().and_then(|t| t.var.clone()) {
                    Some(v) => Ok(v),
                    None => err("an optimiser takes tensors made with param(...)"),
                },
            )
            .collect();
    }
    err(format!(
        "an optimiser takes a varmap() or an array of var tensors, not {}",
        source.type_name()
    ))
}

fn float_in(m: &Map, key: &str, default: f64) -> RResult<f64> {
    match m.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_float()
            .or_else(|_| v.as_int().map(|i| i as f64))
            .map_err(|_| format!("option {key} must be a number").into()),
    }
}

fn same_shape(a: &Tensor, b: &Tensor, what: &str) -> RResult<()> {
    if a.dims() != b.dims() {
        return err(format!(
            "{what}: prediction shape {:?} differs from target shape {:?}",
            a.dims(),
            b.dims()
        ));
    }
    Ok(())
}

fn class_targets(t: &Tensor) -> RResult<Tensor> {
    if t.dtype() == DType::U32 {
        Ok(t.clone())
    } else {
        c(t.to_dtype(DType::U32))
    }
}

pub fn register(engine: &mut Engine, session: &Rc<Session>) {
    engine.register_type_with_name::<Params>("VarMap");
    engine.register_type_with_name::<Linear>("Linear");
    engine.register_type_with_name::<Optimizer>("Optimizer");

    engine.register_fn("varmap", || Params(VarMap::new()));
    engine.register_fn("params", |p: &mut Params| -> Array {
        sorted_vars(&p.0)
            .into_iter()
            .map(|v| Dynamic::from(ScriptTensor::from_var(v)))
            .collect()
    });
    engine.register_fn("num_params", |p: &mut Params| -> INT {
        p.0.all_vars().iter().map(|v| v.elem_count() as INT).sum()
    });
    engine.register_fn("save", |p: &mut Params, path: &str| -> RResult<()> {
        c(p.0.save(path))
    });
    engine.register_fn("load", |p: &mut Params, path: &str| -> RResult<()> {
        c(p.0.load(path))
    });

    {
        let s = session.clone();
        // The names and initialisations of `candle_nn::linear`: Kaiming-normal
        // weights [out, in], biases uniform in ±1/√in. A name already in the
        // varmap gives back its variables.
        let make = move |p: &Params, i: INT, o: INT, name: String| -> RResult<Linear> {
            let (i, o) = (usize_of(i)?, usize_of(o)?);
            if i == 0 {
                return err("a linear layer needs at least one input");
            }
            let bound = 1.0 / (i as f64).sqrt();
            let weight = c(random::variable(
                &s,
                &p.0,
                &format!("{name}.weight"),
                (o, i),
                candle_nn::init::DEFAULT_KAIMING_NORMAL,
            ))?;
            let bias = c(random::variable(
                &s,
                &p.0,
                &format!("{name}.bias"),
                o,
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            ))?;
            Ok(Linear(candle_nn::Linear::new(weight, Some(bias))))
        };
        let s2 = session.clone();
        let m2 = make.clone();
        engine.register_fn("linear", move |p: Params, i: INT, o: INT| {
            m2(&p, i, o, s2.next_id("linear"))
        });
        engine.register_fn("linear", move |p: Params, i: INT, o: INT, name: &str| {
            make(&p, i, o, name.to_owned())
        });
    }
    engine.register_fn(
        "forward",
        |l: &mut Linear, x: ScriptTensor| -> RResult<ScriptTensor> {
            let x = if x.t.dtype() == DType::F32 {
                x.t
            } else {
                c(x.t.to_dtype(DType::F32))?
            };
            Ok(ScriptTensor::new(c(l.0.forward(&x))?))
        },
    );
    engine.register_get("weight", |l: &mut Linear| {
        ScriptTensor::new(l.0.weight().clone())
    });
    engine.register_get("bias", |l: &mut Linear| -> Dynamic {
        l.0.bias().map_or(Dynamic::UNIT, |b| {
            Dynamic::from(ScriptTensor::new(b.clone()))
        })
    });

    // ---- losses ----
    engine.register_fn(
        "mse",
        |p: ScriptTensor, t: ScriptTensor| -> RResult<ScriptTensor> {
            same_shape(&p.t, &t.t, "mse")?;
            Ok(ScriptTensor::new(c(candle_nn::loss::mse(&p.t, &t.t))?))
        },
    );
    engine.register_fn(
        "l1",
        |p: ScriptTensor, t: ScriptTensor| -> RResult<ScriptTensor> {
            same_shape(&p.t, &t.t, "l1")?;
            Ok(ScriptTensor::new(
                c(c(c(p.t.sub(&t.t))?.abs())?.mean_all())?,
            ))
        },
    );
    engine.register_fn("cross_entropy", |logits: ScriptTensor, t: ScriptTensor| -> RResult<ScriptTensor> {
        if logits.t.rank() != 2 || t.t.rank() != 1 {
            return err(format!("cross_entropy takes logits [batch, classes] and class ids [batch], got {:?} and {:?}", logits.t.dims(), t.t.dims()));
        }
        Ok(ScriptTensor::new(c(candle_nn::loss::cross_entropy(&logits.t, &class_targets(&t.t)?))?))
    });
    engine.register_fn(
        "nll",
        |logp: ScriptTensor, t: ScriptTensor| -> RResult<ScriptTensor> {
            Ok(ScriptTensor::new(c(candle_nn::loss::nll(
                &logp.t,
                &class_targets(&t.t)?,
            ))?))
        },
    );
    engine.register_fn(
        "bce_with_logits",
        |logits: ScriptTensor, t: ScriptTensor| -> RResult<ScriptTensor> {
            same_shape(&logits.t, &t.t, "bce_with_logits")?;
            let t = c(t.t.to_dtype(logits.t.dtype()))?;
            Ok(ScriptTensor::new(c(
                candle_nn::loss::binary_cross_entropy_with_logit(&logits.t, &t),
            )?))
        },
    );
    engine.register_fn(
        "accuracy",
        |logits: ScriptTensor, t: ScriptTensor| -> RResult<f64> {
            let pred = c(logits.t.argmax(candle_core::D::Minus1))?;
            let t = class_targets(&t.t)?;
            let hits = c(c(c(pred.eq(&t))?.to_dtype(DType::F32))?.mean_all())?;
            super::tensor::item(&hits)
        },
    );

    // ---- optimisers ----
    engine.register_fn("sgd", |src: Dynamic, lr: f64| -> RResult<Optimizer> {
        Ok(Optimizer(Rc::new(RefCell::new(Opt::Sgd(c(SGD::new(
            vars_of(&src)?,
            lr,
        ))?)))))
    });
    let adamw = |src: Dynamic, params: ParamsAdamW| -> RResult<Optimizer> {
        Ok(Optimizer(Rc::new(RefCell::new(Opt::AdamW(c(
            AdamW::new(vars_of(&src)?, params),
        )?)))))
    };
    engine.register_fn("adamw", move |src: Dynamic, lr: f64| {
        adamw(
            src,
            ParamsAdamW {
                lr,
                ..Default::default()
            },
        )
    });
    engine.register_fn("adamw", move |src: Dynamic, o: Map| {
        let d = ParamsAdamW::default();
        adamw(
            src,
            ParamsAdamW {
                lr: float_in(&o, "lr", d.lr)?,
                beta1: float_in(&o, "beta1", d.beta1)?,
                beta2: float_in(&o, "beta2", d.beta2)?,
                eps: float_in(&o, "eps", d.eps)?,
                weight_decay: float_in(&o, "weight_decay", d.weight_decay)?,
            },
        )
    });
    engine.register_fn(
        "step",
        |o: &mut Optimizer, loss: ScriptTensor| -> RResult<()> {
            match &mut *o.0.borrow_mut() {
                Opt::Sgd(s) => c(s.backward_step(&loss.t)),
                Opt::AdamW(a) => c(a.backward_step(&loss.t)),
            }
        },
    );
    engine.register_get("lr", |o: &mut Optimizer| match &*o.0.borrow() {
        Opt::Sgd(s) => s.learning_rate(),
        Opt::AdamW(a) => a.learning_rate(),
    });
    engine.register_set("lr", |o: &mut Optimizer, lr: f64| {
        match &mut *o.0.borrow_mut() {
            Opt::Sgd(s) => s.set_learning_rate(lr),
            Opt::AdamW(a) => a.set_learning_rate(lr),
        }
    });
}
