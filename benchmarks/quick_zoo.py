"""Quick check of the predictor zoo on moving-digits: every trainable predictor trains in quick mode, its
training loss falls, and its first predicted frame beats copy-last's.

    VPBENCH_THREADS=2 python benchmarks/quick_zoo.py [--models a,b] [--out DIR] [--device cpu] [--force]

Runs `bench run --models NAME --dataset moving-digits --quick --out DIR` once per predictor (so one failure does
not stop the others) and once for copy-last, then reads each run's result.json and train.log and prints a table:
first / last training loss (means of the first and last 10 logged losses; of the first and last halves when fewer
than 20 were logged), first / last validation MSE, t+1 PSNR, copy-last's t+1 PSNR, and whether it beats it.

The validation score is the MSE, or for generative predictors (cwvae, htsrm) the validation loss they are selected
on, the negative ELBO; their t+1 PSNR (the mean over samples) is shown but not required to beat copy-last.
"Its loss falls" is judged on the validation score (the closed-loop rollout of one fixed validation subset, logged
every val_every iterations): a quick run logs its training loss only every 50 iterations, i.e. 4 times in 200, and
under scheduled sampling that loss is taken with less and less ground truth fed in, so it can rise while the model
improves. Exits 1 if any predictor fails to run, its validation MSE does not fall, or it does not beat copy-last.
Finished runs are reused unless --force.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DATASET = "moving-digits"
BASELINE = "copy-last"


@dataclass
class Row:
    name: str
    first_loss: float | None = None
    last_loss: float | None = None
    first_val: float | None = None
    last_val: float | None = None
    psnr: float | None = None
    problem: str | None = None
    val_key: str = "mse"  # "loss" for predictors selected on their validation loss (the negative ELBO)

    def failures(self, baseline_psnr: float) -> list[str]:
        if self.problem is not None:
            return [self.problem]
        failed = [] if self.last_val < self.first_val else [
            f"validation {self.val_key} did not fall ({self.first_val:.5f} -> {self.last_val:.5f})"]
        # A stochastic predictor's t+1 PSNR is the mean over its samples: shown, not required to beat copy-last.
        if self.psnr <= baseline_psnr and self.val_key == "mse":
            failed.append(f"t+1 PSNR {self.psnr:.2f} <= {BASELINE}'s {baseline_psnr:.2f}")
        return failed


def trainable_predictors() -> list[str]:
    from vpbench.registry import PREDICTORS

    return [name for name, cls in PREDICTORS.classes().items() if cls.trainable]


def run_bench(name: str, out: Path, device: str, force: bool) -> str | None:
    """Trains and evaluates one predictor; returns None, or what went wrong."""
    command = [sys.executable, "-m", "vpbench", "run", "--models", name, "--dataset", DATASET, "--quick",
               "--out", str(out), "--device", device] + (["--force"] if force else [])
    log = out / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        code = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
        return f"bench run exited {code}: {tail[0][:120]} (see {log})"
    return None


def latest_result(out: Path, name: str) -> Path | None:
    """The newest quick result of `name` under `out` (a predictor's run directory is named by its settings)."""
    results = [p for p in (out / DATASET / name).glob("*/result.json") if json.loads(p.read_text()).get("quick")]
    return max(results, key=lambda p: p.stat().st_mtime, default=None)


def logged(log: Path, event: str, key: str) -> list[float]:
    return [e[key] for e in map(json.loads, log.read_text().splitlines()) if e.get("event") == event and key in e]


def first_and_last(values: list[float], what: str) -> tuple[float, float]:
    """Means of the first and last 10 values (of the halves when there are fewer than 20)."""
    if len(values) < 2:
        raise ValueError(f"{len(values)} {what} logged")
    n = min(10, len(values) // 2)
    return sum(values[:n]) / n, sum(values[-n:]) / n


def first_step_psnr(result: Path) -> float:
    return float(json.loads(result.read_text())["eval"]["per_step"]["psnr"][0])


def check(name: str, out: Path, device: str, force: bool) -> Row:
    row = Row(name)
    row.problem = run_bench(name, out, device, force)
    if row.problem is not None:
        return row
    result = latest_result(out, name)
    if result is None:
        row.problem = f"no quick result.json under {out / DATASET / name}"
        return row
    row.psnr = first_step_psnr(result)
    if name != BASELINE:
        log = result.parent / "train.log"
        try:
            row.first_loss, row.last_loss = first_and_last(logged(log, "train", "loss"), "training losses")
            # Generative predictors log (and are selected on) their validation loss, the negative ELBO.
            row.val_key = "loss" if logged(log, "val", "loss") else "mse"
            row.first_val, row.last_val = first_and_last(logged(log, "val", row.val_key), "validation scores")
        except (OSError, ValueError) as exc:
            row.problem = f"{exc} in {log}"
    return row


def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated predictors (default: every registered trainable one)")
    parser.add_argument("--out", type=Path, default=Path("runs/quick_zoo"), help="runs directory")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--force", action="store_true", help="redo runs that already have a result")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()] if args.models else trainable_predictors()
    names = [n for n in names if n != BASELINE]

    baseline = check(BASELINE, args.out, args.device, args.force)
    if baseline.problem is not None:
        print(f"{BASELINE}: {baseline.problem}")
        return 1
    rows = []
    for name in names:
        print(f"{name} ...", flush=True)
        rows.append(check(name, args.out, args.device, args.force))

    columns = ["predictor", "first loss", "last loss", "first val score", "last val score", "t+1 PSNR",
               f"{BASELINE} t+1 PSNR", f"beats {BASELINE}"]
    print("\n| " + " | ".join(columns) + " |\n|" + "|".join("-" * (len(c) + 2) for c in columns) + "|")
    failed = 0
    for row in rows:
        beats = "-" if row.psnr is None else ("yes" if row.psnr > baseline.psnr else "no")
        cells = [row.name, fmt(row.first_loss, 5), fmt(row.last_loss, 5), fmt(row.first_val, 5), fmt(row.last_val, 5),
                 fmt(row.psnr, 2), fmt(baseline.psnr, 2), beats]
        print("| " + " | ".join(cell.rjust(len(c)) if i else cell.ljust(len(c))
                                 for i, (cell, c) in enumerate(zip(cells, columns))) + " |")
    for row in rows:
        for reason in row.failures(baseline.psnr):
            print(f"FAIL {row.name}: {reason}")
        failed += bool(row.failures(baseline.psnr))
    print(f"\n{len(rows) - failed} of {len(rows)} predictors pass.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
