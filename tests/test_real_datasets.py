"""The datasets read from files, on tiny fixtures written in each real format: encoded videos (.avi,
.mp4), raw YUV, PNG / JPEG folders, npy, MNIST idx, zip archives, clip lists."""
from __future__ import annotations

import json
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import run_bench
from real_fixtures import kth_tree, moving_frames, truncate, write_video
from vpbench.datasets._files import BadFile, extract
from vpbench.datasets._frames import rgb_to_yuv420, write_image, yuv420_to_rgb
from vpbench.datasets._manifest import Manifest, check
from vpbench.datasets._video import read_video
from vpbench.errors import UserError
from vpbench.registry import DATASETS


def prepare(name: str, source: Path, root: Path) -> Manifest:
    return DATASETS.get(name).prepare(source, root)


def make(name: str, root: Path, protocol: str | None = None, **options):
    return DATASETS.get(name).create(protocol, root=str(root), **options)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / F.mse_loss(a, b)))


def one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    text = str(exc.value)
    assert "\n" not in text and all(n in text for n in needles), text


# -- decoding, archives, YUV ---------------------------------------------------------------------------

def test_video_round_trip_and_broken_videos(tmp_path):
    frames = moving_frames(12, 24, 32, seed=1)
    lossless = write_video(tmp_path / "exact.avi", frames, codec="ffv1", pix_fmt="bgr0")
    assert np.array_equal(read_video(lossless), frames)
    lossy = read_video(write_video(tmp_path / "divx.avi", frames))  # mpeg4 in AVI, as KTH ships
    assert lossy.shape == frames.shape
    assert psnr(torch.from_numpy(lossy / 255.0), torch.from_numpy(frames / 255.0)) > 28

    cut = truncate(write_video(tmp_path / "cut.avi", moving_frames(40, 24, 32)), 0.5)
    with pytest.raises(BadFile) as error:
        read_video(cut)
    one_line(error, "cut.avi", "truncated")
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 50)
    with pytest.raises(BadFile) as error:
        read_video(tmp_path / "junk.mp4")
    one_line(error, "junk.mp4", "undecodable")
    with pytest.raises(BadFile, match="missing"):
        read_video(tmp_path / "gone.avi")


