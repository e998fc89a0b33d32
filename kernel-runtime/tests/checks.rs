//! academy-candle's checking functions: tests in a graded notebook run in
//! the session the engineer's answers ran in, so what they call must be
//! what the kernel provides. `assert_eq` and friends compare by value in
//! Rust, and no cell may define a function with a built-in's name.

use jupyter_protocol::{ExecuteRequest, JupyterMessage};
use kernel_runtime::device::DeviceChoice;
use kernel_runtime::engine::{Engine, Output};

fn session() -> (Box<dyn Engine>, Output) {
    let (engine, _interrupter) = kernel_runtime::candle::build(DeviceChoice {
        device: candle_core::Device::Cpu,
        description: "Device: CPU (test)".to_owned(),
    })
    .expect("engine");
    let (iopub, _) = tokio::sync::mpsc::channel(1);
    let out = Output::new(
        JupyterMessage::new(ExecuteRequest::new(String::new()), None),
        iopub,
    );
    (engine, out)
}

/// `Ok` or the error's name and value.
fn run(engine: &mut Box<dyn Engine>, out: &Output, code: &str) -> Result<(), (String, String)> {
    engine
        .execute(code, out)
        .map(drop)
        .map_err(|e| (e.ename, e.evalue))
}

#[test]
fn checks_compare_numbers_arrays_maps_and_tensors_by_value() {
    let (mut e, out) = session();
    for ok in [
        "assert(1 < 2)",
        "assert_eq(42, 42)",
        "assert_eq(2, 2.0)",
        "assert_eq([1, [2, 3]], [1, [2, 3]])",
        "assert_eq(#{a: 1, b: \"x\"}, #{b: \"x\", a: 1})",
        "assert_eq(tensor([1.0, 2.0]), tensor([1.0, 2.0]))",
        "assert_ne(1, 2)",
        "assert_close(0.1 + 0.2, 0.3, 1e-9)",
        "assert_close(tensor([1.0, 2.0]), tensor([1.0, 2.0001]), 0.001)",
    ] {
        assert_eq!(run(&mut e, &out, ok), Ok(()), "{ok}");
    }
    for (bad, says) in [
        ("assert(1 > 2)", "assertion failed"),
        ("assert(1 > 2, \"one is not more\")", "one is not more"),
        ("assert_eq(41, 42)", "left: 41"),
        ("assert_eq(\"42\", 42)", "left == right"),
        ("assert_eq([1, 2], [1, 2, 3])", "left == right"),
        (
            "assert_eq(tensor([1.0, 2.0]), tensor([[1.0, 2.0]]))",
            "left == right",
        ),
        ("assert_close(1.0, 1.1, 0.01)", "largest difference"),
        (
            "assert_close(tensor([1.0]), tensor([0.0/0.0]), 1.0)",
            "largest difference",
        ),
        // A NaN is not forgotten when a finite difference follows it.
        (
            "assert_close(tensor([0.0/0.0, 0.0]), tensor([1.0, 0.0]), 1.0)",
            "largest difference",
        ),
        (
            "assert_close([0.0/0.0, 1.0], [1.0, 1.0], 1.0)",
            "largest difference",
        ),
        (
            "assert_close(#{a: 0.0/0.0, b: 1.0}, #{a: 1.0, b: 1.0}, 1.0)",
            "largest difference",
        ),
        ("assert_ne(3, 3)", "left != right"),
        ("assert(\"yes\")", "boolean"),
    ] {
        let (_, value) = run(&mut e, &out, bad).expect_err(bad);
        assert!(value.contains(says), "{bad}: {value}");
    }
}

/// An answer cell cannot swap out what a later test calls (nbgrader
/// #1379's `__eq__` trick, in academy-candle's terms): defining a function
/// with a built-in's name is refused, and the real check still fails.
#[test]
fn no_cell_can_redefine_a_built_in_function() {
    let (mut e, out) = session();
    for answer in [
        "fn assert_eq(a, b) { }",
        "fn assert_eq(a, b, c, d) { }",
        "fn assert(c) { true }",
        "fn assert_close(a, b, t) { }",
        "fn mean(t) { 1.0 }",
        "let answer = 41;\nfn accuracy(a, b) { 1.0 }",
    ] {
        let (name, value) = run(&mut e, &out, answer).expect_err(answer);
        assert_eq!(name, "NameError", "{answer}");
        assert!(value.contains("built-in"), "{answer}: {value}");
    }
    // The refused cell ran nothing, and the check is still the kernel's.
    assert!(run(&mut e, &out, "answer").is_err());
    assert!(run(&mut e, &out, "assert_eq(41, 42)").is_err());
    // A function of a name of one's own is fine.
    assert_eq!(
        run(
            &mut e,
            &out,
            "fn my_check(a) { a + 1 }\nassert_eq(my_check(1), 2)"
        ),
        Ok(())
    );
}
