"""Same scores as nbgrader (issue 15, acceptance): one nbgrader 0.9.6 source notebook
(tests/fixtures/nbgrader/ps1.ipynb, cells marked as nbgrader's create_assignment marks
them), python3 submissions graded by the real `nbgrader autograde` from PyPI and by a real
`lab serve` (sandbox on: `--sandbox require`, each submission in a fresh python3 kernel).
Every graded cell gets the same points within 1e-9, or None (left to a person) on both.

The submissions are built from nbgrader's own release (`nbgrader generate_assignment`),
and each one goes to both graders. `same_cases` are compared cell by cell. Where
nbgrader's result is a bug we chose not to copy (the module docs of classroom/src/score.rs,
rebuild.rs and limit.rs), the submission is in `different_cases`, and a test of its own
says what nbgrader does and what we do instead.

nbgrader's `Execute.timeout` and our policy's `cell_timeout_s` are both `TIMEOUT`, so a
cell that sleeps is cut off by both. nbgrader grades one notebook after the other, the
lab as many at once as the machine has cores; both times are printed (`-s` shows them).
"""

import copy
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest

from test_gateway import LAB, VENV_DATA, api, free_port, start_lab
from test_sandbox import landlock_abi

pytestmark = pytest.mark.skipif(landlock_abi() < 6, reason="this Linux lacks Landlock ABI 6")

FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "nbgrader" / "ps1.ipynb"
VENV_BIN = pathlib.Path(sys.executable).parent
COURSE, ASSIGNMENT = "academy", "ps1"
TIMEOUT = 5
EPS = 1e-9
GRADE_IDS = ["test_squares", "test_squares_hidden", "test_mean", "test_accuracy",
             "task_discussion", "explain", "describe"]

# The answers, right ones first.
SQUARES = "def squares(n):\n    return [i * i for i in range(n)]"
MEAN = "def mean(xs):\n    return sum(xs) / len(xs)"
ACCURACY = ("def accuracy(predicted, actual):\n"
            "    return sum(p == a for p, a in zip(predicted, actual)) / len(actual)")
EXPLAIN = "Because `len([])` is 0, and dividing by 0 raises **ZeroDivisionError**."
DESCRIBE = 'def describe():\n    return "the average of the values"'
RIGHT = {"squares": SQUARES, "mean": MEAN, "accuracy": ACCURACY, "explain": EXPLAIN,
         "describe": DESCRIBE}


def accuracy_returning(expr, prelude=""):
    """An `accuracy` whose value the partial-credit test multiplies by 2."""
    return f"{prelude}def accuracy(predicted, actual):\n    return {expr}"


# ---- building submissions from the released notebook -------------------------------------

def grade_id(cell):
    return cell["metadata"].get("nbgrader", {}).get("grade_id")


def index_of(nb, gid):
    return next(i for i, c in enumerate(nb["cells"]) if grade_id(c) == gid)


def answered(released, **answers):
    """The released notebook with these answer cells filled in (a value None keeps the stub)."""
    nb = copy.deepcopy(released)
    for cell in nb["cells"]:
        text = answers.get(grade_id(cell))
        if text is not None:
            cell["source"] = text
    return nb


def right(released, **overrides):
    return answered(released, **{**RIGHT, **overrides})


def edit(nb, gid, **changes):
    cell = nb["cells"][index_of(nb, gid)]
    for key, value in changes.items():
        if key == "points":
            cell["metadata"]["nbgrader"]["points"] = value
        elif key == "cell_type":
            cell["cell_type"] = value
            if value == "markdown":
                cell.pop("outputs", None)
                cell.pop("execution_count", None)
        else:
            cell[key] = value
    return nb


def delete(nb, gid):
    del nb["cells"][index_of(nb, gid)]
    return nb


def insert_after(nb, gid, cell):
    nb["cells"].insert(index_of(nb, gid) + 1, cell)
    return nb


def code_cell(source, cell_id, nbgrader=None):
    c = {"cell_type": "code", "id": cell_id, "metadata": {}, "source": source,
         "outputs": [], "execution_count": None}
    if nbgrader is not None:
        c["metadata"]["nbgrader"] = nbgrader
    return c


