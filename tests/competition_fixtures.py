"""Metric fixtures for competitions (issue 16), generated with scikit-learn.

Each case is a solution (id, target, Usage), a submission (id and the
prediction columns) and what scikit-learn says of each board, or None where
scikit-learn calls the metric undefined (it raises, or returns NaN). MAP@K
is not in scikit-learn; `apk` below is Kaggle's ml_metrics reference, which
competitions use.

    python tests/competition_fixtures.py OUT_DIR   # writes OUT_DIR/<case>/...

and tests/test_competition_metrics.py imports `cases()` directly.
"""

import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

RNG_SEED = 20261203


def apk(actual, predicted, k):
    """ml_metrics.average_precision.apk, verbatim in behaviour."""
    if len(predicted) > k:
        predicted = predicted[:k]
    score = 0.0
    num_hits = 0.0
    for i, p in enumerate(predicted):
        if p in actual and p not in predicted[:i]:
            num_hits += 1.0
            score += num_hits / (i + 1.0)
    if not actual:
        return 0.0
    return score / min(len(actual), k)


def mapk(actual, predicted, k):
    return float(np.mean([apk(a, p, k) for a, p in zip(actual, predicted)]))


def usage(rng, n, ignored=0.1):
    u = rng.choice(["Public", "Private", "Ignored"], size=n, p=[(1 - ignored) / 2, (1 - ignored) / 2, ignored])
    u[0], u[1] = "Public", "Private"
    return u


def boards(u, fn):
    """fn(mask) for the Public and the Private rows; None when undefined."""
    out = {}
    for board in ("Public", "Private"):
        mask = u == board
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                v = float(fn(mask))
        except ValueError:
            v = None
        out[board.lower()] = None if v is None or math.isnan(v) else v
    return out


def case(name, flags, target, u, columns, expected, target_name="target"):
    """columns: {name: values} of the submission, besides the id."""
    return {
        "name": name,
        "flags": flags,
        "solution": {"id": [f"r{i}" for i in range(len(target))], target_name: list(target), "Usage": list(u)},
        "submission": {"id": [f"r{i}" for i in range(len(target))], **{k: list(v) for k, v in columns.items()}},
        "expected": expected,
    }


