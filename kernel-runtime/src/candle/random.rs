//! Random numbers of a kernel session: `manual_seed`, `randn`, `rand`,
//! `randn_like`, `randperm`, and the initial values of layers.
//!
//! Everything random in academy-candle draws from one [`Generator`] that the
//! session owns (one per engine, so one per kernel process; no global), so a
//! notebook that starts with `manual_seed(42)` gives bit-identical numbers on
//! every run on the CPU. Until a cell calls `manual_seed`, the generator is
//! seeded from the operating system and every run differs, as before.
//!
//! Nothing in the other binding modules may call candle's own random
//! constructors (`Tensor::randn`, `Tensor::rand`, `randn_like`, `Init::var`,
//! or a `VarBuilder` that creates variables): on the CPU they draw from
//! rand's thread generator, which cannot be seeded. Tensors on the CPU are
//! filled here and made with `Tensor::from_vec`. On a GPU, sampling stays on
//! the device (a host-filled 8192² matrix would cost a second): there the
//! numbers come from candle's device generator, which `manual_seed` reseeds
//! too, so a GPU run is reproducible on the same GPU but draws other numbers
//! than a CPU run, as in PyTorch.
//!
//! The data sets of [`super::data`] take an explicit seed (0 when a script
//! gives none) and keep their own generator: their numbers never depend on
//! what else a notebook drew before.

use std::rc::Rc;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::VarMap;
use candle_nn::init::{Init, NormalOrUniform};
use rand::{SeedableRng as _, rngs::StdRng, seq::SliceRandom as _};
use rand_distr::{Distribution, Normal, Uniform};
use rhai::{Dynamic, Engine, FuncRegistration, INT};

use super::Session;
use super::tensor::{RResult, ScriptTensor, c, parse_dtype, to_shape, usize_of};

/// The session's random generator (ChaCha12: the same seed gives the same
/// stream on every platform).
pub struct Generator {
    rng: StdRng,
}

impl Generator {
    /// A generator seeded by the operating system: every run differs.
    pub fn from_entropy() -> Self {
        Generator {
            rng: StdRng::from_os_rng(),
        }
    }

    pub fn seeded(seed: u64) -> Self {
        Generator {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A tensor of normal samples.
    pub fn normal(
        &mut self,
        mean: f64,
        std: f64,
        shape: impl Into<Shape>,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let shape = shape.into();
        if !device.is_cpu() {
            let t = if dtype == DType::F64 {
                Tensor::randn(mean, std, &shape, device)?
            } else {
                Tensor::randn(mean as f32, std as f32, &shape, device)?
            };
            return t.to_dtype(dtype);
        }
        let f64s = Normal::new(mean, std).map_err(candle_core::Error::wrap)?;
        let f32s = Normal::new(mean as f32, std as f32).map_err(candle_core::Error::wrap)?;
        self.fill(f64s, f32s, shape, dtype, device)
    }

    /// A tensor of samples uniform in `[lo, up)`.
    pub fn uniform(
        &mut self,
        lo: f64,
        up: f64,
        shape: impl Into<Shape>,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let shape = shape.into();
        if !device.is_cpu() {
            let t = if dtype == DType::F64 {
                Tensor::rand(lo, up, &shape, device)?
            } else {
                Tensor::rand(lo as f32, up as f32, &shape, device)?
            };
            return t.to_dtype(dtype);
        }
        let f64s = Uniform::new(lo, up).map_err(candle_core::Error::wrap)?;
        let f32s = Uniform::new(lo as f32, up as f32).map_err(candle_core::Error::wrap)?;
        self.fill(f64s, f32s, shape, dtype, device)
    }

    /// A CPU tensor of samples from this generator: drawn as f64 for an
    /// f64 tensor, else as f32 and converted (as candle's own draws are).
    fn fill(
        &mut self,
        f64s: impl Distribution<f64>,
        f32s: impl Distribution<f32>,
        shape: Shape,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let n = shape.elem_count();
        if dtype == DType::F64 {
            let v: Vec<f64> = (0..n).map(|_| f64s.sample(&mut self.rng)).collect();
            return Tensor::from_vec(v, shape, device);
        }
        let v: Vec<f32> = (0..n).map(|_| f32s.sample(&mut self.rng)).collect();
        Tensor::from_vec(v, shape, device)?.to_dtype(dtype)
    }

    /// The initial value candle's `Init::var` would give, drawn from this
    /// generator.
    pub fn init(
        &mut self,
        init: Init,
        shape: impl Into<Shape>,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let shape = shape.into();
        match init {
            Init::Const(v) => Tensor::ones(shape, dtype, device)?.affine(v, 0.0),
            Init::Randn { mean, stdev } => self.normal(mean, stdev, shape, dtype, device),
            Init::Uniform { lo, up } => self.uniform(lo, up, shape, dtype, device),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(&shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Normal => self.normal(0.0, std, shape, dtype, device),
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        self.uniform(-bound, bound, shape, dtype, device)
                    }
                }
            }
        }
    }

    /// `0..n` in random order.
    pub fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..n as u32).collect();
        ids.shuffle(&mut self.rng);
        ids
    }
}

