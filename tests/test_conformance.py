"""The Jupyter project's kernel conformance suite, jupyter_kernel_test, for both kernels."""

import unittest

import jupyter_kernel_test


class AcademyCandleConformance(jupyter_kernel_test.KernelTests):
    kernel_name = "academy-candle"
    language_name = "rhai"
    file_extension = ".rhai"

    code_hello_world = 'print("hello, world")'
    code_stderr = 'eprint("a warning on stderr")'
    completion_samples = [
        {"text": "let learning_rate = 1; learning_r", "matches": {"learning_rate"}},
        {"text": "make_mo", "matches": {"make_moons"}},
    ]
    complete_code_samples = ["let x = 1;", "fn f(a) { a + 1 }", "zeros([2, 2])"]
    incomplete_code_samples = ["fn f(a) {", "let t = tensor([[1.0, 2.0],", "for i in 0..10 {"]
    invalid_code_samples = ["let = 5;", "fn (a) }"]
    code_generate_error = 'throw "boom"'
    code_execute_result = [
        {"code": "6 * 7", "result": "42"},
        {"code": "tensor([1.0, 2.0]).sum().item()", "result": "3"},
        {"code": '"ab" + "cd"', "result": "abcd"},
    ]
    code_display_data = [
        {"code": 'html("<b>bold</b>")', "mime": "text/html"},
        {"code": "plot([3.0, 2.0, 1.5, 1.2], \"loss\")", "mime": "image/svg+xml"},
        {"code": "image(rand([8, 8]))", "mime": "image/png"},
        {"code": "display(ones([2, 2]))", "mime": "text/html"},
    ]
    # jupyter-protocol 2.0.3 cannot parse a search request that omits `unique`
    # or `n` (jupyter_client omits them), so search is not claimed here; the
    # kernel implements it for clients that send both (see test_history.py).
    supported_history_operations = ("tail", "range")
    code_inspect_sample = "make_moons"
    code_clear_output = "clear_output()"


class AcademyRustConformance(jupyter_kernel_test.KernelTests):
    kernel_name = "academy-rust"
    language_name = "rust"
    file_extension = ".rs"

    code_hello_world = 'println!("hello, world");'
    code_stderr = 'eprintln!("a warning on stderr");'
    completion_samples = [
        {"text": "let learning_rate = 1;\nlearning_r", "matches": {"learning_rate"}},
    ]
    complete_code_samples = ["let x = 1;", "fn f(a: i32) -> i32 { a + 1 }", '"{"']
    incomplete_code_samples = ["fn f(a: i32) {", "let v = vec![1,", 'let s = "abc']
    invalid_code_samples = ["let x = (1];", "}"]
    code_generate_error = "let x: i32 = \"not a number\";"
    code_execute_result = [
        {"code": "6 * 7", "result": "42"},
        {"code": "format!(\"{}-{}\", 1, 2)", "result": '"1-2"'},
    ]
    code_display_data = [
        {"code": 'display_html("<b>bold</b>");', "mime": "text/html"},
    ]
    # jupyter-protocol 2.0.3 cannot parse a search request that omits `unique`
    # or `n` (jupyter_client omits them), so search is not claimed here; the
    # kernel implements it for clients that send both (see test_history.py).
    supported_history_operations = ("tail", "range")
    code_inspect_sample = "Vec"

    # jupyter_kernel_test gives a reply 15 s. A Rust cell compiles, and the first one of a
    # kernel also analyses the standard library (rust-analyzer): on a slow 2-core machine
    # that alone can take longer. Conformance is about the messages, not the speed
    # (which scripts/bench-kernels measures), so Rust cells get two minutes.
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        jupyter_kernel_test.TIMEOUT = 120  # read at call time by the suite's helpers
        # Warm the kernel (prelude, standard library analysis) before the timed helpers run.
        cls.kc.execute_interactive("let warm_up = 1;", timeout=600)

    @classmethod
    def tearDownClass(cls):
        jupyter_kernel_test.TIMEOUT = 15
        super().tearDownClass()

    def execute_helper(self, code, timeout=120, **kwargs):
        return super().execute_helper(code, timeout=timeout, **kwargs)

    def history_helper(self, execute_first, timeout=120, **histargs):
        return super().history_helper(execute_first, timeout=timeout, **histargs)


if __name__ == "__main__":
    unittest.main()
