"""academy-rust cells after the speed-ups of issue 18 (third_party/evcxr), through jupyter_client.

Three things changed under a warm cell, and each has a way to go wrong that a user would see:
- a cell's final value is shown with Debug at once when it cannot have an `evcxr_display`
  method (a literal, or a variable of a std type); a type of the user's that has one, or a
  trait of the user's that gives one, must still be shown through it;
- while the manifest is unchanged a cell is compiled by rustc without cargo; a compile error
  must still be reported, the next cell must still compile, and a path dependency whose
  source changes (the manifest does not) must be rebuilt, which only cargo does;
- rust-analyzer sees std as a library now; variable types it infers must stay right as
  cells redefine them.
"""

import textwrap

import pytest

from conftest import run_cell, text_of

CELL = 180  # seconds: the first cells compile the prelude on a slow 2-core machine


def ok(kc, code):
    reply, outputs = run_cell(kc, code, timeout=CELL)
    assert reply["content"]["status"] == "ok", (code, reply["content"].get("ename"), reply["content"].get("evalue"), text_of(outputs))
    return outputs


def result_data(outputs):
    """Every mime bundle the cell showed (execute_result and display_data), merged."""
    data = {}
    for m in outputs:
        if m["msg_type"] in ("execute_result", "display_data"):
            data.update(m["content"]["data"])
    return data


@pytest.fixture(scope="module")
def kc(rust_kernel):
    _, kc = rust_kernel
    ok(kc, "let warm_up = 1;")
    return kc


def test_final_values_of_std_types_show_with_debug(kc):
    assert text_of(ok(kc, "40 + 2")).strip() == "42"
    assert text_of(ok(kc, "let v = vec![1, 2, 3]; v")).strip() == "[1, 2, 3]"
    assert text_of(ok(kc, 'let s = String::from("hi"); s')).strip() == '"hi"'
    # Redefined with another type: the type rust-analyzer infers follows it.
    assert text_of(ok(kc, 'let v = ("a", 2.5); v')).strip() == '("a", 2.5)'
    assert text_of(ok(kc, "v.1 * 2.0")).strip() == "5.0"


def test_a_type_with_its_own_evcxr_display_still_uses_it(kc):
    ok(kc, textwrap.dedent("""\
        pub struct Badge(i32);
        impl Badge {
            pub fn evcxr_display(&self) {
                println!("EVCXR_BEGIN_CONTENT text/html\\n<b>badge {}</b>\\nEVCXR_END_CONTENT", self.0);
            }
        }
    """))
    data = result_data(ok(kc, "let b = Badge(7); b"))
    assert data.get("text/html", "").strip() == "<b>badge 7</b>", data


def test_a_trait_of_the_users_that_gives_vec_a_display_is_still_used(kc):
    ok(kc, textwrap.dedent("""\
        pub trait Chart { fn evcxr_display(&self); }
        impl Chart for Vec<u8> {
            fn evcxr_display(&self) {
                println!("EVCXR_BEGIN_CONTENT text/html\\n<i>{} bars</i>\\nEVCXR_END_CONTENT", self.len());
            }
        }
    """))
    data = result_data(ok(kc, "let bars: Vec<u8> = vec![3, 1, 4]; bars"))
    assert data.get("text/html", "").strip() == "<i>3 bars</i>", data


def test_a_compile_error_between_warm_cells_is_reported_and_the_next_cell_runs(kc):
    ok(kc, "let n = 5;")
    reply, outputs = run_cell(kc, 'let m: i32 = "five";', timeout=CELL)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "CompilationError", reply["content"]
    assert "mismatched types" in reply["content"]["evalue"], reply["content"]
    assert text_of(ok(kc, "n * 2")).strip() == "10"


def test_a_path_dependency_edited_between_cells_is_rebuilt(kc, tmp_path):
    crate = tmp_path / "counter"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text(
        '[package]\nname = "counter"\nversion = "0.1.0"\nedition = "2021"\n')
    lib = crate / "src" / "lib.rs"
    lib.write_text("pub fn value() -> i32 { 1 }\n")
    ok(kc, f':dep counter = {{ path = "{crate}" }}')
    # (A new dependency makes evcxr drop variables of the session's own types, and say so.)
    assert text_of(ok(kc, "counter::value()")).strip().splitlines()[-1] == "1"
    # The manifest is the same; only cargo sees the dependency's new source.
    lib.write_text("pub fn value() -> i32 { 2 }\n")
    assert text_of(ok(kc, "counter::value()")).strip() == "2"
