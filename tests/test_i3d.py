"""VideoGPT's I3D (vpbench.metrics.i3d): its state-dict layout against GoogLeNet's published widths, its outputs
against VideoGPT's own pytorch_i3d.py run on the same random weights (tests/fixtures/references/
make_videogpt_i3d.py), and the file check of `i3d_pretrained_400.pt` (loads strictly; verified only by the git
blob id TATS commits). The real file cannot be downloaded here: these tests write files of its layout."""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from vpbench.digest import git_blob_sha1
from vpbench.errors import UserError
from vpbench.metrics import weights
from vpbench.metrics.i3d import InceptionI3d, load_i3d

FIXTURE = Path(__file__).parent / "fixtures" / "references" / "videogpt_i3d.expected.pt"

# Szegedy et al. 2015 ("Going deeper with convolutions"), Table 1, inception (3a) to (5b): #1x1, #3x3 reduce,
# #3x3, #5x5 reduce, #5x5, pool proj. I3D (Carreira & Zisserman 2017, Fig. 3) names them Mixed_3b ... Mixed_5c
# and makes the 5x5 branch 3x3x3.
GOOGLENET = [("Mixed_3b", 64, 96, 128, 16, 32, 32), ("Mixed_3c", 128, 128, 192, 32, 96, 64),
             ("Mixed_4b", 192, 96, 208, 16, 48, 64), ("Mixed_4c", 160, 112, 224, 24, 64, 64),
             ("Mixed_4d", 128, 128, 256, 24, 64, 64), ("Mixed_4e", 112, 144, 288, 32, 64, 64),
             ("Mixed_4f", 256, 160, 320, 32, 128, 128), ("Mixed_5b", 256, 160, 320, 32, 128, 128),
             ("Mixed_5c", 384, 192, 384, 48, 128, 128)]


def _expected_layout() -> dict[str, tuple[int, ...]]:
    """The names and shapes VideoGPT's converter writes (convert_tf_pretrained.py: conv3d.weight; bn.bias from TF's
    beta, bn.weight added as ones, running mean and variance; the logits' conv3d weight and bias), worked out here
    from the stem of I3D and the table above."""
    out: dict[str, tuple[int, ...]] = {}

    def unit(name: str, cin: int, cout: int, k: int) -> None:
        out[f"{name}.conv3d.weight"] = (cout, cin, k, k, k)
        for tensor in ("weight", "bias", "running_mean", "running_var"):
            out[f"{name}.bn.{tensor}"] = (cout,)

    unit("Conv3d_1a_7x7", 3, 64, 7)
    unit("Conv3d_2b_1x1", 64, 64, 1)
    unit("Conv3d_2c_3x3", 64, 192, 3)
    cin = 192
    for name, w1, r3, w3, r5, w5, pool in GOOGLENET:
        unit(f"{name}.b0", cin, w1, 1)
        unit(f"{name}.b1a", cin, r3, 1)
        unit(f"{name}.b1b", r3, w3, 3)
        unit(f"{name}.b2a", cin, r5, 1)
        unit(f"{name}.b2b", r5, w5, 3)
        unit(f"{name}.b3b", cin, pool, 1)
        cin = w1 + w3 + w5 + pool
    out["logits.conv3d.weight"] = (400, cin, 1, 1, 1)
    out["logits.conv3d.bias"] = (400,)
    return out


