"""jupyter_console, driven non-interactively, runs a cell on academy-candle."""

import os
import subprocess
import sys
import pathlib


def test_jupyter_console_runs_a_cell_and_prints_its_result(tmp_path):
    jupyter = pathlib.Path(sys.executable).parent / "jupyter"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path))
    proc = subprocess.run(
        [str(jupyter), "console", "--kernel", "academy-candle", "--simple-prompt", "--no-confirm-exit"],
        input='let answer = 6 * 7;\nprint(`the answer is ${answer}`)\nanswer + 1\nexit\n',
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "the answer is 42" in proc.stdout, proc.stdout
    assert "Out[3]: 43" in proc.stdout, proc.stdout
    assert "academy-candle" in proc.stdout  # the banner