def same_cases(released):
    """Submissions both graders must score alike, cell by cell."""
    r = released
    return {
        "e-correct": right(r),
        "e-unanswered": copy.deepcopy(r),
        "e-hardcoded": right(r, squares="def squares(n):\n    return [0, 1, 4][:n]"),
        "e-mean-one-of-three": right(r, mean="def mean(xs):\n    return xs[0]"),
        "e-mean-two-of-three": right(r, mean="def mean(xs):\n    return sum(xs) / 3"),
        "e-error-before-def": right(r, squares='raise ValueError("not done yet")\n' + SQUARES),
        "e-syntax-error": right(r, squares="def squares(n)\n    return [i * i for i in range(n)]"),
        "e-stderr-in-test": right(r, squares=(
            'def squares(n):\n    print("computing", n, file=sys.stderr)\n'
            '    return [i * i for i in range(n)]')),
        "e-warning-in-test": right(r, accuracy=(
            'def accuracy(predicted, actual):\n    warnings.warn("slow path")\n'
            '    return sum(p == a for p, a in zip(predicted, actual)) / len(actual)')),
        "e-prints-everywhere": right(
            r, squares=f'print("squares, stdout")\nprint("squares, stderr", file=sys.stderr)\n{SQUARES}',
            mean='def mean(xs):\n    print("mean of", xs)\n    return sum(xs) / len(xs)'),
        "e-timeout-in-test": right(r, mean="def mean(xs):\n    time.sleep(60)\n    return sum(xs) / len(xs)"),
        "e-timeout-in-answer": right(r, squares=SQUARES + "\ntime.sleep(60)"),
        "e-infinite-loop-in-test": right(
            r, accuracy="def accuracy(predicted, actual):\n    while True:\n        pass"),
        "e-partial-in-range": right(r, accuracy=accuracy_returning("0.3")),
        "e-partial-exactly-max": right(r, accuracy=accuracy_returning("1")),
        "e-partial-zero": right(r, accuracy=accuracy_returning("0.0")),
        "e-partial-bool": right(r, accuracy=accuracy_returning("True")),
        "e-partial-not-a-number": right(r, accuracy=accuracy_returning('"0.75"')),
        "e-partial-fraction": right(r, accuracy=accuracy_returning(
            "Fraction(3, 4)", "from fractions import Fraction\n")),
        "e-partial-padded-text": right(r, accuracy=accuracy_returning("Padded()", (
            "class Padded:\n    def __rmul__(self, other):\n        return self\n"
            "    def __repr__(self):\n        return '\\t0.2_5 \\n'\n"))),
        "e-edited-test": edit(right(r, squares="def squares(n):\n    return []"), "test_squares",
                              source="pass"),
        "e-edited-points": edit(right(r, mean="def mean(xs):\n    return 0"), "test_mean",
                                source="4", points=40),
        "e-deleted-answer": delete(right(r), "squares"),
        "e-answer-retyped-markdown": edit(right(r), "mean", cell_type="markdown"),
        "e-added-scratch-cell": insert_after(right(r), "mean", code_cell('print("scratch")', "scratch-1")),
        "e-manual-answers-left": right(r, explain=None, describe=None),
    }


def different_cases(released):
    """Submissions where nbgrader's result is a bug we chose not to copy."""
    r = released
    relabelled = right(r, describe=None)
    relabelled["cells"][index_of(relabelled, "test_squares")]["metadata"]["nbgrader"]["solution"] = True
    autograded_manual = right(r)
    manual = autograded_manual["cells"][index_of(autograded_manual, "describe")]
    manual["metadata"]["nbgrader"]["solution"] = False
    moved = right(r)
    test = moved["cells"].pop(index_of(moved, "test_squares"))
    moved["cells"].insert(index_of(moved, "squares"), test)
    return {
        "x-partial-above-max": right(r, accuracy=accuracy_returning("3")),
        "x-partial-infinite": right(r, accuracy=accuracy_returning('float("inf")')),
        "x-partial-negative": right(r, accuracy=accuracy_returning("-0.25")),
        "x-partial-nan": right(r, accuracy=accuracy_returning('float("nan")')),
        "x-stderr-after-1000-lines": right(r, squares=(
            'def squares(n):\n    print("\\n".join(map(str, range(1000))))\n'
            '    print("squares is wrong", file=sys.stderr)\n    return [i * i for i in range(n)]')),
        "x-deleted-test": delete(right(r), "test_squares"),
        "x-moved-test": moved,
        "x-answer-in-added-cell": insert_after(
            right(r, squares="def squares(n):\n    return []"), "squares", code_cell(SQUARES, "added-1")),
        "x-test-relabelled-as-answer": relabelled,
        "x-manual-answer-relabelled-as-test": autograded_manual,
        # Graded by nbgrader on its own: it stops the whole autograde run (ABORTS_NBGRADER).
        "x-duplicated-answer": insert_after(
            right(r, squares="def squares(n):\n    return []"), "squares",
            {**copy.deepcopy(r["cells"][index_of(r, "squares")]), "id": "dup-1", "source": SQUARES}),
    }