def random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> OrderedDict:
    """make_videogpt_i3d.py's random_state, restated: sorted names, one seeded generator; convolutions He-scaled
    normals, batch-norm scales and variances in [0.5, 1.5), the rest 0.1 N(0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for name in sorted(shapes):
        shape = shapes[name]
        if name.endswith("conv3d.weight"):
            state[name] = torch.randn(shape, generator=generator) * math.sqrt(2 / math.prod(shape[1:]))
        elif name.endswith(("bn.weight", "running_var")):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[name] = torch.randn(shape, generator=generator) * 0.1
    return state


def write_state_dict(path: Path, seed: int = 0) -> Path:
    """A file of i3d_pretrained_400.pt's layout: `torch.save` of an OrderedDict of float32 tensors, as the converter
    saves it (no num_batches_tracked, no version metadata)."""
    torch.save(random_state(_expected_layout(), seed), path)
    return path


def test_state_dict_names_are_googlenets_blocks_and_the_references():
    ours = {k: tuple(v.shape) for k, v in InceptionI3d().state_dict().items() if not k.endswith("num_batches_tracked")}
    expected = _expected_layout()
    assert ours == expected
    assert torch.load(FIXTURE, weights_only=True)["shapes"] == expected  # the reference module's own state dict
    assert sum(math.prod(s) for n, s in expected.items() if "running" not in n) == 12_697_264  # "12M" (I3D, Table 1)


def test_network_computes_what_videogpts_pytorch_i3d_computes(tmp_path):
    # Max differences seen: 0.0 for the logits (range -40.7..37.6) and the trunk (|x| up to 49.8).
    expected = torch.load(FIXTURE, weights_only=True)
    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save(random_state(expected["shapes"], expected["seed"]), path)
    network = load_i3d(path)  # strict: every name of the file is one of ours and the other way round
    inputs = {}
    for key in ("logits_input", "trunk_input"):
        shape, seed = expected[key]
        inputs[key] = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    with torch.no_grad():
        logits = network(inputs["logits_input"])
        trunk = network.trunk(inputs["trunk_input"])
    assert logits.shape == (1, 400) and trunk.shape == (1, 1024, 2, 3, 2)
    # 0.0 when run alone; fp32 rounding where the suite's earlier tests leave torch's convolutions on another
    # summation order (1.3e-5 on logits of up to 40 seen: 7e-6 relative)
    torch.testing.assert_close(logits, expected["logits"], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(trunk, expected["trunk"], rtol=1e-5, atol=1e-4)


def test_nine_frames_are_the_fewest_the_temporal_pool_takes():
    network = InceptionI3d().eval()
    with torch.no_grad():
        assert network(torch.zeros(1, 3, 9, 224, 224)).shape == (1, 400)
        with pytest.raises(RuntimeError):
            network(torch.zeros(1, 3, 8, 224, 224))  # 8 -> 4 -> 2 -> 1 time steps, under the pool's 2


def test_git_blob_id_is_gits(tmp_path):
    # `git hash-object` of an empty file and of "hello\n", as git prints them
    path = tmp_path / "f"
    for content, blob in ((b"", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"),
                          (b"hello\n", "ce013625030ba8dba906f756967f9e9ca394464a")):
        path.write_bytes(content)
        assert git_blob_sha1(path) == blob


def test_a_file_of_the_layout_is_used_when_named_and_verified_only_as_tatss_blob(tmp_path, monkeypatch):
    named = write_state_dict(tmp_path / "mine.pt")
    home = tmp_path / "home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("VPBENCH_I3D_PYTORCH_WEIGHTS", raising=False)
    res = weights.resolve(weights.I3D_PYTORCH, named)
    assert res.usable and res.source == "explicit" and not res.check.verified
    assert "is not the one TATS commits (a867b87ac3a9" in res.check.text
    # at the default place, an unverified file is not used; one whose blob id is the committed one is
    (home / "hub" / "checkpoints").mkdir(parents=True)
    placed = home / "hub" / "checkpoints" / "i3d_pretrained_400.pt"
    placed.write_bytes(named.read_bytes())
    res = weights.resolve(weights.I3D_PYTORCH)
    assert not res.usable and "--i3d-pytorch-weights" in res.problem
    monkeypatch.setattr(weights, "_I3D_400_BLOB", git_blob_sha1(placed))
    res = weights.resolve(weights.I3D_PYTORCH)
    assert res.usable and res.check.verified and res.source == "default location"


def test_a_file_of_another_layout_is_refused_in_one_line(tmp_path):
    state = random_state(_expected_layout(), 0)
    del state["Mixed_4c.b2b.bn.running_var"]
    torch.save(state, tmp_path / "short.pt")
    with pytest.raises(UserError, match=r"not a state dict of VideoGPT's InceptionI3d \(RuntimeError: .*Missing key"):
        weights.resolve(weights.I3D_PYTORCH, tmp_path / "short.pt")
    (tmp_path / "text.pt").write_text("not a torch file")
    with pytest.raises(UserError, match="not a state dict of VideoGPT's InceptionI3d"):
        weights.resolve(weights.I3D_PYTORCH, tmp_path / "text.pt")
