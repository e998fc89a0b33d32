#!/usr/bin/env python3
"""Makes the example competition's files (issue 16): three noisy spiral arms to tell apart.

    python3 make_data.py OUT [--seed 2026]

writes, under OUT:
  data/train.csv             id,x,y,label   10,000 rows, for participants
  data/test.csv              id,x,y          5,000 rows, the test features (the CSV competition's)
  data/sample_submission.csv id,label        every test id, label 0
  sample/test.csv            id,x,y          the first 100 test rows: the code competition's
                                             public sample (its participants never see the rest)
  hidden/test.csv            id,x,y          all 5,000 test rows: what a code submission's run reads
  solution.csv               id,label,Usage  the hidden labels; 30% of rows Public, 70% Private

Only the standard library, so it runs anywhere; the same seed makes the same files.
"""
import argparse
import math
import pathlib
import random

CLASSES = 3
TRAIN, TEST = 10_000, 5_000


def point(rnd, label, noise):
    r = rnd.random()
    theta = label * 2 * math.pi / CLASSES + r * 3 * math.pi
    return (r * math.cos(theta) + rnd.gauss(0, noise), r * math.sin(theta) + rnd.gauss(0, noise))


def write(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join(str(v) for v in row) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--noise", type=float, default=0.06)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    rows = []
    for i in range(TRAIN + TEST):
        label = rnd.randrange(CLASSES)
        x, y = point(rnd, label, args.noise)
        rows.append((i + 1, round(x, 6), round(y, 6), label))
    train, test = rows[:TRAIN], rows[TRAIN:]
    out = args.out
    write(out / "data/train.csv", ["id", "x", "y", "label"], train)
    write(out / "data/test.csv", ["id", "x", "y"], [r[:3] for r in test])
    write(out / "data/sample_submission.csv", ["id", "label"], [(r[0], 0) for r in test])
    write(out / "sample/test.csv", ["id", "x", "y"], [r[:3] for r in test[:100]])
    write(out / "hidden/test.csv", ["id", "x", "y"], [r[:3] for r in test])
    usage = ["Public" if rnd.random() < 0.3 else "Private" for _ in test]
    write(out / "solution.csv", ["id", "label", "Usage"], [(r[0], r[3], u) for r, u in zip(test, usage)])


if __name__ == "__main__":
    main()
