"""Bad input: syntax errors, forged signatures, unknown message types."""

import queue
import time

from jupyter_client.session import Session

from conftest import run_cell, text_of


def test_syntax_error_is_an_error_reply_and_the_kernel_lives_on(candle_kernel):
    _, kc = candle_kernel
    reply, outputs = run_cell(kc, "let = ;")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "SyntaxError"
    errors = [m for m in outputs if m["msg_type"] == "error"]
    assert len(errors) == 1 and errors[0]["content"]["evalue"]
    reply, outputs = run_cell(kc, "1 + 1")
    assert text_of(outputs) == "2"


def test_runtime_error_names_the_problem(candle_kernel):
    _, kc = candle_kernel
    reply, _ = run_cell(kc, "zeros([2, 3]).matmul(zeros([2, 3]))")
    assert reply["content"]["status"] == "error"
    assert "shape" in reply["content"]["evalue"].lower() or "matmul" in reply["content"]["evalue"].lower()
    reply, _ = run_cell(kc, "undefined_name + 1")
    assert reply["content"]["ename"] == "NameError"


def _forged_execute(kc, key):
    """Sends an execute_request signed with `key` on the shell channel."""
    forged = Session(key=key, username="attacker")
    msg = forged.msg("execute_request", {
        "code": 'let forged = 1; print("FORGED RAN")',
        "silent": False, "store_history": True, "user_expressions": {},
        "allow_stdin": False, "stop_on_error": True,
    })
    forged.send(kc.shell_channel.socket, msg)
    return msg["header"]["msg_id"]


def test_message_with_wrong_hmac_is_ignored(candle_kernel):
    _, kc = candle_kernel
    forged_id = _forged_execute(kc, b"not-the-key")
    # Two seconds for a reply that must not come: block on the channel, not a sleep loop.
    deadline = time.monotonic() + 2
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = kc.get_shell_msg(timeout=left)
        except queue.Empty:
            break
        assert msg["parent_header"].get("msg_id") != forged_id, "forged message was answered"
    # Nothing ran: the variable does not exist, and the kernel still answers.
    reply, outputs = run_cell(kc, "is_def_var(\"forged\")")
    assert reply["content"]["status"] == "ok"
    assert text_of(outputs) == "false"


def test_unknown_message_type_is_ignored_and_does_no_harm(candle_kernel):
    _, kc = candle_kernel
    msg = kc.session.msg("frobnicate_request", {"please": "explode"})
    kc.shell_channel.send(msg)
    msg = kc.session.msg("frobnicate_request", {})
    kc.control_channel.send(msg)
    reply = kc.kernel_info(reply=True, timeout=10)
    assert reply["content"]["status"] == "ok"
    reply, outputs = run_cell(kc, "40 + 2")
    assert text_of(outputs) == "42"


def test_malformed_content_is_dropped(candle_kernel):
    _, kc = candle_kernel
    # execute_request without "code": cannot parse, must not be executed.
    msg = kc.session.msg("execute_request", {"silent": False})
    kc.shell_channel.send(msg)
    reply = kc.kernel_info(reply=True, timeout=10)
    assert reply["content"]["status"] == "ok"


def test_kernel_info_banner_names_the_device(candle_kernel):
    _, kc = candle_kernel
    reply = kc.kernel_info(reply=True, timeout=10)
    assert "Device: CPU" in reply["content"]["banner"]
    assert reply["content"]["protocol_version"] == "5.3"
