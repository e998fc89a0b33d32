"""Shared fixtures for the end-to-end tests.

The tests run against the kernelspecs that `academy-kernel install --prefix
.venv` wrote, so jupyter_client launches the real binary exactly as
JupyterLab or nbclient would.
"""

import os
import pathlib

import pytest
from jupyter_client.manager import start_new_kernel

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def pytest_configure(config):
    # Kernels must not inherit a GPU selection from the developer's shell.
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)


@pytest.fixture
def candle_kernel():
    km, kc = start_new_kernel(kernel_name="academy-candle", startup_timeout=60)
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def rust_kernel():
    km, kc = start_new_kernel(kernel_name="academy-rust", startup_timeout=120)
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def run_cell(kc, code, timeout=60):
    """Executes code and returns (reply, [iopub messages of this cell])."""
    msg_id = kc.execute(code)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    outputs = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        outputs.append(msg)
    return reply, outputs


def text_of(outputs):
    """All stream text and text/plain results of a cell, concatenated."""
    parts = []
    for m in outputs:
        if m["msg_type"] == "stream":
            parts.append(m["content"]["text"])
        elif m["msg_type"] in ("execute_result", "display_data"):
            parts.append(m["content"]["data"].get("text/plain", ""))
    return "".join(parts)
