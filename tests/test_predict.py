"""`bench predict` on a video the test writes with PyAV, with a convlstm trained for seconds (its `tiny` preset)."""
import re

import av
import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import run_bench as _run_bench

FRAMES, SIZE, CONTEXT, FUTURE = 40, 64, 10, 10  # moving-digits 10to10: 64x64 greyscale, so no resizing


def run_bench(*args, **kwargs):
    # one thread: under a loaded machine a second one spins more than it computes, for so small a model
    return _run_bench(*args, env={"VPBENCH_THREADS": "1"}, **kwargs)


def write_video(path, frames: int) -> None:
    """Two shapes moving at constant speed; H.264 at 10 fps."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=10)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            image = np.zeros((SIZE, SIZE, 3), np.uint8)
            x, y = (2 * t) % 44, (50 - t) % 50
            image[20:36, x:x + 16] = (250, 250, 250)
            image[y:y + 12, 40:52] = (180, 180, 180)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run directory of a convlstm trained for 10 steps at its tiny preset (seconds: the scores need not be good), and the folder holding the videos."""
    root = tmp_path_factory.mktemp("predict")
    run_bench("train", "-m", "convlstm", "-d", "moving-digits", "--preset", "tiny", "--set", "max_iterations=10",
              "--set", "data.train_size=16", "--set", "data.val_size=4", "--set", "data.test_size=4", "--out", "R", cwd=root)
    run = next((root / "R").rglob("best.pt")).parents[1]
    write_video(root / "clip.mp4", FRAMES)
    return root, run


def decoded_grey(path) -> list[np.ndarray]:
    """The video's frames in [0, 1], greyscale by PIL (ITU-R 601 luma)."""
    with av.open(str(path)) as container:
        return [np.asarray(Image.fromarray(f.to_ndarray(format="rgb24")).convert("L")) / 255.0
                for f in container.decode(video=0)]


def test_predict_writes_frames_video_and_scores(trained):
    root, run = trained
    proc = run_bench("predict", "clip.mp4", "--run", str(run), "--out", "P", cwd=root)
    # windows start at 0, 10, 20, 30 (stride = horizon 10; 30 + 10 context <= 40): 4 windows of 10 predicted frames
    pngs = sorted((root / "P" / "frames").glob("*.png"))
    assert len(pngs) == 4 * FUTURE
    with av.open(str(root / "P" / "side_by_side.mp4")) as container:
        video = list(container.decode(video=0))
    assert len(video) == 4 * (CONTEXT + FUTURE)  # per window its context frames, then its predictions
    assert video[0].width >= 3 * SIZE and video[0].height == SIZE  # three panels side by side
    steps = re.findall(r"^t\+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$", proc.stdout, re.M)
    assert [int(s[0]) for s in steps] == list(range(1, FUTURE + 1)), proc.stdout
    assert all(int(s[3]) == 3 for s in steps)  # the last window predicts past the end: no ground truth
    # t+1 scored independently: skimage on the written PNGs against the decoded video's frames 10, 20, 30
    truth = decoded_grey(root / "clip.mp4")
    psnrs, ssims = [], []
    for start in (0, 10, 20):
        predicted = np.asarray(Image.open(root / "P" / "frames" / f"window{start:05d}_t001.png").convert("L")) / 255.0
        psnrs.append(peak_signal_noise_ratio(truth[start + CONTEXT], predicted, data_range=1.0))
        ssims.append(structural_similarity(truth[start + CONTEXT], predicted, data_range=1.0, gaussian_weights=True,
                                           sigma=1.5, use_sample_covariance=False))
    assert float(steps[0][1]) == pytest.approx(np.mean(psnrs), abs=0.05)
    assert float(steps[0][2]) == pytest.approx(np.mean(ssims), abs=0.005)


def test_predict_native_size_and_stride(trained):
    root, run = trained
    run_bench("predict", "clip.mp4", "--run", str(run), "--native-size", "--stride", "15", "--out", "N", cwd=root)
    # windows at 0, 15, 30; convlstm is fully convolutional, so frames keep the video's 64x64 (here the protocol's)
    assert len(list((root / "N" / "frames").glob("*.png"))) == 3 * FUTURE


def test_predict_bad_inputs_one_line_nothing_written(trained):
    root, run = trained
    write_video(root / "short.mp4", CONTEXT - 1)
    (root / "garbage.mp4").write_bytes(b"not a video at all" * 10)
    best = run / "checkpoints" / "best.pt"
    cases = {
        "no such file": ["missing.mp4", "--run", str(run)],
        "undecodable": ["garbage.mp4", "--run", str(run)],
        "fewer frames than the context": ["short.mp4", "--run", str(run)],
        "a checkpoint for another predictor": ["clip.mp4", "--checkpoint", str(best), "-m", "predrnn",
                                               "-d", "moving-digits"],
    }
    for case, args in cases.items():
        proc = run_bench("predict", *args, "--out", "BAD", cwd=root, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), (case, proc.stderr)
        assert not (root / "BAD").exists(), case
