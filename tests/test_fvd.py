"""FVD: the Frechet distance against closed forms and scipy, each convention's preprocessing against the
reference's own lines re-implemented here, and the pipeline with a TorchScript detector this file writes (the
real i3d_torchscript.pt cannot be downloaded here; the fake has its call signature and output shape) and with
VideoGPT's InceptionI3d loaded from a state dict of i3d_pretrained_400.pt's layout with random values
(tests/test_i3d.py checks that network against VideoGPT's own)."""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from conftest import run_bench
from test_i3d import write_state_dict
from vpbench.errors import UserError
from vpbench.metrics import weights
from vpbench.metrics.frechet import GaussianSums, frechet_distance, trace_sqrt_product
from vpbench.metrics.fvd import FVD_CONVENTIONS, FvdSums, check_named_files, features, resolve_fvd_conventions

CPU = torch.device("cpu")


# ----------------------------------------------------------------------------------------- the distance

def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def test_commuting_covariances_give_the_closed_form():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T: d^2 = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2
    rng = np.random.default_rng(0)
    d = 30
    q = _rotation(d, 1)
    a, b = rng.uniform(0.1, 5, d), rng.uniform(0.1, 5, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.square(mu1 - mu2).sum() + np.square(np.sqrt(a) - np.sqrt(b)).sum()
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-6)


def test_scaled_covariance_gives_the_closed_form():
    # S2 = c^2 S1 (S1 not diagonal): tr((S1 S2)^(1/2)) = c tr(S1), so d^2 = |dmu|^2 + (1 - c)^2 tr(S1)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 12))
    s1, c = x.T @ x / 50, 1.7
    mu1, mu2 = rng.normal(size=12), rng.normal(size=12)
    expected = np.square(mu1 - mu2).sum() + (1 - c) ** 2 * np.trace(s1)
    assert frechet_distance(mu1, s1, mu2, c * c * s1) == pytest.approx(expected, rel=1e-6)
    assert trace_sqrt_product(s1, c * c * s1) == pytest.approx(c * np.trace(s1), rel=1e-6)


def _stylegan_v_fvd(feats_fake: np.ndarray, feats_real: np.ndarray) -> float:
    # fvd-comparison our_fvd.py compute_fvd()/compute_stats(), line by line
    mu_gen, sigma_gen = feats_fake.mean(axis=0), np.cov(feats_fake, rowvar=False)
    mu_real, sigma_real = feats_real.mean(axis=0), np.cov(feats_real, rowvar=False)
    m = np.square(mu_gen - mu_real).sum()
    s = scipy.linalg.sqrtm(np.dot(sigma_gen, sigma_real))  # theirs passes disp=False, deprecated in scipy 1.17
    return float(np.real(m + np.trace(sigma_gen + sigma_real - s * 2)))


