"""academy-rust cells after the speed-ups of issue 18 (third_party/evcxr), through jupyter_client.

Each change under a warm cell has a way to go wrong that a user would see:
- a cell's final value is shown with Debug at once when it cannot have an `evcxr_display`
  method (a literal, or a variable of a std type); a type that has one (also behind a `Box` or
  an `Rc`), or a trait that gives one (the session's own, or a dependency's through a glob
  import), must still be shown through it. `:timing` lists evcxr's phases, and a second
  compile to fall back shows there as "Fallback": the tests use it to see which path a cell
  took;
- while the manifest is unchanged a cell is compiled by rustc without cargo (`:timing` says
  "Final compile by rustc"); a compile error
  must still be reported, `:env` must still reach the compiler, and a path dependency whose
  source changes (the manifest does not) must be rebuilt, which only cargo does;
- rust-analyzer sees std as a library and warms up in the background; the variable types it
  infers must stay right as cells redefine them;
- the prelude is built as soon as a client has asked for kernel_info, before the first cell,
  then warm-up cells whose variables are forgotten; nothing of it reaches the client, and an
  interrupt during it stops the cell that waits.
Tests that change what a session's code may display get a kernel of their own.
"""

import os
import queue
import textwrap
import time

import pytest
from jupyter_client.manager import start_new_kernel

from conftest import run_cell, text_of

CELL = 180  # seconds: the first cells compile the prelude on a slow 2-core machine


def ok(kc, code):
    reply, outputs = run_cell(kc, code, timeout=CELL)
    content = reply["content"]
    assert content["status"] == "ok", (code, content.get("ename"), content.get("evalue"),
                                       text_of(outputs))
    return outputs


def value(outputs):
    """The cell's text/plain result (execute_result), without `:timing`'s line."""
    results = [m["content"]["data"].get("text/plain", "") for m in outputs
               if m["msg_type"] == "execute_result"]
    return "".join(results).strip()


def timing(outputs):
    lines = [m["content"]["data"]["text/plain"] for m in outputs
             if m["msg_type"] == "display_data"
             and m["content"]["data"].get("text/plain", "").startswith("Took ")]
    assert len(lines) == 1, outputs
    return lines[0]


def html(outputs):
    data = {}
    for m in outputs:
        if m["msg_type"] in ("execute_result", "display_data"):
            data.update(m["content"]["data"])
    return data.get("text/html", "").strip()


@pytest.fixture
def fresh():
    km, kc = start_new_kernel(kernel_name="academy-rust", startup_timeout=120)
    ok(kc, "let warm_up = 1;")
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kc(rust_kernel):
    _, kc = rust_kernel
    ok(kc, "let warm_up = 1;")
    return kc


def badge_type(name, tag):
    return textwrap.dedent(f"""\
        pub struct {name}(i32);
        impl {name} {{
            pub fn evcxr_display(&self) {{
                println!("EVCXR_BEGIN_CONTENT text/html\\n<{tag}>{{}}</{tag}>\\nEVCXR_END_CONTENT", self.0);
            }}
        }}
    """)


def path_crate(tmp_path, name, lib_rs):
    """A local crate for `:dep NAME = { path = ... }`; returns its folder and its lib.rs."""
    crate = tmp_path / name
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n')
    lib = crate / "src" / "lib.rs"
    lib.write_text(lib_rs)
    return crate, lib


def test_std_values_show_with_debug_in_one_compile(fresh):
    ok(fresh, ":timing")
    for code, shown in [
        ("42", "42"),
        ("let v = vec![1, 2, 3]; v", "[1, 2, 3]"),
        ('let s = String::from("hi"); s', '"hi"'),
        # Redefined with another type: the type rust-analyzer infers follows it.
        ('let v = ("a", 2.5); v', '("a", 2.5)'),
    ]:
        out = ok(fresh, code)
        assert value(out) == shown, (code, out)
        assert "Fallback" not in timing(out), (code, timing(out))
    # A type of the session's own may have the method: tried first, then Debug.
    ok(fresh, "#[derive(Debug)] pub struct Point(i32);")
    out = ok(fresh, "let p = Point(3); p")
    assert value(out) == "Point(3)"
    assert "Fallback" in timing(out), timing(out)