# Submissions that make `nbgrader autograde` stop for every student after them.
ABORTS_NBGRADER = {"x-duplicated-answer"}


# ---- nbgrader ------------------------------------------------------------------------------

def nbgrader(root, *args, timeout):
    """Runs the venv's nbgrader in course directory `root` (its own config only)."""
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               JUPYTER_CONFIG_DIR=str(root / ".jupyter-config"))
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)


def nbgrader_course(root):
    """A course directory with ps1 generated; returns the released notebook."""
    (root / "source" / ASSIGNMENT).mkdir(parents=True)
    (root / ".jupyter-config").mkdir()
    shutil.copy(FIXTURE, root / "source" / ASSIGNMENT / "ps1.ipynb")
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.course_id = {COURSE!r}\n"
        f"c.Execute.timeout = {TIMEOUT}\n")
    done = nbgrader(root, "generate_assignment", ASSIGNMENT, "--force", timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads((root / "release" / ASSIGNMENT / "ps1.ipynb").read_text())


def nbgrader_autograde(root, submissions, *options, student=None):
    """Puts each submission in submitted/STUDENT/ps1/ and runs `nbgrader autograde` (on
    `student` alone if given, with these command-line options); returns
    {student: {grade_id: auto_score}}, the students nbgrader reported an error for, the
    seconds it took and its log."""
    for name, nb in submissions.items():
        folder = root / "submitted" / name / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / "ps1.ipynb").write_text(json.dumps(nb))
    started = time.monotonic()
    only = ["--student", student] if student else []
    done = nbgrader(root, "autograde", ASSIGNMENT, "--force", *only, *options, timeout=900)
    seconds = time.monotonic() - started
    failed = set(re.findall(r"error processing assignment 'ps1' for student '([^']+)'", done.stderr))
    if student is None:
        assert done.returncode == 0 or failed, done.stderr[-5000:]

    from nbgrader.api import Gradebook, MissingEntry
    scores = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", COURSE) as gb:
        for name in submissions:
            try:
                nb = gb.find_submission_notebook("ps1", ASSIGNMENT, name)
            except MissingEntry:
                continue
            scores[name] = {g.name: g.auto_score for g in nb.grades}
    return {"scores": scores, "failed": failed, "seconds": seconds, "log": done.stderr,
            "returncode": done.returncode}


@pytest.fixture(scope="module")
def graded_by_nbgrader(tmp_path_factory):
    root = tmp_path_factory.mktemp("nbgrader-course")
    released = nbgrader_course(root)
    subs = {**same_cases(released), **different_cases(released)}
    run = nbgrader_autograde(root, {s: nb for s, nb in subs.items() if s not in ABORTS_NBGRADER})
    print(f"\nnbgrader autograde: {len(subs) - len(ABORTS_NBGRADER)} submissions in {run['seconds']:.1f} s")
    return {**run, "root": root, "released": released, "submissions": subs}


# ---- the lab -------------------------------------------------------------------------------

