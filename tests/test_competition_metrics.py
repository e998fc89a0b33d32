"""Competition metrics agree with scikit-learn (issue 16).

tests/competition_fixtures.py makes every case with scikit-learn from this
venv (MAP@K with Kaggle's ml_metrics reference); each is scored by the real
`lab competition score`, which runs the same checks and metric code as the
gateway, and both boards must agree to 1e-9. Where scikit-learn calls a
metric undefined, `lab` must refuse, saying why, instead of printing a number.
"""

import json
import subprocess
from pathlib import Path

import pytest

from competition_fixtures import cases, to_csv

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "target" / "debug" / "lab"
CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_metric_agrees_with_scikit_learn(case, tmp_path):
    solution = tmp_path / "solution.csv"
    submission = tmp_path / "submission.csv"
    solution.write_text(to_csv(case["solution"]))
    submission.write_text(to_csv(case["submission"]))
    r = subprocess.run([str(LAB), "competition", "score", *case["flags"], str(solution), str(submission)],
                       capture_output=True, text=True, timeout=60)
    expected = case["expected"]
    if None in expected.values():
        undefined = [board for board, v in expected.items() if v is None]
        assert r.returncode != 0, f"scikit-learn: undefined on {undefined}; lab printed {r.stdout}"
        assert "not defined" in r.stderr or "need" in r.stderr, r.stderr
        return
    assert r.returncode == 0, r.stderr
    ours = json.loads(r.stdout)
    for board in ("public", "private"):
        assert ours[board] == pytest.approx(expected[board], abs=1e-9, rel=0), (board, ours, expected)


def test_the_cases_cover_every_metric():
    names = {c["flags"][c["flags"].index("--metric") + 1] for c in CASES}
    r = subprocess.run([str(LAB), "competition", "score", "--metric", "nope", "s.csv", "p.csv"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    listed = r.stderr.split("unknown metric; one of ")[1].splitlines()[0].strip()
    assert names == {m.strip() for m in listed.split(",")}, (names, listed)
