"""The built-in procedural datasets: registration, shapes, determinism, disjoint splits, real MNIST."""
from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vpbench.errors import UserError
from vpbench.registry import DATASETS

SMALL = {"train_size": 60, "val_size": 20, "test_size": 20}
NAMES = ("moving-digits", "moving-shapes")


def make(name: str, protocol: str | None = None, **options):
    return DATASETS.get(name).create(protocol, **{**SMALL, **options})


# -- both datasets ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_registered_with_summary_and_presets(name):
    cls = DATASETS.get(name)
    assert cls.registry_name == name
    assert cls.summary()
    dataset = make(name)
    assert dataset.presets() == (f"{name}-{dataset.protocol.name}", name)  # the protocol's preset first


@pytest.mark.parametrize("name, protocol, shape", [
    ("moving-digits", None, (20, 1, 64, 64)),
    ("moving-digits", "10to10", (20, 1, 64, 64)),
    ("moving-digits", "36to300", (336, 1, 64, 64)),  # long enough for the long-term protocol
    ("moving-shapes", None, (8, 3, 256, 256)),
    ("moving-shapes", "stip-512", (8, 3, 512, 512)),
])
def test_protocol_shapes_dtype_and_range(name, protocol, shape):
    dataset = make(name, protocol)
    assert dataset.spec.length == shape[0]
    assert (dataset.spec.channels, dataset.spec.height, dataset.spec.width) == shape[1:]
    for split, size in SMALL.items():
        assert len(dataset.split(split.removesuffix("_size"))) == size
    clip = dataset.split("train")[0]
    assert clip.shape == shape and clip.dtype == torch.float32
    assert 0.0 <= clip.min() and clip.max() <= 1.0 and clip.max() > 0.5


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_split_index_same_clip(name):
    first, second = make(name, seed=3), make(name, seed=3)
    for split in ("train", "val", "test"):
        a, b = first.split(split), second.split(split)
        for index in (0, 7, len(a) - 1):
            assert torch.equal(a[index], b[index])
    assert torch.equal(first.split("val")[-1], first.split("val")[len(first.split("val")) - 1])
    # A split travels to spawned DataLoader workers by pickle.
    assert torch.equal(pickle.loads(pickle.dumps(first.split("test")))[5], second.split("test")[5])


@pytest.mark.parametrize("name", NAMES)
def test_other_seed_other_clips(name):
    a, b = make(name, seed=0).split("train"), make(name, seed=1).split("train")
    assert all(not torch.equal(a[i], b[i]) for i in range(5))


@pytest.mark.parametrize("name", NAMES)
def test_test_clips_never_appear_in_train_or_val(name):
    dataset = make(name)
    sample = {"train": range(0, 60, 2), "val": range(10), "test": range(10)}
    firsts = {split: {_key(dataset.split(split)[i][0]) for i in indices} for split, indices in sample.items()}
    # By content: no first frame of a test clip equals a first frame of train or val.
    assert not firsts["test"] & (firsts["train"] | firsts["val"])
    assert sum(map(len, firsts.values())) == sum(map(len, sample.values()))


@pytest.mark.parametrize("name", NAMES)
def test_frames_move_and_copy_last_is_beatable(name):
    dataset = make(name)
    errors = []
    for clip in list(dataset.split("test"))[:8]:
        steps = (clip[1:] - clip[:-1]).abs().flatten(1).amax(dim=1)
        assert (steps > 0).all(), "every frame must differ from the one before"
        last = clip[dataset.spec.context - 1]
        errors.append(((clip[dataset.spec.context:] - last) ** 2).mean().item())
    assert min(errors) > 1e-4 and np.mean(errors) > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_bad_options_and_split_names(name):
    with pytest.raises(UserError, match="split"):
        make(name).split("training")
    with pytest.raises(UserError, match="seed"):
        make(name, seed=-1)
    with pytest.raises(UserError, match="test_size"):
        make(name, test_size=-5)
    with pytest.raises(UserError, match="did you mean"):
        make(name, sede=1)


# -- moving-digits ---------------------------------------------------------------------------------

def test_font_glyph_pools_are_disjoint_between_splits():
    from vpbench.datasets.moving_digits import glyph_bank

    pools = {split: {g.tobytes() for g in glyph_bank(0, split)} for split in ("train", "val", "test")}
    assert not pools["test"] & (pools["train"] | pools["val"])
    assert not pools["train"] & pools["val"]
    assert len(pools["train"]) == len(glyph_bank(0, "train"))  # every variant is distinct


def test_digits_option_and_custom_canvas():
    one = make("moving-digits", digits=1).split("train")[0]
    three = make("moving-digits", digits=3, height=96, width=80).split("train")[0]
    assert three.shape == (20, 1, 96, 80)
    assert (three > 0).sum() > (one > 0).sum()
    with pytest.raises(UserError, match="digits"):
        make("moving-digits", digits=0)
    with pytest.raises(UserError, match="fit"):
        make("moving-digits", height=20).split("train")