def cases():
    rng = np.random.default_rng(RNG_SEED)
    out = []
    n = 3000

    # Labels: multiclass strings, and binary 0/1.
    classes = np.array(["cat", "dog", "emu", "yak"])
    t = rng.choice(classes, size=n, p=[0.5, 0.3, 0.15, 0.05])
    p = np.where(rng.random(n) < 0.7, t, rng.choice(classes, size=n))
    u = usage(rng, n)
    out.append(case("accuracy", ["--metric", "accuracy"], t, u, {"target": p},
                    boards(u, lambda m: skm.accuracy_score(t[m], p[m]))))
    out.append(case("balanced_accuracy", ["--metric", "balanced_accuracy"], t, u, {"target": p},
                    boards(u, lambda m: skm.balanced_accuracy_score(t[m], p[m]))))
    # A class only predicted, never true, on the Public board: sklearn drops it.
    p2 = p.copy()
    p2[:50] = "yak"
    t2 = np.where((t == "yak") & (u == "Public"), "cat", t)
    out.append(case("balanced_accuracy_predicted_only_class", ["--metric", "balanced_accuracy"], t2, u, {"target": p2},
                    boards(u, lambda m: skm.balanced_accuracy_score(t2[m], p2[m]))))
    for name, fn in (("f1", skm.f1_score), ("precision", skm.precision_score), ("recall", skm.recall_score)):
        for average in ("macro", "micro"):
            out.append(case(f"{name}_{average}", ["--metric", name, "--average", average], t2, u, {"target": p2},
                            boards(u, lambda m, fn=fn, average=average: fn(t2[m], p2[m], average=average))))
        tb = rng.choice(["0", "1"], size=n, p=[0.8, 0.2])
        pb = np.where(rng.random(n) < 0.75, tb, rng.choice(["0", "1"], size=n))
        out.append(case(f"{name}_binary", ["--metric", name, "--average", "binary", "--positive", "1"], tb, u,
                        {"target": pb}, boards(u, lambda m, fn=fn: fn(tb[m], pb[m], pos_label="1"))))
        # Nothing predicted positive: zero_division's 0 for precision and F1.
        none = np.full(n, "0")
        out.append(case(f"{name}_binary_none_predicted", ["--metric", name, "--average", "binary", "--positive", "1"],
                        tb, u, {"target": none}, boards(u, lambda m, fn=fn: fn(tb[m], none[m], pos_label="1"))))

    # ROC AUC: continuous scores, and coarse scores full of ties.
    y = rng.choice(["neg", "pos"], size=n, p=[0.7, 0.3])
    score = rng.normal(size=n) + (y == "pos") * 0.8
    for name, s in (("roc_auc", score), ("roc_auc_ties", np.round(score, 0))):
        out.append(case(name, ["--metric", "roc_auc", "--positive", "pos"], y, u, {"target": s},
                        boards(u, lambda m, s=s: skm.roc_auc_score(y[m] == "pos", s[m]))))

    # One class on the Public board: sklearn refuses, and so does the upload.
    y1 = np.where(u == "Public", "neg", y)
    out.append(case("roc_auc_one_class_board", ["--metric", "roc_auc", "--positive", "pos"], y1, u, {"target": score},
                    boards(u, lambda m: skm.roc_auc_score(y1[m] == "pos", score[m]))))

    # Log loss: binary with exact 0s and 1s, multiclass rows from a Dirichlet.
    prob = rng.random(n)
    prob[:40] = 0.0
    prob[40:80] = 1.0
    out.append(case("log_loss_binary", ["--metric", "log_loss", "--positive", "pos"], y, u, {"target": prob},
                    boards(u, lambda m: skm.log_loss(y[m] == "pos", prob[m], labels=[False, True]))))
    k3 = np.array(["a", "b", "c"])
    t3 = rng.choice(k3, size=n)
    dist = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    dist[:30] = [1.0, 0.0, 0.0]
    out.append(case("log_loss_multiclass", ["--metric", "log_loss", "--classes", "a,b,c"], t3, u,
                    {c: dist[:, i] for i, c in enumerate(k3)},
                    boards(u, lambda m: skm.log_loss(t3[m], dist[m], labels=list(k3)))))

    # Regression; R² also on a board whose target is constant.
    yr = rng.gamma(2.0, 3.0, size=n)
    pr = np.abs(yr + rng.normal(scale=2.0, size=n))
    out.append(case("mae", ["--metric", "mae"], yr, u, {"target": pr},
                    boards(u, lambda m: skm.mean_absolute_error(yr[m], pr[m]))))
    out.append(case("rmse", ["--metric", "rmse"], yr, u, {"target": pr},
                    boards(u, lambda m: skm.root_mean_squared_error(yr[m], pr[m]))))
    out.append(case("rmsle", ["--metric", "rmsle"], yr, u, {"target": pr},
                    boards(u, lambda m: skm.root_mean_squared_log_error(yr[m], pr[m]))))
    out.append(case("r2", ["--metric", "r2"], yr, u, {"target": pr},
                    boards(u, lambda m: skm.r2_score(yr[m], pr[m]))))
    yc = np.where(u == "Public", 5.0, yr)
    out.append(case("r2_constant_board", ["--metric", "r2"], yc, u, {"target": pr},
                    boards(u, lambda m: skm.r2_score(yc[m], pr[m]))))

    # Quadratic weighted kappa: ratings 0..4, and ratings with gaps.
    for name, levels in (("qwk", [0, 1, 2, 3, 4]), ("qwk_gaps", [1, 3, 7, 20])):
        levels = np.array(levels)
        tq = rng.choice(levels, size=n)
        noise = rng.integers(-1, 2, size=n)
        idx = np.clip(np.searchsorted(levels, tq) + noise, 0, len(levels) - 1)
        pq = levels[idx]
        out.append(case(name, ["--metric", "quadratic_weighted_kappa"], tq, u, {"target": pq},
                        boards(u, lambda m, tq=tq, pq=pq: skm.cohen_kappa_score(tq[m], pq[m], weights="quadratic"))))
    # Everyone gives and gets one rating on the Public board: undefined there.
    tq = np.where(u == "Public", 3, rng.integers(0, 5, size=n))
    pq = np.where(u == "Public", 3, rng.integers(0, 5, size=n))
    out.append(case("qwk_one_rating", ["--metric", "quadratic_weighted_kappa"], tq, u, {"target": pq},
                    boards(u, lambda m: skm.cohen_kappa_score(tq[m], pq[m], weights="quadratic"))))

    # MAP@K: K smaller and larger than the lists; some empty relevant lists.
    items = [f"i{j}" for j in range(30)]
    actual = [list(rng.choice(items, size=rng.integers(0, 6), replace=False)) for _ in range(n)]
    predicted = []
    for a in actual:
        guess = list(rng.choice(items, size=rng.integers(1, 8), replace=True))
        if a and rng.random() < 0.5:
            guess.insert(int(rng.integers(0, len(guess))), a[0])
        predicted.append(guess)
    for k in (5, 12):
        out.append(case(f"map_at_{k}", ["--metric", "map_at_k", "--k", str(k)],
                        [" ".join(a) for a in actual], u, {"target": [" ".join(p) for p in predicted]},
                        boards(u, lambda m, k=k: mapk([a for a, keep in zip(actual, m) if keep],
                                                       [p for p, keep in zip(predicted, m) if keep], k))))
    return out


def to_csv(table):
    names = list(table)
    rows = zip(*(table[c] for c in names))

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return repr(float(v))
        return str(v)

    return ",".join(names) + "\n" + "".join(",".join(cell(v) for v in row) + "\n" for row in rows)


if __name__ == "__main__":
    root = Path(sys.argv[1])
    for c in cases():
        d = root / c["name"]
        d.mkdir(parents=True, exist_ok=True)
        (d / "solution.csv").write_text(to_csv(c["solution"]))
        (d / "submission.csv").write_text(to_csv(c["submission"]))
        (d / "case.json").write_text(json.dumps({"flags": c["flags"], "expected": c["expected"]}, indent=1))