def add_user(data, name, role):
    return subprocess.run([str(LAB), "user", "add", name, "--role", role, "--data-dir", str(data)],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`lab serve` as shipped: the sandbox required, the grader on."""
    data = tmp_path_factory.mktemp("lab-data")
    port = free_port()
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn")
    proc, token, printed = start_lab(data, port, env)
    assert "Kernels: confined" in printed, printed
    yield {"url": f"http://127.0.0.1:{port}", "token": token, "data": data, "proc": proc}
    proc.terminate()
    proc.wait(timeout=30)


def wait_graded(lab, trainer, ids, timeout):
    """Polls until every submission is graded or failed; returns {id: submission}."""
    deadline = time.monotonic() + timeout
    done = {}
    while len(done) < len(ids):
        for sid in ids:
            if sid in done:
                continue
            status, sub = api(lab["url"], f"/api/submissions/{sid}", trainer)
            assert status == 200, sub
            if sub["state"] in ("graded", "failed"):
                done[sid] = sub
        if len(done) < len(ids):
            assert time.monotonic() < deadline, f"not graded in {timeout} s: {set(ids) - set(done)}"
            time.sleep(0.2)
    return done


@pytest.fixture(scope="module")
def graded_by_lab(lab, graded_by_nbgrader):
    base, path = lab["url"], f"/api/courses/{COURSE}/assignments/{ASSIGNMENT}"
    trainer = add_user(lab["data"], "trainer-t", "trainer")
    source = json.loads(FIXTURE.read_text())
    status, a = api(base, path, trainer, "PUT",
                    {"notebook": source, "policy": {"cell_timeout_s": TIMEOUT}})
    assert status == 200, a
    assert api(base, path, trainer, "PATCH", {"released": True})[0] == 200

    subs = graded_by_nbgrader["submissions"]
    tokens = {student: add_user(lab["data"], student, "engineer") for student in subs}
    started = time.monotonic()
    ids = {}
    for student, nb in subs.items():
        status, sub = api(base, f"{path}/submissions", tokens[student], "POST", {"notebook": nb})
        assert status == 201, sub
        ids[student] = sub["id"]
    graded = wait_graded(lab, trainer, list(ids.values()), timeout=600)
    seconds = time.monotonic() - started
    print(f"\nlab serve: {len(subs)} submissions in {seconds:.1f} s")
    failed = {s: graded[i]["reason"] for s, i in ids.items() if graded[i]["state"] != "graded"}
    assert not failed, failed

    status, book = api(base, f"{path}/gradebook", trainer)
    assert status == 200, book
    scores = {row["user"]: row["cells"] for row in book["rows"]}
    assert set(scores) == set(subs), book
    # The gradebook agrees with each submission's own (staff) view.
    for student, sid in ids.items():
        cells = {c["grade_id"]: c["points"] for c in graded[sid]["feedback"]["cells"]}
        assert cells == scores[student], (student, cells, scores[student])
    return {"scores": scores, "submissions": {s: graded[i] for s, i in ids.items()},
            "tokens": tokens, "trainer": trainer, "seconds": seconds}


def same(a, b):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= EPS


# ---- the comparison ------------------------------------------------------------------------

def test_the_released_copy_is_nbgrader_generate_assignments(lab, graded_by_lab, graded_by_nbgrader):
    """What an engineer fetches has nbgrader's cells: the same text (stubs in place of
    solutions, hidden tests gone), cell types, nbgrader metadata and checksums."""
    engineer = graded_by_lab["tokens"]["e-correct"]
    status, _ = api(lab["url"], f"/api/courses/{COURSE}/assignments/{ASSIGNMENT}/fetch", engineer, "POST")
    assert status == 201
    status, copy_ = api(lab["url"], f"/api/contents/{COURSE}/{ASSIGNMENT}.ipynb", engineer)
    assert status == 200, copy_
    ours, theirs = copy_["content"]["cells"], graded_by_nbgrader["released"]["cells"]
    assert len(ours) == len(theirs)

    def text(c):
        return c["source"] if isinstance(c["source"], str) else "".join(c["source"])
    for a, b in zip(ours, theirs):
        assert (a["cell_type"], text(a)) == (b["cell_type"], text(b))
        assert a["metadata"] == b["metadata"], (a["metadata"], b["metadata"])


def test_every_submission_gets_nbgraders_points_per_cell(graded_by_lab, graded_by_nbgrader):
    """At least 20 submissions (right, partly right, erroring, timing out, partial credit,
    cells deleted, edited, retyped or duplicated, printing to stderr): the same points in
    every graded cell as `nbgrader autograde`, within 1e-9; None (a person grades it) where
    nbgrader has None."""
    cases = same_cases(graded_by_nbgrader["released"])
    assert len(cases) >= 20
    assert not graded_by_nbgrader["failed"] & set(cases), graded_by_nbgrader["log"][-3000:]
    mismatches = []
    for student in cases:
        theirs = graded_by_nbgrader["scores"][student]
        ours = graded_by_lab["scores"][student]
        assert set(ours) == set(GRADE_IDS) and set(theirs) <= set(GRADE_IDS), (ours, theirs)
        for gid in GRADE_IDS:
            if not same(ours.get(gid), theirs.get(gid)):
                mismatches.append((student, gid, "nbgrader", theirs.get(gid), "lab", ours.get(gid)))
    assert not mismatches, "\n".join(map(str, mismatches))
    total = len(graded_by_nbgrader["submissions"])
    print(f"\n{len(cases)} submissions with the same points per cell; nbgrader autograde graded "
          f"{total - len(ABORTS_NBGRADER)} in {graded_by_nbgrader['seconds']:.1f} s (one at a time), "
          f"the lab all {total} in {graded_by_lab['seconds']:.1f} s")
    # The set really covers what it says: full marks, zero, partial and manual cells.
    scores = graded_by_lab["scores"]
    assert scores["e-correct"] == {"test_squares": 2.0, "test_squares_hidden": 3.0, "test_mean": 4.0,
                                   "test_accuracy": 1.5, "task_discussion": None, "explain": None,
                                   "describe": None}
    assert scores["e-mean-one-of-three"]["test_mean"] == 4 / 3
    assert scores["e-timeout-in-test"]["test_mean"] == 0.0
    assert scores["e-timeout-in-answer"]["test_squares"] == 2.0
    assert scores["e-partial-padded-text"]["test_accuracy"] == 0.25
    assert scores["e-unanswered"]["explain"] == 0.0 and scores["e-unanswered"]["describe"] == 0.0


def test_timed_out_cells_say_so(graded_by_lab):
    """A test cell cut off at the cell timeout fails with a timeout, as nbgrader's does."""
    sub = graded_by_lab["submissions"]["e-timeout-in-test"]
    cell = next(c for c in sub["feedback"]["cells"] if c["grade_id"] == "test_mean")
    assert cell["status"] == "failed"
    assert "KeyboardInterrupt" in cell["output"] or "CellTimeoutError" in cell["output"], cell


