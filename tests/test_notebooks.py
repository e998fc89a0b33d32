"""Every notebook in examples/ runs under nbclient on our kernels, without error.

The assertions read the outputs: a regression that converged, a classifier
that learned, a GPU notebook that says where it ran.
"""

import re

import nbclient
import nbformat
import pytest

from conftest import EXAMPLES


def outputs_text(nb):
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                parts.append(out["text"])
            elif out["output_type"] in ("execute_result", "display_data"):
                parts.append(str(out["data"].get("text/plain", "")))
    return "\n".join(parts)


def mime_types(nb):
    return {m for c in nb.cells for o in c.get("outputs", []) for m in o.get("data", {})}


def execute(name, timeout):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=timeout, startup_timeout=120, allow_errors=False)
    client.execute()
    return nb


NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))


def test_there_are_at_least_six_example_notebooks():
    assert len(NOTEBOOKS) >= 6


def test_01_rust_basics():
    nb = execute("01-rust-basics.ipynb", 300)
    text = outputs_text(nb)
    assert "Hello, academy: 10 numbers" in text
    assert "220" in text  # 2² + 4² + 6² + 8² + 10²
    assert "has norm 5" in text
    assert "text/html" in mime_types(nb)


def test_02_candle_in_rust():
    nb = execute("02-candle-in-rust.ipynb", 1500)
    text = outputs_text(nb)
    assert "[12., 12.]]" in text, text
    assert "Tensor[[2, 2], f32]" in text
    assert "30" in text


def test_03_candle_tensors():
    nb = execute("03-candle-tensors.ipynb", 120)
    text = outputs_text(nb)
    assert "device: cpu" in text
    assert "Tensor[2, 3] f32 cpu" in text
    assert "..." in text  # the 100x100 tensor is elided
    assert "[4, -2]" in text  # d/dw of sum(w²) at w = [2, -1]


def test_04_linear_regression_converges():
    nb = execute("04-linear-regression.ipynb", 300)
    text = outputs_text(nb)
    loss = float(re.search(r"final loss: ([0-9.eE+-]+)", text).group(1))
    assert loss < 0.01, text
    assert "image/svg+xml" in mime_types(nb)


def test_05_mlp_classifier_learns():
    nb = execute("05-mlp-classifier.ipynb", 600)
    text = outputs_text(nb)
    acc = float(re.search(r"test accuracy: ([0-9.]+)", text).group(1))
    assert acc > 0.95, text
    assert "image/svg+xml" in mime_types(nb)
    # The progress bar ends at 100 % in place: nbclient applies the updates.
    assert "300/300" in text


def test_06_gpu_matmul_runs_small_on_cpu_and_says_so():
    nb = execute("06-gpu-matmul-throughput.ipynb", 300)
    text = outputs_text(nb)
    assert "No GPU to compute on" in text
    assert re.search(r"TFLOP/s", text)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_notebook_names_an_academy_kernel(name):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    assert nb.metadata["kernelspec"]["name"] in ("academy-rust", "academy-candle")