@pytest.mark.parametrize("n", [500, 40])  # more clips than features, and fewer (singular covariances)
def test_random_features_give_scipy_sqrtm_route(n):
    rng = np.random.default_rng(n)
    d = 24
    real = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    fake = rng.normal(0.3, 1.2, size=(n, d)) @ rng.normal(size=(d, d))
    sums = {}
    for name, feats in (("real", real), ("fake", fake)):
        sums[name] = GaussianSums(d)
        for part in np.array_split(feats, 7):  # batches of unequal size
            sums[name].add(torch.from_numpy(part))
    mean, cov = sums["real"].mean_cov()
    np.testing.assert_allclose(mean, real.mean(axis=0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(cov, np.cov(real, rowvar=False), rtol=1e-8, atol=1e-8)
    got = frechet_distance(*sums["fake"].mean_cov(), *sums["real"].mean_cov())
    assert got == pytest.approx(_stylegan_v_fvd(fake, real), rel=1e-6)


def test_identical_features_are_at_distance_zero():
    feats = torch.from_numpy(np.random.default_rng(5).normal(size=(64, 400)))  # 64 clips: a singular covariance
    a, b = GaussianSums(400), GaussianSums(400)
    a.add(feats), b.add(feats)
    mean, cov = a.mean_cov()
    assert abs(frechet_distance(mean, cov, *b.mean_cov())) < 1e-9 * np.trace(cov)


# ------------------------------------------------------------------------------- a detector written here

class FakeI3d(torch.nn.Module):
    """The real file's call: detector(x [B, 3, T, H, W], rescale=, resize=, return_features=) -> [B, 400].
    rescale maps 0..255 to [-1, 1] and resize takes 224x224, as the real one is documented to do; the features are
    a fixed random projection of pooled pixels."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.project = torch.nn.Linear(3 * 4 * 8 * 8, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = x.float()
        if rescale:
            x = x / 127.5 - 1
        if resize:
            x = F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        pooled = F.adaptive_avg_pool3d(x, (4, 8, 8)).flatten(1)
        return torch.tanh(self.project(pooled * 4))


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("i3d") / "fake_i3d_torchscript.pt"
    with pytest.warns(FutureWarning):  # torch's deprecation of TorchScript, which the references' file is
        torch.jit.save(torch.jit.script(FakeI3d().eval()), str(path))
    return path


def _clips(b: int, t: int, c: int, h: int, w: int, seed: int) -> torch.Tensor:
    return torch.rand(b, t, c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(FVD_CONVENTIONS))
def test_fvd_of_predictions_equal_to_the_ground_truth_is_zero(detector_file, name):
    detector = torch.jit.load(str(detector_file))
    sums = FvdSums(FVD_CONVENTIONS[name], detector, {"file": str(detector_file)}, CPU)
    for seed in range(3):
        clip = _clips(4, 20, 1, 32, 32, seed)
        sums.add(clip[:, :10], clip[:, None, 10:], clip[:, 10:], samples=1)
    out = sums.result(1)
    assert out["clips"] == 12 and out["detector"] == {"file": str(detector_file)}
    assert abs(out["fvd"]) < 1e-6
    other = FvdSums(FVD_CONVENTIONS[name], detector, {}, CPU)
    for seed in range(3):
        clip = _clips(4, 20, 1, 32, 32, seed)
        other.add(clip[:, :10], clip[:, None, 10:].flip(2), clip[:, 10:], samples=1)  # frames in reverse
    assert other.result(1)["fvd"] > 1e-3


def test_samples_are_pooled_and_their_mean_taken_as_mcvd_does(detector_file):
    # ncsn_runner.py fvd_stuff(): avg_fvd = frechet_distance(all samples' features, real features);
    # fvd_traj_mean = mean over k of frechet_distance(fake_embeddings[k::preds_per_test], real)
    detector = torch.jit.load(str(detector_file))
    convention = FVD_CONVENTIONS["predbench-jit"]
    sums = FvdSums(convention, detector, {}, CPU)
    real, fake = [], []
    for seed in range(3):
        clip = _clips(4, 20, 1, 32, 32, seed)
        samples = torch.stack([clip[:, 10:], clip[:, 10:].flip(1), clip[:, 10:].roll(5, dims=1)], dim=1)
        sums.add(clip[:, :10], samples, clip[:, 10:], samples=3)
        real.append(features(detector, convention, clip[:, 10:]).numpy())
        fake.append(np.stack([features(detector, convention, samples[:, k]).numpy() for k in range(3)], axis=1))
    real, fake = np.concatenate(real), np.concatenate(fake)  # fake [12, 3, 400]: sequence-major, as MCVD's
    out = sums.result(3)
    assert out["samples"] == 3 and out["clips"] == 12
    assert out["fvd"] == pytest.approx(_stylegan_v_fvd(fake.reshape(-1, 400), real), rel=1e-6)
    per_sample = [_stylegan_v_fvd(fake.reshape(-1, 400)[k::3], real) for k in range(3)]
    assert out["fvd_sample_mean"] == pytest.approx(np.mean(per_sample), rel=1e-6)


def _recording_detector(seen: list) -> callable:
    def detector(x, rescale=False, resize=False, return_features=False):
        seen.append((tuple(x.shape), x.dtype))
        return torch.zeros(x.shape[0], 400)

    return detector


@pytest.mark.parametrize("name", ["mcvd", "predbench-jit", "predbench-400", "videogpt", "tats"])
def test_4k_clips_reach_the_detector_at_224_after_a_frame_at_a_time(name):
    # What a 4K clip costs is read off what the detector and the per-frame steps receive, not timed or measured:
    # the I3D gets the call a 224x224 clip gets; the reference's resize gets one 4K frame at a time, and each is a
    # view of the evaluation's own tensors, so no clip was copied whole at 4K (context and prediction are joined
    # after the resize; one sample of several is not flattened into a copy).
    convention = FVD_CONVENTIONS[name]
    frames_seen = []

    def frame_input(frames):
        frames_seen.append((tuple(frames.shape), frames.untyped_storage().data_ptr()))
        return convention.frame_input(frames)

    seen = []
    sums = FvdSums(dataclasses.replace(convention, frame_input=frame_input), _recording_detector(seen), {}, CPU)
    clips = torch.rand(1, 1, 1, 1, 1).expand(2, 10, 1, 2160, 3840)  # 2 grey 4K clips without 660 MB of memory
    sums.add(clips[:, :5], clips[:, None, 5:], clips[:, 5:], samples=1)  # ground truth, then the prediction
    owner = clips.untyped_storage().data_ptr()
    per_clip = 10 if convention.frames == "context+prediction" else 5
    assert frames_seen == [((1, 1, 2160, 3840), owner)] * (2 * 2 * per_clip)
    small = []
    features(_recording_detector(small), convention, torch.rand(2, per_clip, 1, 64, 64))
    assert seen == small * 2 == [((2, 3, 10, 224, 224), torch.float32)] * 2  # as for 64x64 clips
    seen.clear()
    features(_recording_detector(seen), convention, torch.rand(9, 10, 1, 64, 64))
    assert [shape for shape, _ in seen] == [(6, 3, 10, 224, 224), (3, 3, 10, 224, 224)]  # a few clips per call
    frames_seen.clear()
    context, target, samples = torch.rand(3, 5, 1, 64, 64), torch.rand(3, 5, 1, 64, 64), torch.rand(3, 2, 5, 1, 64, 64)
    sums.add(context, samples, target, samples=2)
    owners = {t.untyped_storage().data_ptr() for t in (context, target, samples)}
    assert len(frames_seen) == 3 * (per_clip // 5) * 3 and {ptr for _, ptr in frames_seen} <= owners


def test_stylegan_v_hands_the_detector_one_clip_at_its_own_size():
    # Its detector resizes (resize=True) with code inside i3d_torchscript.pt that vpbench cannot reproduce
    # outside it: large clips go in one per call, as uint8 (a quarter of a float copy)
    seen = []
    clips = torch.rand(1, 1, 1, 1, 1).expand(2, 10, 1, 1080, 1920)
    features(_recording_detector(seen), FVD_CONVENTIONS["stylegan-v"], clips)
    assert seen == [((1, 3, 10, 1080, 1920), torch.uint8)] * 2


# ----------------------------------------------------- each convention against its reference's own lines

def test_stylegan_v_quantises_as_its_generator_loop():
    # metric_utils.py compute_feature_stats_for_generator(): img = G(...) in [-1, 1], [b*t, c, h, w];
    # img.view(bt // num_video_frames, num_video_frames, c, h, w).permute(0, 2, 1, 3, 4);
    # img = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8); images.repeat([1, 3, 1, 1, 1]) if grey
    clips = _clips(2, 12, 1, 16, 24, 3)
    img = (clips * 2 - 1).flatten(0, 1)
    img = img.view(2, 12, 1, 16, 24).permute(0, 2, 1, 3, 4).contiguous()
    img = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    img = img.repeat([1, 3, 1, 1, 1])
    ours = FVD_CONVENTIONS["stylegan-v"].prepare(clips)
    assert ours.dtype == torch.uint8 and torch.equal(ours, img)
    assert FVD_CONVENTIONS["stylegan-v"].rescale_in_detector  # detector_kwargs rescale=True, resize=True


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (90, 50)])
def test_mcvd_matches_preprocess_single(size):
    # models/fvd/fvd.py preprocess_single(video CTHW in [0, 1], resolution=224), after ncsn_runner.py to_i3d()
    # (grey repeated, BTCHW -> BCTHW); the interpolation there runs on [C, T, H, W] (C as the batch)
    h, w = size
    clips = _clips(2, 12, 1, h, w, 4)
    expected = []
    for x in clips.repeat(1, 1, 3, 1, 1).permute(0, 2, 1, 3, 4):
        c, t, hh, ww = x.shape
        scale = 224 / min(hh, ww)
        target = (224, math.ceil(ww * scale)) if hh < ww else (math.ceil(hh * scale), 224)
        x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
        c, t, hh, ww = x.shape
        w_start, h_start = (ww - 224) // 2, (hh - 224) // 2
        x = x[:, :, h_start:h_start + 224, w_start:w_start + 224]
        expected.append(((x - 0.5) * 2).contiguous())
    torch.testing.assert_close(FVD_CONVENTIONS["mcvd"].prepare(clips), torch.stack(expected), rtol=0, atol=1e-6)


@pytest.mark.parametrize("t", [10, 5])
def test_predbench_matches_its_feature_extractor(t):
    # perception_metrics.py process(): pred * 2.0 - 1.0 (norm_01); fvd.py FVDFeatureExtractor.__call__:
    # bilinear_interpolation (_resize_video: '(n t) c h w' to 224x224), 'n t c h w -> n c t h w', zero-pad T < 10
    # to 10, repeat grey to 3 channels
    clips = _clips(2, t, 1, 48, 80, 6)
    videos = clips * 2.0 - 1.0
    n = videos.shape[0]
    v = videos.reshape(-1, 1, 48, 80)
    v = F.interpolate(v, size=(224, 224), mode="bilinear", align_corners=False).reshape(n, t, 1, 224, 224)
    v = v.permute(0, 2, 1, 3, 4)
    if t < 10:
        padded = torch.zeros((n, 1, 10, 224, 224), dtype=v.dtype)
        padded[:, :, 0:t] = v
        v = padded
    v = v.repeat(1, 3, 1, 1, 1)
    torch.testing.assert_close(FVD_CONVENTIONS["predbench-jit"].prepare(clips), v, rtol=0, atol=1e-6)
    # its default detector, i3d_400: the same input to VideoGPT's network, called as `self.extractor(videos)`
    torch.testing.assert_close(FVD_CONVENTIONS["predbench-400"].prepare(clips), v, rtol=0, atol=1e-6)
    assert FVD_CONVENTIONS["predbench-400"].detect(lambda x: x.mean(dim=(2, 3, 4)), v).shape == (2, 3)


def _videogpt_data_preprocess(video, resolution):
    # VideoGPT videogpt/data.py preprocess(video THWC uint8, resolution), line by line
    video = video.permute(0, 3, 1, 2).float() / 255.
    t, c, h, w = video.shape
    scale = resolution / min(h, w)
    if h < w:
        target_size = (resolution, math.ceil(w * scale))
    else:
        target_size = (math.ceil(h * scale), resolution)
    video = F.interpolate(video, size=target_size, mode='bilinear', align_corners=False)
    t, c, h, w = video.shape
    w_start = (w - resolution) // 2
    h_start = (h - resolution) // 2
    video = video[:, :, h_start:h_start + resolution, w_start:w_start + resolution]
    video = video.permute(1, 0, 2, 3).contiguous()
    video -= 0.5
    return video


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (90, 50)])
def test_videogpt_matches_its_compute_fvd(size):
    # scripts/compute_fvd.py eval_fvd(): fake.permute(0, 2, 3, 4, 1).cpu().numpy() (BCTHW -> BTHWC), then
    # (fake * 255).astype('uint8'); videogpt/fvd/fvd.py preprocess(): torch.from_numpy, data.preprocess per video
    # (resolution 224), stacked, * 2. VideoGPT's frames are RGB; a grey clip is repeated to 3 channels first
    h, w = size
    clips = _clips(2, 12, 1, h, w, 8)
    clips[0, 0, 0, :4, :4] = torch.tensor([0.0, 1.0, 1 / 255, 254.9999 / 255])  # the ends, and truncation
    rgb = clips.repeat(1, 1, 3, 1, 1)
    videos = (rgb.permute(0, 1, 3, 4, 2).numpy() * 255).astype('uint8')  # BTHWC
    videos = torch.from_numpy(videos)
    expected = torch.stack([_videogpt_data_preprocess(video, 224) for video in videos]) * 2
    ours = FVD_CONVENTIONS["videogpt"].prepare(clips)
    assert ours.shape == (2, 3, 12, 224, 224)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)
    assert FVD_CONVENTIONS["videogpt"].detect(lambda x: x.mean(dim=(2, 3, 4)), ours).shape == (2, 3)  # i3d(batch)


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_tats_matches_its_sample_script(size):
    # scripts/sample_vqgan_transformer_short_videos.py: all_data_np (BCTHW) transposed to BTHWC,
    # (all_data_np * 255).astype(np.uint8); tats/fvd/fvd.py preprocess(videos, (224, 224)), line by line
    h, w = size
    clips = _clips(2, 12, 3, h, w, 9)
    videos = (clips.permute(0, 1, 3, 4, 2).numpy() * 255).astype(np.uint8)
    b, t, hh, ww, c = videos.shape
    all_frames = torch.FloatTensor(videos).flatten(end_dim=1)
    all_frames = all_frames.permute(0, 3, 1, 2).contiguous()
    resized_videos = F.interpolate(all_frames, size=(224, 224), mode='bilinear', align_corners=False)
    resized_videos = resized_videos.view(b, t, c, 224, 224)
    output_videos = resized_videos.transpose(1, 2).contiguous()
    scaled_videos = 2. * output_videos / 255. - 1
    torch.testing.assert_close(FVD_CONVENTIONS["tats"].prepare(clips), scaled_videos, rtol=0, atol=1e-6)


def test_videogpt_and_tats_differ_only_off_the_square():
    # TATS stretches to 224x224 where VideoGPT crops the centre: the same input on square frames, not otherwise
    square, wide = _clips(1, 10, 3, 64, 64, 10), _clips(1, 10, 3, 48, 80, 10)
    videogpt, tats = FVD_CONVENTIONS["videogpt"], FVD_CONVENTIONS["tats"]
    torch.testing.assert_close(videogpt.prepare(square), tats.prepare(square), rtol=0, atol=1e-5)
    assert (videogpt.prepare(wide) - tats.prepare(wide)).abs().max() > 0.1


def test_conventions_differ_in_the_frames_they_take_and_short_clips():
    from vpbench.spec import VideoSpec

    short = VideoSpec(1, 64, 64, 2, 5)
    assert FVD_CONVENTIONS["predbench-jit"].problem(short) is None  # padded to 10
    assert "shorter than the 10" in FVD_CONVENTIONS["mcvd"].problem(short)
    assert FVD_CONVENTIONS["mcvd"].clip_frames(short) == 7 and FVD_CONVENTIONS["predbench-jit"].clip_frames(short) == 5
    # VideoGPT's I3D takes 9 frames at the fewest (tests/test_i3d.py); sjtu4k's 4 -> 4 clips are too short
    assert FVD_CONVENTIONS["videogpt"].problem(VideoSpec(3, 64, 64, 5, 4)) is None
    assert "shorter than the 9" in FVD_CONVENTIONS["tats"].problem(VideoSpec(3, 2176, 4096, 4, 4))


def test_unknown_fvd_convention_is_a_user_error():
    assert [c.name for c in resolve_fvd_conventions(["PredBench", "fvd-comparison", "mcvd"])] == \
        ["predbench-jit", "stylegan-v", "mcvd"]
    with pytest.raises(UserError, match="unknown FVD convention 'fvd-tf'"):
        resolve_fvd_conventions(["fvd-tf"])
    # a file named with the other detector's flag is a mix-up, said in one line
    with pytest.raises(UserError, match=r"--i3d-weights names i3d_torchscript.pt, which --fvd videogpt does not read "
                                        r"\(it is for stylegan-v, mcvd, predbench-jit\); i3d_pretrained_400.pt is "
                                        r"named by --i3d-pytorch-weights"):
        check_named_files(resolve_fvd_conventions(["videogpt"]), {"i3d-torchscript": "x.pt", "i3d-pytorch": None})
    check_named_files(resolve_fvd_conventions(["videogpt", "mcvd"]), {"i3d-torchscript": "x.pt", "i3d-pytorch": "y.pt"})


# ------------------------------------------------------------------------------------------ the commands

COMMON = ["--models", "copy-last", "--dataset", "moving-digits", "--set", "data.train_size=8",
          "--set", "data.val_size=2", "--set", "data.test_size=7", "--set", "eval_batch_size=2"]


def _result(root: Path) -> dict:
    (path,) = root.rglob("result.json")
    return json.loads(path.read_text())


def test_without_the_i3d_file_fvd_is_not_measured_and_says_where_it_goes(tmp_path):
    env = {"TORCH_HOME": str(tmp_path / "empty"), "VPBENCH_I3D_WEIGHTS": "", "VPBENCH_I3D_PYTORCH_WEIGHTS": ""}
    out = run_bench("run", *COMMON, "--fvd", "stylegan-v,videogpt", "--out", "R", cwd=tmp_path, env=env).stdout
    result = _result(tmp_path / "R")
    where = str(tmp_path / "empty" / "hub" / "checkpoints")
    for name, file, flag in (("stylegan-v", "i3d_torchscript.pt", "--i3d-weights"),
                             ("videogpt", "i3d_pretrained_400.pt", "--i3d-pytorch-weights")):
        reason = result["eval"]["not_measured"][f"fvd@{name}"]
        assert "weights missing" in reason and file in reason and where in reason and flag in reason
        assert f"FVD↓ mean ({name})" in out and f"FVD ({name}) not measured: weights missing" in out
    assert "fvd" not in result["eval"] and where in out
    shown = run_bench("weights", "--only", "i3d-torchscript", "--only", "i3d-pytorch", cwd=tmp_path, env=env).stdout
    assert "i3d_torchscript.pt" in shown and "sha256:    none published" in shown and "--i3d-weights" in shown
    assert "git blob id 93daef59c7ae0e9e8f76225521407e60cbafa6aa" in shown
    assert "i3d_pretrained_400.pt" in shown and "git blob id a867b87ac3a9097d200598b1d48a1b890d8ec744" in shown
    assert "--i3d-pytorch-weights" in shown and "github.com/SongweiGe/TATS/raw/1aa93e1" in shown
    bad = run_bench("run", *COMMON, "--fvd", "fvd-tf", cwd=tmp_path, env=env, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: unknown FVD convention")
    assert "Traceback" not in bad.stderr and not (tmp_path / "runs").exists()
    alone = run_bench("run", *COMMON, "--i3d-weights", "i3d.pt", cwd=tmp_path, env=env, check=False)
    assert alone.returncode == 2 and alone.stderr.strip().startswith("error: --i3d-weights is read only for FVD")
    alone = run_bench("run", *COMMON, "--i3d-pytorch-weights", "i3d.pt", cwd=tmp_path, env=env, check=False)
    assert alone.returncode == 2 and alone.stderr.strip().startswith("error: --i3d-pytorch-weights is read only")
    mixed = run_bench("run", *COMMON, "--fvd", "videogpt", "--i3d-weights", "i3d.pt", cwd=tmp_path, env=env,
                      check=False)
    assert mixed.returncode == 2 and "Traceback" not in mixed.stderr
    assert mixed.stderr.strip().startswith("error: --i3d-weights names i3d_torchscript.pt, which --fvd videogpt")
    assert not (tmp_path / "runs").exists()


def test_a_file_at_the_default_location_is_not_used_unless_vouched_for(tmp_path, detector_file, monkeypatch):
    home = tmp_path / "home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    (home / "hub" / "checkpoints" / "i3d_torchscript.pt").write_bytes(detector_file.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("VPBENCH_I3D_WEIGHTS", raising=False)
    res = weights.resolve(weights.I3D_TORCHSCRIPT)
    assert not res.usable and "is not the i3d_torchscript.pt that common_metrics_on_video_quality commits" in res.problem
    assert "(93daef59c7ae...)" in res.problem and "--i3d-weights" in res.problem
    vouched = weights.resolve(weights.I3D_TORCHSCRIPT, detector_file)
    assert vouched.usable and not vouched.check.verified and vouched.source == "explicit"
    # a file whose git blob id (git's own: `git hash-object`) is the committed one is verified and used from there
    blob = subprocess.run(["git", "hash-object", str(home / "hub" / "checkpoints" / "i3d_torchscript.pt")],
                          capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.setattr(weights, "_I3D_TORCHSCRIPT_BLOB", blob)
    res = weights.resolve(weights.I3D_TORCHSCRIPT)
    assert res.usable and res.check.verified and res.source == "default location"


def test_two_ranks_give_the_one_rank_fvd(tmp_path, detector_file):
    args = ["eval", *COMMON, "--i3d-weights", str(detector_file)]
    env = {"VPBENCH_THREADS": "1", "TORCH_HOME": str(tmp_path / "empty")}
    run_bench(*args, "--fvd", "mcvd", "--out", "one", cwd=tmp_path, env=env)
    # a convention the result lacks: the run is evaluated again and keeps the FVD it had
    again = run_bench(*args, "--fvd", "predbench-jit", "--out", "one", cwd=tmp_path, env=env)
    said = " ".join((again.stdout + again.stderr).split())  # the console wraps long lines
    assert "without convention(s) FVD predbench-jit: evaluating again" in said
    report = run_bench(*args, "--fvd", "mcvd,predbench-jit", "--out", "two", "--nproc", "2", cwd=tmp_path,
                       env=env).stdout
    one, two = _result(tmp_path / "one"), _result(tmp_path / "two")
    assert one["eval"]["weights"]["i3d-torchscript"]["file"] == str(detector_file)
    assert (one["world_size"], two["world_size"]) == (1, 2)
    for name in ("mcvd", "predbench-jit"):
        a, b = one["eval"]["fvd"][name], two["eval"]["fvd"][name]
        assert a["clips"] == b["clips"] == 7 and a["fvd"] > 0
        assert b["fvd"] == pytest.approx(a["fvd"], rel=1e-6)
        # which file made the number is recorded, and it is not a verified I3D
        assert a["detector"]["file"] == str(detector_file) and a["detector"]["verified"] is False
    assert "(7 clips)" in report and "i3d-torchscript weights vouched for by the user, not verified" in report


def test_videogpt_and_tats_run_videogpts_network_from_a_file_of_its_layout(tmp_path):
    # The pipeline end to end with VideoGPT's InceptionI3d: a state dict written here in i3d_pretrained_400.pt's
    # layout (random values) named by --i3d-pytorch-weights, loaded strictly, 9-frame clips (the I3D's fewest)
    # scored in both conventions; the result keeps which file made the numbers and the report says it is not
    # the published one. Not an FVD anyone could quote: the weights are random.
    state = write_state_dict(tmp_path / "random_i3d_400.pt")
    env = {"VPBENCH_THREADS": "1", "TORCH_HOME": str(tmp_path / "empty")}
    args = ["eval", "--models", "copy-last", "--dataset", "moving-digits", "--context", "5", "--horizon", "4",
            "--set", "data.train_size=4", "--set", "data.val_size=2", "--set", "data.test_size=3",
            "--set", "eval_batch_size=2", "--fvd", "videogpt,tats", "--i3d-pytorch-weights", str(state)]
    report = run_bench(*args, "--out", "R", cwd=tmp_path, env=env).stdout
    result = _result(tmp_path / "R")
    record = result["eval"]["weights"]["i3d-pytorch"]
    assert record["file"] == str(state) and record["verified"] is False and "i3d-torchscript" not in result["eval"]["weights"]
    for name, clips in (("videogpt", 256), ("tats", 2048)):
        block = result["eval"]["fvd"][name]
        assert block["clips"] == 3 and block["reference_clips"] == clips and block["fvd"] > 0
        assert block["detector"]["file"] == str(state) and "InceptionI3d" in block["settings"]["detector"]
        assert block["settings"]["min_frames"] == 9
    # moving-digits frames are square: the crop and the stretch give the same input, hence the same FVD
    assert result["eval"]["fvd"]["videogpt"]["fvd"] == pytest.approx(result["eval"]["fvd"]["tats"]["fvd"], rel=1e-4)
    assert "(3 clips" in report and "i3d-pytorch weights vouched for by the user, not verified" in report
