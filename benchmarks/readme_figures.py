"""Regenerate the README's "Report figures": the main job, `bench report`, and small copies of its figures.

    VPBENCH_THREADS=2 python benchmarks/readme_figures.py [--runs runs] [--dest docs/figures]

Runs the README's main job (`bench run --models convlstm,mean-frame,blank,copy-last --dataset moving-digits`; a
finished run is reused) and `bench report --out RUNS/report.md`, then copies the moving-digits 10to10 curves, strip and
cost-vs-quality PNGs to DEST, scaled to WIDTH (1400) pixels wide so that the repository stays small. The report's own
PNGs stay at print resolution.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from PIL import Image

STEM = "moving-digits_10to10_64x64"
KINDS = ("curves", "strip", "cost")
WIDTH = 1400
MAIN_JOB_MODELS = "convlstm,mean-frame,blank,copy-last"  # the README's main job


def bench(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "vpbench", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "figures")
    args = parser.parse_args()
    bench("run", "--models", MAIN_JOB_MODELS, "--dataset", "moving-digits", "--out", str(args.runs))
    report = args.runs / "report.md"
    bench("report", "--runs", str(args.runs), "--out", str(report))
    args.dest.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        with Image.open(report.with_name(f"{report.stem}-figures") / f"{STEM}_{kind}.png") as image:
            image = image.convert("RGB")
            small = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.LANCZOS)
            small.save(args.dest / f"main_job_{kind}.png", optimize=True)
        print(args.dest / f"main_job_{kind}.png")


if __name__ == "__main__":
    main()