/// The variable `name` of `vm`: the one already there (its shape checked), or
/// a new one initialised from the session's generator. This is what
/// `VarMap::get` does, minus candle's unseeded initialisation.
pub fn variable(
    session: &Session,
    vm: &VarMap,
    name: &str,
    shape: impl Into<Shape>,
    init: Init,
) -> candle_core::Result<Tensor> {
    let shape = shape.into();
    let mut vars = vm.data().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(var) = vars.get(name) {
        if var.shape() != &shape {
            candle_core::bail!("shape mismatch on {name}: {shape:?} <> {:?}", var.shape())
        }
        return Ok(var.as_tensor().clone());
    }
    let value = session
        .rng
        .borrow_mut()
        .init(init, shape, DType::F32, &session.device)?;
    let var = Var::from_tensor(&value)?;
    let tensor = var.as_tensor().clone();
    vars.insert(name.to_owned(), var);
    Ok(tensor)
}

/// Seeds the session's generators: the host one, and the device's on a GPU.
fn manual_seed(session: &Session, seed: INT) -> RResult<()> {
    // Negative seeds are fine: the bits are the seed.
    let seed = seed as u64;
    *session.rng.borrow_mut() = Generator::seeded(seed);
    if !session.device.is_cpu() {
        c(session.device.set_seed(seed))?;
    }
    Ok(())
}

pub fn register(engine: &mut Engine, session: &Rc<Session>) {
    let s = session.clone();
    FuncRegistration::new("manual_seed")
        .with_params_info(["seed: i64"])
        .with_comments([
            "/// Seeds the session's random generator, as torch.manual_seed does.\n\
             /// After `manual_seed(n)`, layer initialisation (`linear`), `randn`, `rand`,\n\
             /// `randn_like` and `randperm` give the same numbers on every run (on a GPU:\n\
             /// on the same GPU). Without it they differ from run to run.\n\
             /// Data sets (`make_moons`, `train_test_split`, …) take their own seed.",
        ])
        .register_into_engine(engine, move |seed: INT| manual_seed(&s, seed));

    macro_rules! draw {
        ($name:literal, |$g:ident, $d:ident $(, $arg:ident : $ty:ty)*| $body:expr) => {{
            let s = session.clone();
            engine.register_fn($name, move |$($arg: $ty),*| -> RResult<ScriptTensor> {
                let $d = &s.device;
                let $g = &mut *s.rng.borrow_mut();
                Ok(ScriptTensor::new(c($body)?))
            });
        }};
    }
    draw!("randn", |g, d, shape: Dynamic| g.normal(
        0.0,
        1.0,
        to_shape(&shape)?,
        DType::F32,
        d
    ));
    draw!("randn", |g, d, shape: Dynamic, dt: &str| g.normal(
        0.0,
        1.0,
        to_shape(&shape)?,
        parse_dtype(dt)?,
        d
    ));
    draw!("rand", |g, d, shape: Dynamic| g.uniform(
        0.0,
        1.0,
        to_shape(&shape)?,
        DType::F32,
        d
    ));
    draw!("rand", |g, d, shape: Dynamic, dt: &str| g.uniform(
        0.0,
        1.0,
        to_shape(&shape)?,
        parse_dtype(dt)?,
        d
    ));
    draw!("randperm", |g, d, n: INT| {
        let n = usize_of(n)?;
        Tensor::from_vec(g.permutation(n), n, d)
    });
    let s = session.clone();
    engine.register_fn(
        "randn_like",
        move |t: &mut ScriptTensor| -> RResult<ScriptTensor> {
            let g = &mut *s.rng.borrow_mut();
            Ok(ScriptTensor::new(c(g.normal(
                0.0,
                1.0,
                t.t.shape(),
                t.t.dtype(),
                t.t.device(),
            ))?))
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn one_seed_gives_one_stream() {
        let draw = |seed| {
            let mut g = Generator::seeded(seed);
            let a = g
                .normal(0.0, 1.0, (3, 4), DType::F32, &Device::Cpu)
                .unwrap();
            let b = g.uniform(0.0, 1.0, 5, DType::F32, &Device::Cpu).unwrap();
            (values(&a), values(&b), g.permutation(10))
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn kaiming_init_has_the_spread_candle_gives() {
        let mut g = Generator::seeded(1);
        let w = g
            .init(
                candle_nn::init::DEFAULT_KAIMING_NORMAL,
                (400, 50),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        let v = values(&w);
        let var = v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32;
        // ReLU gain √2 over fan-in 50: variance 2/50.
        assert!((var - 0.04).abs() < 0.004, "{var}");
    }

    #[test]
    fn uniform_init_stays_in_its_bounds_and_dtype() {
        let mut g = Generator::seeded(2);
        let b = g
            .init(
                Init::Uniform { lo: -0.5, up: 0.5 },
                1000,
                DType::F64,
                &Device::Cpu,
            )
            .unwrap();
        assert_eq!(b.dtype(), DType::F64);
        let v: Vec<f64> = b.to_vec1().unwrap();
        assert!(v.iter().all(|x| (-0.5..0.5).contains(x)));
    }

    #[test]
    fn a_permutation_holds_every_index_once() {
        let mut p = Generator::seeded(3).permutation(100);
        p.sort();
        assert_eq!(p, (0..100).collect::<Vec<u32>>());
    }
}
