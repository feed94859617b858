"""Quick runs of every method one of a paper's tables names, on a small stand-in dataset of that table's shape, then
`bench report --compare-paper PAPER`: does every paper row get a vpbench row beside it?

    VPBENCH_THREADS=2 python benchmarks/paper_rows.py [--paper stip] [--table ucf-sports] [--size 64] [--out DIR]

The stand-in is what the table's dataset looks like to the harness, not its content: `--videos` videos' frames
(a bright square drifting over a gradient, one per video) in the download's layout (human36m's S<k>/ JPEG names,
else a folder of PNGs per video), prepared with `bench data prepare` like the real download,
its protocol's context and horizon at `--size` x `--size`. Every predictor runs `--quick` on its `tiny` preset, so
the report marks each row not comparable and says why (quick schedule, another frame size, a prefix of the test
split); what this checks is the pairing of paper rows and runs, never the numbers. Exits 1 if a run fails or a paper
row is left without a vpbench row. Finished runs are reused.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

FRAMES_PER_VIDEO = 24


def bench(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vpbench", *args], check=check, text=True, capture_output=True)


def drifting_square(frames: int, size: int, seed: int) -> np.ndarray:
    """uint8 [T, size, size, 3]: a bright square bouncing over a colour gradient, different per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([40 + 80 * xx / size, 40 + 60 * yy / size, np.full((size, size), 90.0)], -1) * rng.uniform(0.6, 1)
    side = size // 4
    start, velocity = rng.integers(0, size - side, 2), rng.choice([-2, -1, 1, 2], 2)
    video = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        y, x = np.abs((start + velocity * t) % (2 * (size - side)) - (size - side))
        frame = base.copy()
        frame[y:y + side, x:x + side] = 230
        video[t] = frame.clip(0, 255)
    return video


# Human3.6M's subjects (1, 5, 6, 7, 8 train; 9, 11 test) and its prepared names, every 5th raw frame kept.
H36M_SUBJECTS = (1, 5, 6, 7, 8, 9, 11)
H36M_STEP = 5


def write_source(folder: Path, dataset: str, videos: int, size: int) -> None:
    """`videos` drifting-square videos in the layout `bench data prepare DATASET` reads."""
    for v in range(videos):
        frames = drifting_square(FRAMES_PER_VIDEO, size, v)
        if dataset == "human36m":  # S<k>/S<k>_<Action>.<camera>_<raw frame, from 1>.jpg
            subject = H36M_SUBJECTS[v % len(H36M_SUBJECTS)]
            names = [f"S{subject}/S{subject}_Walking{v}.54138969_{1 + H36M_STEP * t:06d}.jpg"
                     for t in range(len(frames))]
        else:  # a folder of numbered frames per video (ucf-sports, sjtu4k's prepared frames)
            names = [f"video_{v:03d}/{t}.png" for t in range(len(frames))]
        for name, frame in zip(names, frames):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(folder / name, quality=95)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", default="stip")
    parser.add_argument("--table", default="ucf-sports", help="the dataset of the paper's table to stand in for")
    parser.add_argument("--size", type=int, default=64, help="frame side of the stand-in")
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs-paper-rows"))
    args = parser.parse_args()

    from vpbench.reports.papers import published_tables
    table = next((t for t in published_tables(args.paper) if t.dataset == args.table), None)
    if table is None:
        print(f"error: {args.paper} has no table of {args.table}", file=sys.stderr)
        return 2
    methods = sorted({row.predictor for row in table.rows if row.predictor})
    missing = [row.method for row in table.rows if not row.predictor]

    source, root = args.out / "source", args.out / "data"
    if not (root / "manifest.json").exists():
        write_source(source, table.dataset, args.videos, args.size)
        bench("data", "prepare", table.dataset, "--source", str(source), "--root", str(root), "--force")
    data = ["--set", f"data.root={root}", "--set", f"data.height={args.size}", "--set", f"data.width={args.size}"]
    failed = []
    for name in methods:
        run = bench("run", "--models", name, "--dataset", table.dataset, "--quick", "--preset", "tiny", *data,
                    "--out", str(args.out / "runs"), check=False)
        print(f"{name}: {'ok' if run.returncode == 0 else 'FAILED: ' + run.stderr.strip()[-300:]}", flush=True)
        if run.returncode:
            failed.append(name)
    report = bench("report", "--runs", str(args.out / "runs"), "--compare-paper", args.paper,
                   "--out", str(args.out / "report.md"))
    beside = report.stdout[report.stdout.find("## Beside the published numbers"):]
    section = beside[beside.find(f"### {table.dataset} "):]
    section = section[:section.find("\n### ", 4)] if "\n### " in section[4:] else section
    print(section)
    lines = section.splitlines()
    unpaired = [row.method for row in table.rows if row.predictor and not any(
        line.startswith(f"| {row.method} — paper") and i + 1 < len(lines) and lines[i + 1].startswith(
            f"| {row.predictor} ") and "— ours" in lines[i + 1] for i, line in enumerate(lines))]
    for what, names in (("no vpbench predictor", missing), ("run failed", failed), ("no row beside it", unpaired)):
        if names:
            print(f"{what}: {', '.join(names)}")
    return 1 if missing or failed or unpaired else 0


if __name__ == "__main__":
    sys.exit(main())
