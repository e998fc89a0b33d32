//! `manual_seed` makes an academy-candle session reproducible: the same cells
//! in two fresh sessions give bit-identical numbers (layer initialisation,
//! `randn`, `rand`, a shuffled data set, training steps), another seed gives
//! other numbers, and without a seed runs differ. The engine is driven in
//! process, as the executor thread drives it; the last test runs example
//! notebook 05 twice through the kernel binary.

use std::process::{Command, Stdio};

use jupyter_protocol::{ExecuteRequest, JupyterMessage, MediaType};
use kernel_runtime::device::DeviceChoice;
use kernel_runtime::engine::{Engine, Output};

/// A fresh academy-candle session on the CPU.
fn session() -> Box<dyn Engine> {
    let (engine, _interrupter) = kernel_runtime::candle::build(DeviceChoice {
        device: candle_core::Device::Cpu,
        description: "Device: CPU (test)".to_owned(),
    })
    .expect("engine");
    engine
}

/// Runs `cells` in a fresh session; the plain text of each cell's value.
fn run(cells: &[&str]) -> Vec<String> {
    let mut engine = session();
    // Nothing reads what the cells print; `Output` drops it once the
    // receiver is gone.
    let (iopub, _) = tokio::sync::mpsc::channel(1);
    let out = Output::new(
        JupyterMessage::new(ExecuteRequest::new(String::new()), None),
        iopub,
    );
    cells
        .iter()
        .map(|code| {
            let media = engine
                .execute(code, &out)
                .unwrap_or_else(|e| panic!("{code}: {}: {}", e.ename, e.evalue));
            media
                .into_iter()
                .flat_map(|m| m.content)
                .find_map(|m| match m {
                    MediaType::Plain(text) => Some(text),
                    _ => None,
                })
                .unwrap_or_default()
        })
        .collect()
}

/// Layer initialisation, `randn`, `rand`, a data set shuffled with
/// `randperm`, and a few AdamW steps; every number comes back as text
/// (Rhai prints floats exactly, so equal text is equal bits).
fn training_cells(seed: Option<i64>) -> Vec<String> {
    let seed = seed.map_or(String::new(), |s| format!("manual_seed({s});"));
    vec![
        seed,
        "let vm = varmap();
         let l1 = linear(vm, 2, 8);
         let l2 = linear(vm, 8, 2, \"out\");
         let noise = randn([3]);
         let u = rand([2, 2], \"f64\");
         let like = randn_like(u);
         `${l1.weight.to_array()} ${l2.bias.to_array()} ${noise.to_array()} ${u.to_array()} ${like.to_array()}`"
            .to_owned(),
        "let data = make_moons(64, 0.1, 1);
         let order = randperm(64);
         let x = data.x.index_select(order, 0);
         let y = data.y.index_select(order, 0);
         let split = train_test_split(x, y, 0.25);
         `${order.to_array()} ${split.y_test.to_array()}`"
            .to_owned(),
        "let opt = adamw(vm, 0.05);
         let losses = [];
         for step in 0..5 {
             let loss = cross_entropy(l2.forward(l1.forward(split.x_train).relu()), split.y_train);
             opt.step(loss);
             losses.push(loss.item());
         }
         `${losses} ${l1.weight.to_array()} ${params(vm).map(|p| p.shape)}`"
            .to_owned(),
    ]
}

fn run_training(seed: Option<i64>) -> Vec<String> {
    let cells = training_cells(seed);
    run(&cells.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn the_same_seed_gives_bit_identical_weights_draws_shuffles_and_losses() {
    let first = run_training(Some(7));
    let second = run_training(Some(7));
    assert_eq!(first, second);
    // The cells did produce numbers, not errors or empty strings.
    assert!(
        first[1].contains('.') && first[3].contains('['),
        "{first:?}"
    );
}

#[test]
fn another_seed_gives_other_weights_draws_shuffles_and_losses() {
    let seven = run_training(Some(7));
    let eight = run_training(Some(8));
    for cell in 1..=3 {
        assert_ne!(seven[cell], eight[cell], "cell {cell}");
    }
}

#[test]
fn without_a_seed_runs_differ() {
    assert_ne!(run_training(None)[1], run_training(None)[1]);
}

#[test]
fn seeding_again_in_a_session_restarts_the_stream() {
    let out = run(&[
        "manual_seed(3); randn([4]).to_array()",
        "randn([4]).to_array()",
        "manual_seed(3); randn([4]).to_array()",
    ]);
    assert_eq!(out[0], out[2]);
    assert_ne!(out[0], out[1]);
}

#[test]
fn a_layer_of_an_existing_name_keeps_its_weights() {
    let out = run(&[
        "manual_seed(1); let vm = varmap(); linear(vm, 3, 2, \"fc\").weight.to_array()",
        "linear(vm, 3, 2, \"fc\").weight.to_array()",
        "num_params(vm)",
    ]);
    assert_eq!(out[0], out[1]);
    assert_eq!(out[2], "8");
}

#[test]
fn shift_tab_on_manual_seed_shows_its_documentation() {
    let mut engine = session();
    let help = engine.inspect("manual_seed(42)", 3).expect("help");
    let text = help
        .content
        .iter()
        .find_map(|m| match m {
            MediaType::Plain(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap_or_default();
    assert!(text.starts_with("manual_seed(seed: i64)"), "{text}");
    assert!(text.contains("torch.manual_seed"), "{text}");
}

/// Example 05 trains an MLP; with its `manual_seed` it prints the same
/// final loss and accuracy on every run.
#[test]
fn example_05_gives_the_same_result_on_every_run() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run_notebook = || {
        let out = Command::new(env!("CARGO_BIN_EXE_academy-kernel"))
            .arg("execute")
            .arg(root.join("examples/05-mlp-classifier.ipynb"))
            .env_remove("CUDA_VISIBLE_DEVICES")
            .stderr(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}");
        // The progress bar shows elapsed time; the results do not.
        let results: Vec<String> = stdout
            .lines()
            .filter(|l| l.starts_with("final loss") || l.starts_with("test accuracy"))
            .map(str::to_owned)
            .collect();
        assert_eq!(results.len(), 2, "{stdout}");
        results
    };
    assert_eq!(run_notebook(), run_notebook());
}
