"""Are the study analysis's intervals and tests calibrated? Simulated between-subject studies
with a known accuracy per condition, analysed as ``protoexplain study analyze`` does
(:mod:`protoexplain.study.statistics`).

For each setting (participants per condition, main trials per participant, the accuracies of
the two conditions), ``--studies`` studies are drawn; each participant's accurate answers are
binomial. Reported: how often the 95 % cluster-bootstrap interval covers each condition's true
accuracy and the true difference, and how often the permutation test rejects at 0.05 (the
false-positive rate where the accuracies are equal, the power where they differ).

    OMP_NUM_THREADS=1 python benchmarks/study_interval_coverage.py --studies 1000 \\
        --out benchmarks/results/study_interval_coverage_cpu

Prints a Markdown table and writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
from study_io import publish_report

from protoexplain.study.statistics import cluster_bootstrap, permutation_test

SETTINGS = [(10, 6, 0.5, 0.9), (40, 6, 0.5, 0.9), (40, 6, 0.5, 0.6), (40, 6, 0.7, 0.7),
            (10, 24, 0.7, 0.7), (100, 6, 0.5, 0.9)]
"""(participants per condition, trials per participant, accuracy A, accuracy B)."""


def simulate(people: int, trials: int, first: float, second: float, *, studies: int,
             rounds: int, rng: np.random.Generator) -> dict[str, float]:
    groups = np.repeat([0, 1], people)
    total = np.zeros((2 * people, 2))
    total[:people, 0] = total[people:, 1] = trials
    covered = np.zeros(3)
    rejected = 0
    for _ in range(studies):
        correct = np.zeros_like(total)
        correct[:people, 0] = rng.binomial(trials, first, people)
        correct[people:, 1] = rng.binomial(trials, second, people)
        found = cluster_bootstrap(correct, total, groups, rounds=rounds, rng=rng)
        low, high = np.percentile(found.draws[:, 1] - found.draws[:, 0], [2.5, 97.5])
        covered += [found.low[0] <= first <= found.high[0],
                    found.low[1] <= second <= found.high[1], low <= second - first <= high]
        cells = np.concatenate([correct[:people, 0], correct[people:, 1]])
        _, p = permutation_test(cells, np.full(2 * people, trials), groups == 1,
                                np.zeros(2 * people, int), rounds=rounds, rng=rng)
        rejected += p < 0.05
    coverage = covered / studies
    return {"people": people, "trials": trials, "accuracy_a": first, "accuracy_b": second,
            "coverage_a": coverage[0], "coverage_b": coverage[1],
            "coverage_difference": coverage[2], "rejection_rate": rejected / studies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=1000, help="simulated studies per row")
    parser.add_argument("--rounds", type=int, default=1000,
                        help="bootstrap draws and permutations per study")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/study_interval_coverage_cpu"))
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = [simulate(*setting, studies=args.studies, rounds=args.rounds, rng=rng)
            for setting in SETTINGS]
    lines = [f"Calibration of the study analysis: {args.studies} simulated between-subject "
             f"studies per row, {args.rounds} bootstrap draws and permutations each, seed "
             f"{args.seed}.", "",
             "| participants per condition | trials each | accuracy A | accuracy B | "
             "coverage A | coverage B | coverage B - A | permutation test rejects (0.05) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['people']} | {row['trials']} | {row['accuracy_a']:.2f} | "
                     f"{row['accuracy_b']:.2f} | {row['coverage_a']:.3f} | "
                     f"{row['coverage_b']:.3f} | {row['coverage_difference']:.3f} | "
                     f"{row['rejection_rate']:.3f} |")
    record = {"studies": args.studies, "rounds": args.rounds, "seed": args.seed,
              "machine": platform.machine(), "rows": rows}
    publish_report(args.out, "\n".join(lines) + "\n", record)


if __name__ == "__main__":
    main()