def test_an_evcxr_display_is_still_found_directly_and_through_box_and_rc(fresh):
    ok(fresh, badge_type("Badge", "b"))
    assert html(ok(fresh, "let b = Badge(7); b")) == "<b>7</b>"
    assert html(ok(fresh, "let boxed = Box::new(Badge(8)); boxed")) == "<b>8</b>"
    assert html(ok(fresh, "let shared = std::rc::Rc::new(Badge(9)); shared")) == "<b>9</b>"


def test_a_trait_of_the_sessions_that_gives_std_types_a_display_is_still_used(fresh):
    ok(fresh, textwrap.dedent("""\
        pub trait Chart { fn evcxr_display(&self); }
        impl Chart for Vec<u8> {
            fn evcxr_display(&self) {
                println!("EVCXR_BEGIN_CONTENT text/html\\n<i>{} bars</i>\\nEVCXR_END_CONTENT", self.len());
            }
        }
        impl Chart for str {
            fn evcxr_display(&self) {
                println!("EVCXR_BEGIN_CONTENT text/html\\n<u>{}</u>\\nEVCXR_END_CONTENT", self);
            }
        }
    """))
    assert html(ok(fresh, "let bars: Vec<u8> = vec![3, 1, 4]; bars")) == "<i>3 bars</i>"
    assert html(ok(fresh, '"hi"')) == "<u>hi</u>"
    # Types the trait does not cover fall back to Debug. evcxr 0.22 reported rustc's note
    # about the trait instead, and every such cell failed.
    ok(fresh, "let n = 5;")
    assert value(ok(fresh, "n * 2")) == "10"


def test_a_dependencys_trait_imported_by_glob_is_still_used(fresh, tmp_path):
    crate, _ = path_crate(tmp_path, "charts", textwrap.dedent("""\
        pub mod prelude {
            pub trait Show { fn evcxr_display(&self); }
            impl Show for Vec<i64> {
                fn evcxr_display(&self) {
                    println!("EVCXR_BEGIN_CONTENT text/html\\n<s>{:?}</s>\\nEVCXR_END_CONTENT", self);
                }
            }
        }
    """))
    ok(fresh, f':dep charts = {{ path = "{crate}" }}')
    ok(fresh, "use charts::prelude::*;")
    assert html(ok(fresh, "let xs: Vec<i64> = vec![1, 2]; xs")) == "<s>[1, 2]</s>"


def built_by(outputs):
    """Which tool built the cell's crate, from `:timing`'s phases."""
    phases = timing(outputs)
    assert "Final compile" in phases, phases
    return "rustc" if "Final compile by rustc" in phases else "cargo"


def test_a_warm_cell_skips_cargo_until_something_cargo_reads_changes(fresh, tmp_path):
    ok(fresh, ":timing")
    ok(fresh, "let a = 1; a")
    assert built_by(ok(fresh, "let b = 2; b")) == "rustc"
    # `:env` changes what cargo passes on: cargo once, then rustc alone again.
    ok(fresh, ":env ACADEMY_TEST_FLAVOUR=plain")
    assert built_by(ok(fresh, "let c = 3; c")) == "cargo"
    assert built_by(ok(fresh, "let d = 4; d")) == "rustc"
    # A path dependency's sources can change under an unchanged manifest: cargo for good.
    crate, _ = path_crate(tmp_path, "seven", "pub fn seven() -> i32 { 7 }\n")
    ok(fresh, f':dep seven = {{ path = "{crate}" }}')
    for code in ("seven::seven()", "seven::seven() + 1"):
        assert built_by(ok(fresh, code)) == "cargo", code


def test_a_compile_error_between_warm_cells_is_reported_and_the_next_cell_runs(kc):
    ok(kc, "let n = 5;")
    reply, _ = run_cell(kc, 'let m: i32 = "five";', timeout=CELL)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "CompilationError", reply["content"]
    assert "mismatched types" in reply["content"]["evalue"], reply["content"]
    assert value(ok(kc, "n * 2")) == "10"


