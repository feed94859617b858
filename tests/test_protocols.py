"""Every (dataset, protocol) as its reference runs it: context, horizon, frame size, and how many clips each
split gets from videos of the reference's lengths (manifests written by hand: plans need no frames)."""
from __future__ import annotations

from pathlib import Path

import pytest

from vpbench.datasets._manifest import Manifest, Sequence
from vpbench.predictor import resolve_config
from vpbench.registry import DATASETS, PREDICTORS

# (dataset, protocol) -> context, horizon, (channels, height, width); the source of each is in the
# dataset's docstring.
PROTOCOLS = {
    ("mmnist", "10to10"): (10, 10, (1, 64, 64)),  # Srivastava et al. / OpenSTL
    ("mmnist", "cwvae"): (36, 964, (1, 64, 64)),  # CW-VAE configs/mmnist.yml: eval_seq_len 1000
    ("mmnist", "htsrm"): (36, 300, (1, 64, 64)),  # HTSRM: 336 frames
    ("kth", "10to20"): (10, 20, (1, 128, 128)),  # OpenSTL
    ("kth", "htsrm"): (36, 264, (3, 64, 64)),  # HTSRM README: --eval-seq-len 300 --open-loop-ctx 36
    ("gqn-mazes", "cwvae"): (36, 264, (3, 64, 64)),  # CW-VAE configs/mazes.yml: eval_seq_len 300
    ("moving-digits", "36to300"): (36, 300, (1, 64, 64)),  # CW-VAE / HTSRM's long-term protocol, synthetic
}


@pytest.mark.parametrize("dataset, protocol", list(PROTOCOLS))
def test_protocol_lengths_and_frame_size(dataset, protocol):
    context, horizon, (channels, height, width) = PROTOCOLS[dataset, protocol]
    p = DATASETS.get(dataset).protocols[protocol]
    assert (p.context, p.future, p.channels, p.height, p.width) == (context, horizon, channels, height, width)


def fake_root(root: Path, dataset: str, videos: dict[str, tuple[int, dict]], shape: tuple[int, int, int]) -> Path:
    """A prepared root whose manifest lists `videos` (id -> frames, meta); no frame is ever read."""
    height, width, channels = shape
    manifest = Manifest(dataset, [Sequence(key, "npy", f"{key}.npy", frames, height, width, channels, meta=meta)
                                  for key, (frames, meta) in videos.items()])
    root.mkdir(parents=True)
    manifest.save(root)
    return root


def sizes(dataset, splits=("train", "val", "test")) -> dict[str, int]:
    return {split: len(dataset.split(split)) for split in splits}


def test_mmnist_long_protocols_cut_test_seq1000_as_cwvaes_loader(tmp_path):
    # moving_mnist_2digit: train-seq100 (100 frames each), test-seq1000 (1000 frames each)
    videos = {**{f"train/{k}": (100, {"split": "train"}) for k in range(4)},
              **{f"test/{k}": (1000, {"split": "test"}) for k in range(3)}}
    root = fake_root(tmp_path / "mmnist", "mmnist", videos, (64, 64, 1))
    make = lambda protocol: DATASETS.get("mmnist").create(protocol, root=str(root))
    # data_loader.py: floor(1000 / eval_seq_len) clips per test video; training clips of seq_len 100
    assert sizes(make("cwvae"), ("train", "test")) == {"train": 4, "test": 3}
    assert sizes(make("htsrm"), ("train", "test")) == {"train": 4, "test": 2 * 3}
    assert make("htsrm").split("test").length == 336 and make("htsrm").split("train").length == 100


def test_kth_htsrm_splits_persons_and_keeps_test_videos_of_300_frames(tmp_path):
    def video(person: int, frames: int) -> tuple[int, dict]:
        return frames, {"person": person, "action": "walking", "scenario": 1}

    videos = {f"person{p:02d}_walking_d{d}": video(p, n)
              for p, d, n in [(1, 1, 450), (2, 1, 380), (19, 1, 620), (20, 1, 299), (21, 1, 300), (22, 1, 299),
                              (25, 1, 700)]}
    root = fake_root(tmp_path / "kth", "kth", videos, (120, 160, 1))
    kth = DATASETS.get("kth").create("htsrm", root=str(root), val_fraction=0.0)
    # persons 1-20 train in floor(frames / 100) chunks of 100; persons 21-25 test, the first 300 frames of
    # each video that has them
    assert sizes(kth, ("train", "test")) == {"train": 4 + 3 + 6 + 2, "test": 2}
    assert kth.split("test").length == 300 and kth.split("train").length == 100


def test_gqn_mazes_cuts_300_frame_videos_as_cwvae(tmp_path):
    videos = {**{f"train/{k}": (300, {"split": "train"}) for k in range(5)},
              **{f"test/{k}": (300, {"split": "test"}) for k in range(2)}}
    root = fake_root(tmp_path / "gqn-mazes", "gqn-mazes", videos, (64, 64, 3))
    mazes = DATASETS.get("gqn-mazes").create("cwvae", root=str(root), val_fraction=0.2)
    assert sizes(mazes) == {"train": 3 * 4, "val": 1, "test": 2}  # val: whole videos, scored as test


# The preset each clockwork predictor takes per protocol: the reference's own config.
PICKED = {("kth", "htsrm"): {"htsrm": "kth-htsrm", "cwvae": "kth-htsrm"},
          ("mmnist", "htsrm"): {"htsrm": "mmnist", "cwvae": "mmnist"},
          ("mmnist", "cwvae"): {"htsrm": "mmnist", "cwvae": "mmnist"},
          ("gqn-mazes", "cwvae"): {"htsrm": "mazes", "cwvae": "mazes"}}


@pytest.mark.parametrize("dataset, protocol", list(PICKED))
def test_the_reference_presets_are_reached_from_the_protocol(dataset, protocol):
    cls = DATASETS.get(dataset)
    keys = cls.presets_for(cls.protocols[protocol])
    assert keys[0] == f"{dataset}-{protocol}"
    for predictor, preset in PICKED[dataset, protocol].items():
        assert resolve_config(PREDICTORS.get(predictor), keys).preset == preset


def test_synthetic_datasets_offer_protocol_presets_too():
    cls = DATASETS.get("moving-digits")
    assert cls.presets_for(cls.protocols["36to300"]) == ("moving-digits-36to300", "moving-digits")