def test_archives_refuse_members_outside_the_target(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as bundle:
        bundle.writestr("ok/a.txt", "fine")
        bundle.writestr("../escaped.txt", "bad")
    with pytest.raises(UserError, match="outside") as error:
        extract(tmp_path / "evil.zip", tmp_path / "out")
    one_line(error, "evil.zip", "../escaped.txt")
    assert not (tmp_path / "escaped.txt").exists()

    with tarfile.open(tmp_path / "link.tar", "w") as bundle:
        link = tarfile.TarInfo("data/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
        bundle.addfile(link)
    with pytest.raises(UserError, match="outside"):
        extract(tmp_path / "link.tar", tmp_path / "out2")

    with zipfile.ZipFile(tmp_path / "good.zip", "w") as bundle:
        bundle.writestr("a/b.txt", "fine")
    extract(tmp_path / "good.zip", tmp_path / "out3")
    assert (tmp_path / "out3" / "a" / "b.txt").read_text() == "fine"


def _ffmpeg_rgb(planes: list[np.ndarray], colorspace: str, full_range: bool) -> np.ndarray:
    """FFmpeg's (libswscale, through PyAV) RGB of one 8-bit 4:2:0 frame, chroma repeated over its 2x2 block."""
    import av

    width = planes[0].shape[1]
    frame = av.VideoFrame.from_ndarray(np.concatenate([p.ravel() for p in planes]).reshape(-1, width),
                                       format="yuv420p")
    return frame.reformat(format="rgb24", src_colorspace=colorspace, src_color_range="JPEG" if full_range else "MPEG",
                          interpolation="POINT").to_ndarray().astype(np.float64)


def _ours(planes: list[np.ndarray], matrix: str, full_range: bool) -> np.ndarray:
    tensors = [torch.from_numpy(p[None]) for p in planes]
    return yuv420_to_rgb(*tensors, matrix=matrix, full_range=full_range)[0].permute(1, 2, 0).numpy() * 255


def _random_yuv420(height: int, width: int, full_range: bool, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    luma, chroma = ((0, 256), (0, 256)) if full_range else ((16, 236), (16, 241))
    return [rng.integers(*luma, (height, width), dtype=np.uint8),
            *(rng.integers(*chroma, (height // 2, width // 2), dtype=np.uint8) for _ in range(2))]


# (ours, FFmpeg's name, full range), and a way of reading the same planes that the comparison must tell apart
YUV_CASES = [("bt709", "ITU709", False, ("bt601", False)), ("bt601", "ITU601", False, ("bt709", False)),
             ("bt709", "ITU709", True, ("bt709", False)), ("bt2020", "BT2020", False, ("bt709", False)),
             ("bt2020", "BT2020", True, ("bt2020", False))]


@pytest.mark.parametrize("matrix, colorspace, full_range, other", YUV_CASES)
def test_yuv_to_rgb_matches_ffmpeg(matrix, colorspace, full_range, other):
    planes = _random_yuv420(32, 48, full_range)
    reference = _ffmpeg_rgb(planes, colorspace, full_range)
    mine, wrong = _ours(planes, matrix, full_range), _ours(planes, *other)
    assert np.abs(mine - reference).max() < 4 and np.abs(mine - reference).mean() < 1.5
    assert np.abs(wrong - reference).max() > 15  # the check above can tell them apart


def test_rgb_to_yuv_round_trips():
    rgb = moving_frames(3, 64, 96, seed=4)
    for matrix in ("bt709", "bt2020"):
        for full in (False, True):
            raw = np.frombuffer(rgb_to_yuv420(rgb, matrix=matrix, full_range=full), np.uint8).reshape(3, -1)
            luma, quarter = 64 * 96, 32 * 48
            back = yuv420_to_rgb(torch.tensor(raw[:, :luma].reshape(3, 64, 96)),
                                 torch.tensor(raw[:, luma:luma + quarter].reshape(3, 32, 48)),
                                 torch.tensor(raw[:, luma + quarter:].reshape(3, 32, 48)),
                                 matrix=matrix, full_range=full)
            assert psnr(back, torch.from_numpy(rgb).permute(0, 3, 1, 2) / 255.0) > 35


# -- KTH -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kth_root(tmp_path_factory):
    """Persons 1-3 and 16 (train for 10to20), 17 and 21 (test); person 21's boxing video is truncated;
    one zip archive holds two of the videos, as the download comes."""
    base = tmp_path_factory.mktemp("kth")
    source = base / "source"
    kth_tree(source, {1: 36, 2: 36, 3: 36, 16: 36, 17: 40}, lossless=True)
    truncate(write_video(source / "boxing" / "person21_boxing_d1_uncomp.avi", moving_frames(40, 30, 40, channels=1)))
    kth_tree(base / "zipped", {22: 34})
    with zipfile.ZipFile(source / "running.zip", "w") as bundle:
        for path in (base / "zipped").rglob("*.avi"):
            bundle.write(path, f"running/{path.name}")
    prepare("kth", source, base / "root")
    return base


def test_kth_prepare_records_the_truncated_video_and_check_passes(kth_root):
    root = kth_root / "root"
    manifest = Manifest.load(root)
    ids = {s.id for s in manifest.sequences}
    assert "person22_boxing_d1" in ids and "person22_running_d1" in ids  # from inside the zip
    assert len(ids) == 12 and all(s.channels == 1 and s.frames >= 34 for s in manifest.sequences)
    (problem,) = manifest.problems
    assert problem.file.endswith("person21_boxing_d1_uncomp.avi") and "truncated" in problem.message
    assert check(root, manifest) == []

    dataset = make("kth", root)
    (recorded,) = dataset.problems()
    assert recorded.split == "test" and recorded.file == problem.file
    assert dataset.fingerprint() == make("kth", root, "htsrm").fingerprint()  # the data, whatever the protocol


def test_kth_frames_round_trip_and_openstl_clip_starts(kth_root):
    source = kth_tree(kth_root / "again", {1: 36, 2: 36}, lossless=True)  # same seeds: kth_root's frames
    train = make("kth", kth_root / "root", height=30, width=40).split("train")  # the stored size: no resizing
    starts: dict[str, set[int]] = {}
    compared = 0
    for i in range(len(train)):
        key, start = train.sequence_of(i), int(train.rows[i][1])
        starts.setdefault(key.split("_")[1], set()).add(start)
        if key in source:
            assert torch.equal(train[i], torch.from_numpy(source[key][start:start + 30]).permute(0, 3, 1, 2) / 255.0)
            compared += 1
    assert compared >= 4  # of persons 1 and 2's 8 clips, one video may be held out for validation
    # OpenSTL: counted back from the last of 36 frames; boxing every 30 frames, running every 3.
    assert starts == {"boxing": {6}, "running": {0, 3, 6}}


def test_kth_protocol_shapes_and_person_splits(kth_root):
    dataset = make("kth", kth_root / "root")
    assert dataset.presets()[-1] == "kth"
    persons = {}
    for split in ("train", "val", "test"):
        clips = dataset.split(split)
        assert clips[0].shape == (30, 1, 128, 128) and clips[0].dtype == torch.float32
        persons[split] = {int(clips.sequence_of(i)[6:8]) for i in range(len(clips))}
    assert max(persons["train"] | persons["val"]) <= 16 and min(persons["test"]) >= 17
    videos = {s: {dataset.split(s).sequence_of(i) for i in range(len(dataset.split(s)))} for s in persons}
    assert not videos["val"] & videos["train"] and len(videos["val"]) == 1

    long = make("kth", kth_root / "root", "htsrm", context=10, future=20, train_length=34)  # short fixtures
    assert long.split("train")[0].shape == (34, 3, 64, 64) and len(long.split("train")) == 10 - 1
    test = long.split("test")
    assert test[0].shape == (30, 3, 64, 64)
    assert {test.sequence_of(i) for i in range(len(test))} == {"person22_boxing_d1", "person22_running_d1"}
    assert [p.split for p in long.problems()] == ["test"]
    with pytest.raises(UserError, match="train_length"):
        make("kth", kth_root / "root", "htsrm", train_length=20)


def test_kth_missing_data_is_one_line_saying_where_and_how(tmp_path):
    proc = run_bench("run", "--models", "copy-last", "--dataset", "kth", cwd=tmp_path, check=False,
                     env={"VPBENCH_DATA": str(tmp_path / "nowhere")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert str(tmp_path / "nowhere" / "kth") in line and "bench data prepare kth --source" in line


def test_bench_data_prepare_check_info(kth_root, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vpbench.datasets._commands import app

    def data(*args: str):
        return CliRunner().invoke(app, list(args), catch_exceptions=False)

    monkeypatch.setenv("VPBENCH_DATA", str(kth_root))
    info = data("info").stdout
    assert f"data home: {kth_root} (from $VPBENCH_DATA)" in info
    kth_line = next(line for line in info.splitlines() if line.strip().startswith("kth"))
    assert "missing" in kth_line and str(kth_root / "kth") in kth_line  # the fixture sits in .../root
    info = data("info", "kth", "--root", str(kth_root / "root")).stdout
    assert "prepared" in info and "12 sequences" in info and "1 left out" in info

    copy = tmp_path / "copy"
    prepared = data("prepare", "kth", "--source", str(kth_root / "source"), "--root", str(copy)).stdout
    assert "12 sequences" in prepared and "person21_boxing_d1_uncomp.avi: truncated" in prepared
    with pytest.raises(UserError, match="already holds prepared kth data"):
        data("prepare", "kth", "--source", str(kth_root / "source"), "--root", str(copy))
    assert data("check", "kth", "--root", str(copy)).exit_code == 0
    # prepare is reproducible: the same source gives the same checksums, so the same fingerprint
    assert make("kth", copy).fingerprint() == make("kth", kth_root / "root").fingerprint()
    target = copy / "boxing" / "person17_boxing_d1.npy"
    content = bytearray(target.read_bytes())
    content[-1] ^= 0xFF
    target.write_bytes(bytes(content))
    result = data("check", "kth", "--root", str(copy))
    assert result.exit_code == 1 and "person17_boxing_d1.npy: checksum differs" in result.stdout
    assert data("check", "kth", "--root", str(copy), "--fast").exit_code == 0  # sizes only: same size


@pytest.mark.slow
def test_kth_quick_run_end_to_end(kth_root, tmp_path):
    run_bench("run", "--models", "convlstm,copy-last", "--dataset", "kth", "--quick", "--out", "R",
              "--set", f"data.root={kth_root / 'root'}", "--set", "data.height=32", "--set", "data.width=32",
              "--set", "data.future=5", "--set", "convlstm.num_layers=1", "--set", "convlstm.num_hidden=8",
              "--set", "convlstm.filter_size=3", "--set", "batch_size=4", "--set", "convlstm.quick_iterations=20",
              cwd=tmp_path)
    results = {r["predictor"]: r for r in (json.loads(p.read_text()) for p in (tmp_path / "R").rglob("result.json"))}
    assert set(results) == {"convlstm", "copy-last"}
    for result in results.values():
        assert result["dataset"] == "kth" and result["protocol"]["name"] == "10to20"
        assert len(result["eval"]["per_step"]["psnr"]) == 5 and result["eval"]["whole_split"]
        assert result["eval"]["sequences"] == make("kth", kth_root / "root", future=5).split("test").__len__()
        # The prepared files are part of what a run is: other data under the same root is another run.
        assert result["data_fingerprint"] == make("kth", kth_root / "root").fingerprint()


# -- Moving MNIST --------------------------------------------------------------------------------------

def _idx(images: np.ndarray) -> bytes:
    return struct.pack(">IIII", 2051, *images.shape) + images.tobytes()


def test_mmnist_standard_test_file_generated_training_and_long_videos(tmp_path):
    source = tmp_path / "source"
    rng = np.random.default_rng(0)
    test = rng.integers(0, 256, (20, 12, 64, 64), dtype=np.uint8)
    (source / "mnist").mkdir(parents=True)
    np.save(source / "mnist_test_seq.npy", test)
    digits = np.zeros((20, 28, 28), np.uint8)
    digits[:, 6:22, 10:18] = 200
    (source / "mnist" / "train-images-idx3-ubyte").write_bytes(_idx(digits))
    for split, count, length in (("train-seq100", 2, 100), ("test-seq1000", 1, 120)):
        for k in range(count):
            write_video(source / "moving_mnist_2digit" / split / f"{k}.mp4",
                        moving_frames(length, 64, 64, seed=k, channels=1), codec="libx264")
    manifest = prepare("mmnist", source, tmp_path / "root")
    assert set(manifest.files) == {"mnist_test_seq.npy", "mnist/train-images-idx3-ubyte"}

    standard = make("mmnist", tmp_path / "root")
    assert standard.presets()[-1] == "mmnist"
    clips = standard.split("test")
    assert len(clips) == 12 and torch.equal(clips[5], torch.from_numpy(test[:, 5, None] / np.float32(255)))
    train, val = standard.split("train")[3], standard.split("val")[0]
    assert train.shape == val.shape == (20, 1, 64, 64)
    assert abs(train.max().item() - 200 / 255) < 1e-6 and train.sum() > 0

    long = make("mmnist", tmp_path / "root", "htsrm", future=64)  # 36 + 64 = 100 frames per test clip
    assert len(long.split("train")) == 2 and long.split("train")[0].shape == (100, 1, 64, 64)
    assert len(long.split("test")) == 1 and long.split("test")[0].shape == (100, 1, 64, 64)
    assert long.split("val")[0].shape == (100, 1, 64, 64)
    with pytest.raises(UserError, match="20 frames per sequence"):
        make("mmnist", tmp_path / "root", future=20).split("test")


# -- GQN mazes -----------------------------------------------------------------------------------------

def test_gqn_mazes_from_the_release_zip(tmp_path):
    release = tmp_path / "gqn_mazes"
    written = {}
    for split, count in (("train", 4), ("test", 1)):
        for k in range(count):
            frames = moving_frames(30, 64, 64, seed=10 * k + len(split))
            write_video(release / split / f"{k}.mp4", frames, codec="libx264")
            written[f"{split}/{k}"] = frames
    with zipfile.ZipFile(tmp_path / "gqn_mazes.zip", "w") as bundle:
        for path in release.rglob("*.mp4"):
            bundle.write(path, path.relative_to(tmp_path).as_posix())
    prepare("gqn-mazes", tmp_path / "gqn_mazes.zip", tmp_path / "root")
    dataset = make("gqn-mazes", tmp_path / "root", context=5, future=10, train_length=10)
    train, val, test = (dataset.split(s) for s in ("train", "val", "test"))
    assert len(train) == 9 and len(val) == 2 and len(test) == 2  # 30-frame videos: 3 x 10 and 2 x 15
    assert train[0].shape == (10, 3, 64, 64) and test[1].shape == (15, 3, 64, 64)
    assert test.sequence_of(0) == "test/0"
    expected = torch.from_numpy(written["test/0"][15:30]).permute(0, 3, 1, 2) / 255.0
    assert psnr(test[1], expected) > 30  # frames 15-29, through an h264 round trip
    assert dataset.spec.length == 15 and make("gqn-mazes", tmp_path / "root").spec.length == 300


# -- UCF Sports ----------------------------------------------------------------------------------------

def _ucf_source(folder: Path) -> dict[str, np.ndarray]:
    written = {}
    for k, action in enumerate(("Riding-Horse", "Diving-Side", "Golf-Swing-Front", "Kicking-Side", "Lifting")):
        frames = moving_frames(14, 24, 32, seed=k)
        for i, frame in enumerate(frames):
            name = f"{i}.png" if k else f"2538-5_7{i:04d}.jpg"  # the download's own odd jpg names
            write_image(folder / action / name, frame)
        written[action] = frames
    write_video(folder / "Walk-Front" / "005.avi", moving_frames(12, 24, 32, seed=9), codec="ffv1", pix_fmt="bgr0")
    write_video(folder / "Lifting" / "duplicate.avi", moving_frames(12, 24, 32), codec="ffv1", pix_fmt="bgr0")
    (folder / "test.txt").write_text("data/ucfsport/Riding-Horse/,2\ndata/ucfsport/Diving-Side/,4\n"
                                     "data/ucfsport/Diving-Side/,9\n")
    (folder / "train.txt").write_text("".join(f"data/ucfsport/{a}/,{s}\n" for a in
                                              ("Riding-Horse", "Golf-Swing-Front", "Kicking-Side", "Lifting")
                                              for s in (0, 3)))
    return written


def test_ucf_sports_folders_videos_lists_and_a_missing_frame(tmp_path):
    written = _ucf_source(tmp_path / "source")
    (tmp_path / "source" / "Kicking-Side" / "5.png").unlink()  # a gap: missing frame
    manifest = prepare("ucf-sports", tmp_path / "source", tmp_path / "root")
    assert {s.id for s in manifest.sequences} == {"Riding-Horse", "Diving-Side", "Golf-Swing-Front", "Lifting",
                                                  "Walk-Front/005"}
    (problem,) = manifest.problems
    assert problem.file.endswith("Kicking-Side/5.png") and "missing frame" in problem.message

    dataset = make("ucf-sports", tmp_path / "root", "stip", split_by="lists")
    test = dataset.split("test")
    assert len(test) == 2 and test[0].shape == (10, 3, 512, 512)
    (missing,) = [p for p in dataset.problems() if p.split == "test"]  # Diving-Side from 9 needs 9..18 of 0..13
    assert missing.file.endswith("Diving-Side/14.png") and "missing frame" in missing.message
    assert {p.split for p in dataset.problems() if "Kicking-Side" in p.file} == {"train"}
    exact = make("ucf-sports", tmp_path / "root", split_by="lists", height=24, width=32)
    clip = exact.split("test")[0]  # Riding-Horse from frame 2: renumbered jpgs, so approximately
    assert psnr(clip, torch.from_numpy(written["Riding-Horse"][2:12]).permute(0, 3, 1, 2) / 255.0) > 30
    splits = {s: {dataset.split(s).sequence_of(i) for i in range(len(dataset.split(s)))} for s in ("train", "val")}
    assert splits["train"] and splits["val"] and not splits["train"] & splits["val"]

    by_video = make("ucf-sports", tmp_path / "root", test_fraction=0.3, height=24, width=32)
    members = {s: {by_video.split(s).sequence_of(i) for i in range(len(by_video.split(s)))}
               for s in ("train", "val", "test")}
    assert not (members["train"] & members["test"]) and not (members["val"] & (members["train"] | members["test"]))
    assert len(by_video.split("test")) == sum(14 - 9 if k != "Walk-Front/005" else 12 - 9 for k in members["test"])

    (tmp_path / "root" / "Diving-Side" / "7.png").unlink()
    index = next(i for i in range(len(test)) if test.sequence_of(i) == "Diving-Side")
    with pytest.raises(BadFile) as error:
        test[index]
    one_line(error, "Diving-Side/7.png", "missing frame")


# -- Human3.6M -----------------------------------------------------------------------------------------

def test_human36m_every_fifth_frame_subjects_and_lists(tmp_path):
    source = tmp_path / "source"
    for subject, name, count in (("S1", "Directions.54138969", 12), ("S5", "Walking.55011271", 12),
                                 ("S9", "Eating.58860488", 10)):
        for j, frame in enumerate(moving_frames(count, 20, 20, seed=count)):
            write_image(source / subject / f"{subject}_{name}_{1 + 5 * j:06d}.jpg", frame)
    raw = moving_frames(46, 20, 20, seed=3)  # S11's video at "50 fps": every 5th frame is kept
    write_video(source / "S11" / "Videos" / "Sitting 1.60457274.mp4", raw, codec="ffv1", pix_fmt="bgr0")
    (source / "lists").mkdir()
    (source / "lists" / "test.txt").write_text("data/human36m/S1/,S1_Directions.54138969_,1,71\n"
                                               "data/human36m/S9/,S9_Eating.58860488_,26,96\n")
    (source / "lists" / "train.txt").write_text("images/S5_Walking.55011271_,1\nimages/S11_Sitting_1.60457274_,1\n")
    manifest = prepare("human36m", source, tmp_path / "root")
    video = next(s for s in manifest.sequences if s.id == "S11/S11_Sitting_1.60457274")
    assert (video.first, video.step, video.frames) == (1, 5, 10)
    assert (tmp_path / "root" / "S11" / "S11_Sitting_1.60457274_000046.jpg").is_file()

    dataset = make("human36m", tmp_path / "root", "openstl", split_by="subjects", clip_stride=5)
    test = dataset.split("test")
    assert test[0].shape == (8, 3, 256, 256)
    assert {test.sequence_of(i)[:3] for i in range(len(test))} == {"S9/", "S11"}
    assert len(test) == 3 + 3  # S9 and S11: 10 stored frames -> clip starts 1, 6, 11 (raw numbers)
    stip = make("human36m", tmp_path / "root", "stip", split_by="lists", height=20, width=20)
    clips = stip.split("test")
    assert len(clips) == 1 and clips[0].shape == (8, 3, 20, 20)  # the S9 line needs frames it lacks
    (problem,) = [p for p in stip.problems() if p.split == "test"]
    assert problem.file.endswith("S9/S9_Eating.58860488_000051.jpg") and "missing frame" in problem.message
    sitting = make("human36m", tmp_path / "root", split_by="lists", height=20, width=20, val_fraction=0)
    expected = torch.from_numpy(raw[0:40:5]).permute(0, 3, 1, 2) / 255.0
    clip = next(sitting.split("train")[i] for i in range(2) if sitting.split("train").sequence_of(i).startswith("S11"))
    assert psnr(clip, expected) > 30  # every 5th frame of the video, through JPEG
    with pytest.raises(UserError, match="both"):
        make("human36m", tmp_path / "root", train_subjects=(1, 9)).split("train")


# -- SJTU 4K -------------------------------------------------------------------------------------------

def test_sjtu4k_yuv_png_folders_videos_and_lists(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    rgb = {name: moving_frames(10, 32, 64, seed=k) for k, name in enumerate(("Campfire_Party", "Wood", "Runners"))}
    for name, frames in rgb.items():
        (source / f"{name}_64x32_8bit.yuv").write_bytes(rgb_to_yuv420(frames))
    for i, frame in enumerate(moving_frames(9, 32, 64, seed=7), start=1):
        write_image(source / "Traffic_Flow.mp4" / f"{i}.png", frame)
    write_video(source / "Fountains.mp4", moving_frames(9, 32, 64, seed=8), codec="libx264")
    (source / "Tree_Shade_64x32.yuv").write_bytes(rgb_to_yuv420(moving_frames(4, 32, 64))[:-100])
    (source / "test.txt").write_text("data/sjtu4k/Traffic_Flow.mp4/,2,10\ndata/sjtu4k/Wood.mp4/,1,9\n")
    (source / "train.txt").write_text("data/sjtu4k/Campfire_Party.mp4/,1,9\ndata/sjtu4k/Runners.mp4/,3,11\n"
                                      "data/sjtu4k/Fountains.mp4/,1,9\n")
    manifest = prepare("sjtu4k", source, tmp_path / "root")
    kinds = {s.id: s.kind for s in manifest.sequences}
    assert kinds == {"Campfire_Party": "yuv", "Wood": "yuv", "Runners": "yuv", "Traffic_Flow": "frames",
                     "Fountains": "yuv"}
    (problem,) = manifest.problems
    assert problem.file.endswith("Tree_Shade_64x32.yuv") and "truncated" in problem.message

    dataset = make("sjtu4k", tmp_path / "root", split_by="lists", height=32, width=64, val_fraction=0.4)
    test = dataset.split("test")
    assert len(test) == 2 and test[0].shape == (8, 3, 32, 64)
    wood = next(test[i] for i in range(2) if test.sequence_of(i) == "Wood")
    assert psnr(wood, torch.from_numpy(rgb["Wood"][:8]).permute(0, 3, 1, 2) / 255.0) > 35  # YUV frames 1..8
    flow = next(test[i] for i in range(2) if test.sequence_of(i) == "Traffic_Flow")
    assert torch.equal(flow, torch.from_numpy(moving_frames(9, 32, 64, seed=7)[1:9]).permute(0, 3, 1, 2) / 255.0)
    val = dataset.split("val")
    assert len(val) >= 1 and not {val.sequence_of(i) for i in range(len(val))} & \
        {dataset.split("train").sequence_of(i) for i in range(len(dataset.split("train")))}

    fountains = read_video(source / "Fountains.mp4")  # decoded to YUV at prepare: same frames as rgb24 decoding
    by_name = make("sjtu4k", tmp_path / "root", test_sequences=("Fountains",), height=32, width=64, clip_stride=1,
                   yuv_matrix="bt601")  # the untagged h264 was decoded to RGB with FFmpeg's default, BT.601
    clip = by_name.split("test")[1]
    assert psnr(clip, torch.from_numpy(fountains[1:9]).permute(0, 3, 1, 2) / 255.0) > 30
    assert {p.split for p in by_name.problems()} <= {"train", "val"}
    with pytest.raises(UserError, match="Bund"):
        make("sjtu4k", tmp_path / "root", test_sequences=("Bund",)).split("test")


def test_sjtu4k_one_full_4k_clip(tmp_path):
    # 8 frames of 3840x2160: 100 MB of YUV, 800 MB of float32 RGB; one clip only.
    frame = np.concatenate([np.full(3840 * 2160, 126, np.uint8), np.full(2 * 1920 * 1080, 128, np.uint8)])
    with open(tmp_path / "Bund_Nightscape.yuv", "wb") as fh:
        for _ in range(8):
            fh.write(frame.tobytes())
    prepare("sjtu4k", tmp_path / "Bund_Nightscape.yuv", tmp_path / "root")
    dataset = make("sjtu4k", tmp_path / "root", test_sequences=("Bund_Nightscape",), val_fraction=0)
    assert dataset.presets()[-1] == "sjtu4k"
    clip = dataset.split("test")[0]
    assert clip.shape == (8, 3, 2160, 3840)
    assert torch.allclose(clip[:, :, ::97, ::101], torch.tensor((126 - 16) / 219.0), atol=1e-6)  # grey, limited range