# ---- where nbgrader is wrong: what it does, and what we do instead --------------------------

def cells(graded, student):
    return graded["scores"][student]


def test_partial_credit_above_the_maximum_is_capped_where_nbgrader_fails_the_notebook(
        graded_by_lab, graded_by_nbgrader):
    """A test cell whose result is above its points (2 × 3 = 6 of 2; inf): nbgrader raises
    ValueError and grades nothing after that cell of the notebook; we give the maximum."""
    nbg = graded_by_nbgrader
    for student in ("x-partial-above-max", "x-partial-infinite"):
        assert student in nbg["failed"], nbg["log"][-3000:]
        assert cells(nbg, student)["test_accuracy"] is None
        assert cells(graded_by_lab, student)["test_accuracy"] == 2.0
    assert "partial credit cannot be greater than maximum points" in nbg["log"]


def test_negative_or_nan_partial_credit_is_zero_where_nbgrader_gives_full_points(
        graded_by_lab, graded_by_nbgrader):
    """nbgrader gives full points for a negative result ("strange value") and for NaN
    (`nan >= 0` is false); we give 0."""
    for student in ("x-partial-negative", "x-partial-nan"):
        assert cells(graded_by_nbgrader, student)["test_accuracy"] == 2.0
        assert cells(graded_by_lab, student)["test_accuracy"] == 0.0


def test_stderr_after_1000_lines_still_fails_the_cell(graded_by_lab, graded_by_nbgrader):
    """nbgrader's LimitOutput drops stream outputs after 1000 lines, stderr included, so
    a test cell that printed 1000 lines first gets full points; ours keeps the stderr."""
    for gid, points in (("test_squares", 2.0), ("test_squares_hidden", 3.0)):
        assert cells(graded_by_nbgrader, "x-stderr-after-1000-lines")[gid] == points
        assert cells(graded_by_lab, "x-stderr-after-1000-lines")[gid] == 0.0


