"""Streaming while a cell runs, restart, and evcxr's commands."""

import re
import time

from conftest import run_cell, text_of


def test_output_streams_while_the_cell_is_still_running(candle_kernel):
    _, kc = candle_kernel
    msg_id = kc.execute('print("first"); sleep(1.5); print("second")')
    sent = time.monotonic()
    first_at = None
    while True:
        msg = kc.get_iopub_msg(timeout=10)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream" and "first" in msg["content"]["text"]:
            first_at = time.monotonic() - sent
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    done_at = time.monotonic() - sent
    assert first_at is not None and first_at < 1.0, first_at
    assert done_at >= 1.5


def test_progress_bar_updates_in_place(candle_kernel):
    _, kc = candle_kernel
    _, outputs = run_cell(kc, 'let p = progress(3, "steps"); for i in 1..=3 { sleep(0.15); p.update(i); }')
    kinds = [m["msg_type"] for m in outputs if m["msg_type"] in ("display_data", "update_display_data")]
    assert kinds[0] == "display_data" and "update_display_data" in kinds
    ids = {m["content"]["transient"]["display_id"] for m in outputs if m["msg_type"].endswith("display_data")}
    assert len(ids) == 1
    last = [m for m in outputs if m["msg_type"] == "update_display_data"][-1]
    assert "3/3" in last["content"]["data"]["text/plain"]


def test_restart_gives_a_fresh_session(candle_kernel):
    km, kc = candle_kernel
    run_cell(kc, "let before_restart = 1;")
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=60)
    reply, outputs = run_cell(kc, 'is_def_var("before_restart")')
    assert text_of(outputs) == "false"


def test_shutdown_request_is_answered_and_the_process_exits(candle_kernel):
    km, kc = candle_kernel
    km.shutdown_kernel(now=False)
    assert not km.is_alive()


def test_evcxr_commands_vars_and_timing_work(rust_kernel):
    _, kc = rust_kernel
    reply, _ = run_cell(kc, "let timing_probe = 7u8;", timeout=180)
    assert reply["content"]["status"] == "ok"
    _, outputs = run_cell(kc, ":vars", timeout=60)
    assert "timing_probe" in str([m["content"] for m in outputs])
    run_cell(kc, ":timing", timeout=60)
    _, outputs = run_cell(kc, "timing_probe + 1", timeout=180)
    text = text_of(outputs)
    assert "8" in text and "Took" in text, text
    run_cell(kc, ":timing", timeout=60)


def test_rust_compile_error_is_readable(rust_kernel):
    _, kc = rust_kernel
    reply, outputs = run_cell(kc, 'let n: i32 = "seven";', timeout=180)
    assert reply["content"]["status"] == "error"
    err = [m for m in outputs if m["msg_type"] == "error"][0]["content"]
    assert "mismatched types" in err["evalue"]
    # The traceback is ariadne's report with ANSI colours, as Jupyter renders it.
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in err["traceback"]]
    assert any('let n: i32 = "seven";' in line for line in plain), plain
    assert any("expected `i32`, found `&str`" in line for line in plain), plain


def test_rerunning_a_let_cell_does_not_keep_the_old_values(candle_kernel):
    _, kc = candle_kernel
    for _ in range(3):
        run_cell(kc, "let big = zeros([10, 10]); let n = 1;")
    _, outputs = run_cell(kc, ":vars")
    listing = text_of(outputs)
    assert listing.count("big:") == 1, listing
    assert "Tensor[10, 10] f32 cpu" in listing