def test_env_reaches_the_compiler_of_later_cells(kc):
    ok(kc, ":env ACADEMY_TEST_FLAVOUR=plain")
    assert value(ok(kc, 'env!("ACADEMY_TEST_FLAVOUR")')) == '"plain"'
    ok(kc, ":env ACADEMY_TEST_FLAVOUR=spicy")
    assert value(ok(kc, 'env!("ACADEMY_TEST_FLAVOUR")')) == '"spicy"'


def test_a_path_dependency_edited_between_cells_is_rebuilt(kc, tmp_path):
    crate, lib = path_crate(tmp_path, "counter", "pub fn value() -> i32 { 1 }\n")
    ok(kc, f':dep counter = {{ path = "{crate}" }}')
    assert value(ok(kc, "counter::value()")) == "1"
    # The manifest is the same; only cargo sees the dependency's new source.
    lib.write_text("pub fn value() -> i32 { 2 }\n")
    assert value(ok(kc, "counter::value()")) == "2"


@pytest.fixture
def warming_up(tmp_path):
    """A fresh kernel (its TMPDIR in `tmp_path`) whose warm-up, queued by the client's
    kernel_info, has begun building its second cell, after the prelude and the first: evcxr
    writes each build's source into its session crate. No cell has been sent."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    km, kc = start_new_kernel(kernel_name="academy-rust", startup_timeout=120, env=env)
    try:
        deadline = time.monotonic() + CELL
        building = False
        while time.monotonic() < deadline and not building:
            building = any("academy_warm_up_2" in lib.read_text(errors="replace")
                           for lib in tmp_path.glob("*/src/lib.rs"))
            time.sleep(0.05)
        assert building, "no cell was sent, and the warm-up was not built within the timeout"
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_the_prelude_is_built_before_the_first_cell_asks(warming_up):
    """A session's first cell no longer waits for the prelude's build: the kernel builds it
    as soon as a client has asked for kernel_info, before any cell is sent, then warm-up
    cells (the fixture waits for them). Nothing of it reaches the client, the warm-up's
    variables are not the user's, and the first cell runs in the child the prelude
    prepared (a panic is the cell's error, which only the prelude's hook reports)."""
    kc = warming_up
    seen = []
    while True:
        try:
            seen.append(kc.get_iopub_msg(timeout=1))
        except queue.Empty:
            break
    assert all(m["msg_type"] == "status" for m in seen), seen
    reply, outputs = run_cell(kc, "academy_warm_up", timeout=CELL)
    assert reply["content"]["status"] == "error", reply["content"]
    assert "cannot find value `academy_warm_up`" in reply["content"]["evalue"], reply
    # Only the cell's own error: nothing of the warm-up's.
    shown = [m["msg_type"] for m in outputs if m["msg_type"] != "status"]
    assert shown == ["execute_input", "error"], outputs
    assert "academy_warm_up" not in text_of(ok(kc, ":vars"))
    reply, outputs = run_cell(kc, 'panic!("boom");', timeout=CELL)
    assert reply["content"]["status"] == "error", reply["content"]
    assert "boom" in reply["content"]["evalue"], reply["content"]
    assert value(ok(kc, "let after = 40 + 2; after")) == "42"


def test_an_interrupt_while_the_kernel_warms_up_stops_the_cell_that_waits(warming_up):
    """A cell sent during the warm-up waits for the warm-up cell under way; an interrupt
    then must stop that cell (it would otherwise run, since the interrupt only ended the
    warm-up's child), and the session goes on."""
    kc = warming_up
    msg_id = kc.execute("loop { std::thread::sleep(std::time::Duration::from_millis(10)); }")
    # The kernel has taken the cell (it waits behind the warm-up) before the interrupt.
    while True:
        msg = kc.get_iopub_msg(timeout=CELL)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
            break
    kc.control_channel.send(kc.session.msg("interrupt_request", {}))
    reply = kc.get_shell_msg(timeout=CELL)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=CELL)
    assert reply["content"]["status"] == "error", reply["content"]
    assert reply["content"]["ename"] == "KeyboardInterrupt", reply["content"]
    assert value(ok(kc, "let after = 40 + 2; after")) == "42"