# Distinct constant digits per source: the value of any lit pixel tells which file and part it came from.
TRAIN_HEAD, VAL_TAIL, TEST = 100, 180, 255


def _images(count: int, value: int) -> np.ndarray:
    return np.full((count, 28, 28), value, np.uint8)


def _fake_train_test() -> tuple[np.ndarray, np.ndarray]:
    # 20 train images: the last 10% (2) become the validation digits.
    return np.concatenate([_images(18, TRAIN_HEAD), _images(2, VAL_TAIL)]), _images(5, TEST)


def _idx(images: np.ndarray, magic: int = 2051) -> bytes:
    return struct.pack(">IIII", magic, *images.shape) + images.tobytes()


def _assert_digits_from(dataset) -> None:
    for split, value in (("train", TRAIN_HEAD), ("val", VAL_TAIL), ("test", TEST)):
        for clip in list(dataset.split(split))[:5]:
            assert np.unique(clip.numpy()).tolist() == pytest.approx([0.0, value / 255]), split


@pytest.mark.parametrize("compressed", [False, True])
def test_mnist_idx_directory(tmp_path, compressed):
    train, test = _fake_train_test()
    for name, images in (("train-images-idx3-ubyte", train), ("t10k-images-idx3-ubyte", test)):
        if compressed:
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress(_idx(images)))
        else:
            (tmp_path / name).write_bytes(_idx(images))
    _assert_digits_from(make("moving-digits", mnist_path=str(tmp_path)))


def test_mnist_npz(tmp_path):
    train, test = _fake_train_test()
    np.savez(tmp_path / "mnist.npz", x_train=train, y_train=np.zeros(20), x_test=test, y_test=np.zeros(5))
    _assert_digits_from(make("moving-digits", mnist_path=str(tmp_path / "mnist.npz")))


@pytest.mark.parametrize("problem, content, message", [
    ("truncated", lambda b: b[:-100], "truncated"),
    ("header cut", lambda b: b[:10], "truncated"),
    ("wrong magic", lambda b: struct.pack(">I", 2049) + b[4:], "magic number 2049"),
    ("bad gzip", lambda b: gzip.compress(b)[:50], "cannot be read"),
])
def test_broken_mnist_file_is_a_one_line_user_error(tmp_path, problem, content, message):
    train, test = _fake_train_test()
    name = "train-images-idx3-ubyte" + (".gz" if problem == "bad gzip" else "")
    (tmp_path / name).write_bytes(content(_idx(train)))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(test))
    with pytest.raises(UserError, match=message) as error:
        make("moving-digits", mnist_path=str(tmp_path)).split("train")
    assert name in str(error.value) and "\n" not in str(error.value)
    make("moving-digits", mnist_path=str(tmp_path)).split("test")  # the intact file still works


def test_missing_mnist_files(tmp_path):
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte"):
        make("moving-digits", mnist_path=str(tmp_path)).split("test")
    with pytest.raises(UserError, match="does not exist"):
        make("moving-digits", mnist_path=str(tmp_path / "nowhere")).split("train")
    np.savez(tmp_path / "other.npz", images=_images(3, 1))
    with pytest.raises(UserError, match="x_train"):
        make("moving-digits", mnist_path=str(tmp_path / "other.npz")).split("train")


# -- moving-shapes ---------------------------------------------------------------------------------

def test_shapes_custom_size():
    clip = make("moving-shapes", height=96, width=160, context=2, future=3).split("val")[0]
    assert clip.shape == (5, 3, 96, 160)


@pytest.mark.parametrize("size", [(2161, 3840), (2160, 3841), (4000, 2000), (31, 64), (64, 16)])
def test_shapes_size_limits(size):
    with pytest.raises(UserError, match=f"{size[0]}x{size[1]}"):
        make("moving-shapes", height=size[0], width=size[1])
    assert make("moving-shapes", height=3840, width=2160).spec.height == 3840  # portrait 4K is fine


def test_shapes_scene_does_not_depend_on_resolution():
    small, large = make("moving-shapes").split("test"), make("moving-shapes", "stip-512").split("test")
    for index in range(3):
        shrunk = F.avg_pool2d(large[index][0][None], 2)[0]
        assert (small[index][0] - shrunk).abs().mean() < 0.02
        assert (small[index][0] - small[index + 1][0]).abs().mean() > 0.05


def test_shapes_one_4k_clip():
    # One clip only: 8 frames of 2160x3840x3 float32 are 800 MB.
    dataset = make("moving-shapes", "4k")
    assert (dataset.spec.height, dataset.spec.width, dataset.spec.length) == (2160, 3840, 8)
    clip = dataset.split("test")[0]
    assert clip.shape == (8, 3, 2160, 3840) and clip.dtype == torch.float32
    assert 0.0 <= clip.min() and clip.max() <= 1.0


def _key(frame: torch.Tensor) -> bytes:
    return frame.numpy().tobytes()