def test_a_deleted_test_cell_is_run_from_the_source(graded_by_lab, graded_by_nbgrader):
    """nbgrader does not run a test cell the submission lacks (its grade stays None,
    for a person) unless the course sets `OverwriteCells.add_missing_cells`; we always
    run the source's, and score as nbgrader does with that option."""
    student = "x-deleted-test"
    assert cells(graded_by_nbgrader, student)["test_squares"] is None
    assert cells(graded_by_lab, student)["test_squares"] == 2.0
    again = "x-deleted-test-readded"
    run = nbgrader_autograde(graded_by_nbgrader["root"], {again: graded_by_nbgrader["submissions"][student]},
                             "--OverwriteCells.add_missing_cells=True", student=again)
    assert run["returncode"] == 0, run["log"][-3000:]
    for gid in GRADE_IDS:
        assert same(run["scores"][again].get(gid), cells(graded_by_lab, student)[gid]), gid


def test_a_duplicated_answer_cell_is_graded_once_where_nbgrader_stops(graded_by_lab, graded_by_nbgrader):
    """An answer cell pasted twice (a wrong copy, then the right one): nbgrader's
    DeduplicateIds empties the first copy's metadata, CheckCellMetadata then takes it for
    an old format and `nbgrader autograde` stops, grading no student after this one; we
    grade the last copy."""
    student = "x-duplicated-answer"
    run = nbgrader_autograde(graded_by_nbgrader["root"],
                             {student: graded_by_nbgrader["submissions"][student]}, student=student)
    assert run["returncode"] != 0 and "use an old version" in run["log"], run["log"][-3000:]
    assert all(v is None for v in run["scores"][student].values()), run["scores"]
    assert cells(graded_by_lab, student)["test_squares"] == 2.0
    assert cells(graded_by_lab, student)["test_squares_hidden"] == 3.0
    assert any("appears 2 times" in n for n in graded_by_lab["submissions"][student]["notes"])


def test_cells_run_in_the_sources_order(graded_by_lab, graded_by_nbgrader):
    """A test cell moved above its answer: nbgrader runs the engineer's order (NameError,
    0); we run the source's."""
    assert cells(graded_by_nbgrader, "x-moved-test")["test_squares"] == 0.0
    assert cells(graded_by_lab, "x-moved-test")["test_squares"] == 2.0


def test_only_answer_cells_come_from_the_submission(graded_by_lab, graded_by_nbgrader):
    """An added cell redefining the answer after a wrong answer cell: nbgrader runs it
    between the answer and the tests (full points); we grade the answer cell."""
    student = "x-answer-in-added-cell"
    assert cells(graded_by_nbgrader, student)["test_squares"] == 2.0
    assert cells(graded_by_lab, student)["test_squares"] == 0.0
    assert any("added or edited" in n for n in graded_by_lab["submissions"][student]["notes"])


def test_a_test_cell_relabelled_as_an_answer_is_still_graded(graded_by_lab, graded_by_nbgrader):
    """`solution: true` on a test cell: nbgrader restores its source but not the flag, its
    checksum check raises and the notebook is not graded; we grade it as the source says."""
    student = "x-test-relabelled-as-answer"
    assert student in graded_by_nbgrader["failed"]
    assert "Inconsistent checksums" in graded_by_nbgrader["log"]
    ours = cells(graded_by_lab, student)
    assert ours["test_squares"] == 2.0 and ours["test_accuracy"] == 1.5 and ours["describe"] == 0.0


def test_a_manual_answer_relabelled_as_a_test_is_not_autograded(graded_by_lab, graded_by_nbgrader):
    """`solution: false` on a manually graded code answer: nbgrader autogrades it (full
    points when it runs); we ignore a cell that lost its answer flag, so it is graded as
    the unanswered stub."""
    student = "x-manual-answer-relabelled-as-test"
    assert cells(graded_by_nbgrader, student)["describe"] == 1.0
    assert cells(graded_by_lab, student)["describe"] == 0.0
    assert any("no longer marked as an answer" in n for n in graded_by_lab["submissions"][student]["notes"])
