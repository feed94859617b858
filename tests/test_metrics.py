"""vpbench.metrics.frame must reproduce scikit-image's SSIM and PSNR; papers will quote these numbers."""
import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vpbench.metrics.accumulate import MetricSums
from vpbench.metrics import frame
from vpbench.metrics.frame import METRICS, FrameMetric, _ssim, psnr, ssim

TOL = 1e-4
SHAPES = [(1, 64, 64), (3, 64, 64), (1, 48, 80), (3, 48, 80), (3, 11, 11), (1, 13, 29)]


def sk_ssim(pred: np.ndarray, target: np.ndarray, data_range: float = 1.0, **overrides) -> float:
    kwargs = dict(data_range=data_range, gaussian_weights=True, sigma=1.5,
                  use_sample_covariance=False, channel_axis=0)
    kwargs.update(overrides)
    return float(structural_similarity(pred, target, **kwargs))


def sk_psnr(pred: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> float:
    with np.errstate(divide="ignore"):
        return float(peak_signal_noise_ratio(target, pred, data_range=data_range))


def make_pairs(c: int, h: int, w: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(pred, target) float64 pairs in [0, 1] spanning low to very high SSIM."""
    rng = np.random.default_rng(seed)
    noise = lambda scale: scale * rng.standard_normal((c, h, w))  # noqa: E731
    yy, xx = np.mgrid[0:h, 0:w]
    gradient = np.stack([(xx / w * (k + 1) + yy / h) / (k + 2) for k in range(c)])
    checker = np.broadcast_to(((yy // 4 + xx // 4) % 2).astype(float), (c, h, w))
    disc = np.broadcast_to((((yy - h / 2) ** 2 + (xx - w / 3) ** 2) < (min(h, w) / 3) ** 2) * 0.8 + 0.1, (c, h, w))
    field = gaussian_filter(rng.random((c, h, w)), (0, 2, 2))
    field = (field - field.min()) / (field.max() - field.min())
    flat = np.full((c, h, w), 0.9)
    pairs = {
        "uniform-random": (rng.random((c, h, w)), rng.random((c, h, w))),
        "gradient+noise": (gradient + noise(0.02), gradient),
        "checker-blur+noise": (gaussian_filter(checker, (0, 1, 1)) + noise(0.05), checker),
        "disc-shifted": (np.roll(disc, 2, axis=2), disc),
        "field-blur+noise": (gaussian_filter(field, (0, 1.2, 1.2)) + noise(0.03), field),
        "field+light-noise": (field + noise(0.01), field),
        "dark-brightness-shift": (0.1 * field + 0.03, 0.1 * field),  # exercises C1, the luminance term
        "flat-bright-tiny-noise": (flat + noise(1e-3), flat),  # where E[x^2]-E[x]^2 cancels
    }
    return {k: (np.clip(p, 0, 1), np.ascontiguousarray(t)) for k, (p, t) in pairs.items()}


def batch(pairs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.from_numpy(np.stack([p for p, _ in pairs.values()])),
            torch.from_numpy(np.stack([t for _, t in pairs.values()])))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_ssim_and_psnr_match_skimage(shape):
    pairs = make_pairs(*shape)
    pred, target = batch(pairs)
    ours_ssim, ours_psnr = ssim(pred, target), psnr(pred, target)
    assert ours_ssim.shape == ours_psnr.shape == (len(pairs),)
    for i, (name, (p, t)) in enumerate(pairs.items()):
        assert ours_ssim[i].item() == pytest.approx(sk_ssim(p, t), abs=TOL), name
        assert ours_psnr[i].item() == pytest.approx(sk_psnr(p, t), abs=TOL), name


def test_cases_span_high_and_low_ssim():
    refs = [sk_ssim(p, t) for p, t in make_pairs(3, 64, 64).values()]
    assert max(refs) > 0.99 and sum(r > 0.9 for r in refs) >= 2 and min(refs) < 0.1


@pytest.mark.parametrize("shape", [(3, 64, 64), (1, 48, 80), (1, 11, 11)], ids=lambda s: "x".join(map(str, s)))
def test_float32_centred_path_matches_skimage(shape):
    # The path used where float64 is unavailable (MPS), checked here on CPU.
    pairs = make_pairs(*shape, seed=1)
    pred, target = batch(pairs)
    ours = _ssim(pred.float(), target.float(), 1.0, torch.float32)
    for i, (name, (p, t)) in enumerate(pairs.items()):
        assert ours[i].item() == pytest.approx(sk_ssim(p, t), abs=TOL), name


def test_float32_path_survives_cancellation():
    # Bright, nearly flat 11x11 frames: E[x^2] ~ 0.94 while the variance is ~1e-6, so float32
    # moments without centring miss skimage by up to ~3e-4 here; centred they stay within ~1e-7.
    g = torch.Generator().manual_seed(0)
    pred = (0.97 + 1e-3 * torch.randn(16, 1, 11, 11, generator=g)).clamp(0, 1)
    target = (0.97 + 1e-3 * torch.randn(16, 1, 11, 11, generator=g)).clamp(0, 1)
    ours = _ssim(pred, target, 1.0, torch.float32).numpy()
    ref = [sk_ssim(p, t) for p, t in zip(pred.double().numpy(), target.double().numpy())]
    assert ours == pytest.approx(ref, abs=TOL)


def hard_pairs(c: int, h: int, w: int, seed: int = 2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Cases for float32: large means with small variances, exact 0/1 plateaus next to each other."""
    rng = np.random.default_rng(seed)
    noise = lambda scale: scale * rng.standard_normal((c, h, w))  # noqa: E731
    yy, xx = np.mgrid[0:h, 0:w]
    halves = np.broadcast_to((xx >= w // 2).astype(float), (c, h, w))
    ramp = np.broadcast_to(0.2 + 0.6 * (xx + 2 * yy) / (w + 2 * h), (c, h, w))
    binary = (rng.random((c, h, w)) > 0.5).astype(float)
    pairs = {
        "near-constant-bright": (0.999 + noise(1e-4), np.full((c, h, w), 0.9995) + noise(1e-4)),
        "near-constant-dark": (1e-3 + np.abs(noise(1e-4)), np.abs(noise(1e-4))),
        "binary-0-1-vs-flipped": (binary, np.where(rng.random((c, h, w)) < 0.05, 1 - binary, binary)),
        "all-ones-vs-all-zeros": (np.ones((c, h, w)), np.zeros((c, h, w))),
        "ramp+noise": (ramp + noise(0.01), ramp.copy()),
        "0-1-halves+noise": (halves + noise(1e-4), halves.copy()),  # exact plateaus once clipped
    }
    return {k: (np.clip(p, 0, 1), np.clip(t, 0, 1)) for k, (p, t) in pairs.items()}


FAST_SHAPES = [(1, 11, 11), (3, 11, 11), (1, 64, 64), (3, 64, 64), (1, 13, 29), (3, 48, 80), (1, 150, 37),
               (3, 140, 270)]


@pytest.mark.parametrize("pieces", ["whole", "tiled"])
@pytest.mark.parametrize("shape", FAST_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fast_ssim_matches_skimage_and_reference(shape, pieces, monkeypatch):
    # float32 band-matrix path against skimage within 1e-5, and against the float64 grouped-conv reference.
    if pieces == "tiled":  # small tiles and pieces, so that bands of rows and tiles of columns meet in small images
        monkeypatch.setattr(frame, "_TILE", 16)
        monkeypatch.setattr(frame, "_CHUNK_PIXELS", {"cpu": 40 * shape[0] * shape[2]})
    pairs = {**make_pairs(*shape, seed=3), **hard_pairs(*shape)}
    pred, target = batch(pairs)
    for p, t in [(pred, target), (pred.float(), target.float())]:
        ours = ssim(p, t)
        assert ours.dtype == torch.float64 and ours.shape == (len(pairs),)
        assert ours.numpy() == pytest.approx(ssim(p, t, exact=True).numpy(), abs=1e-5)
    ref = [sk_ssim(p, t) for p, t in pairs.values()]
    for name, ours_i, ref_i in zip(pairs, ssim(pred, target).tolist(), ref):
        assert ours_i == pytest.approx(ref_i, abs=1e-5), name


def test_fast_ssim_redoes_float32_plateaus_in_float64():
    # Plateaus of identical values far from the image mean (exact 0 and 1 halves, variances ~1e-8) make every
    # plateau window round alike in float32: E[x^2] - E[x]^2 errs by a few ulps of 0.25 against C2 = 9e-4,
    # 1e-5 to 3e-5 on the mean. Such images are flagged by their rounding risk and redone in float64.
    for shape in [(1, 13, 29), (3, 64, 64), (1, 128, 96)]:
        rng = np.random.default_rng(5)
        halves = np.broadcast_to((np.mgrid[0:shape[1], 0:shape[2]][1] >= shape[2] // 2).astype(float), shape)
        p, t = np.clip(halves + 1e-4 * rng.standard_normal(shape), 0, 1), np.array(halves)
        pred, target, ref = torch.from_numpy(p[None]), torch.from_numpy(t[None]), sk_ssim(p, t)
        sums = frame._ssim_pieces(pred.float(), target.float(), 1.0, torch.float32)
        pixels = shape[0] * (shape[1] - 10) * (shape[2] - 10)
        assert abs(sums[0, 0].item() / pixels - ref) > 2e-6  # float32 alone is off here ...
        assert sums[1, 0].item() * 2.0**-24 / pixels > frame._RISK  # ... and says so
        assert ssim(pred, target).item() == pytest.approx(ref, abs=1e-9)
        assert ssim(pred.float(), target.float()).item() == pytest.approx(ref, abs=1e-5)


def test_fast_ssim_on_binary_digit_frames():
    # Moving-digits-like frames, 0 background and 1 strokes, predicted blurred and quantised to uint8 levels:
    # the data that calibrated _RISK (float32 kept, errors ~2e-6 measured; the bound is 1e-5).
    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[0:64, 0:64]
    target = np.zeros((24, 1, 64, 64))
    for frame_ in target:
        for cy, cx, r in rng.uniform((10, 10, 4), (54, 54, 9), size=(2, 3)):
            frame_[0][np.abs(np.hypot(yy - cy, xx - cx) - r) < 2] = 1.0
    pred = np.round(np.clip(gaussian_filter(target, (0, 0, 1, 1)), 0, 1) * 255) / 255
    for p, t in [(pred, target), (np.roll(target, 1, axis=-1), target)]:
        ours = ssim(torch.from_numpy(p).float(), torch.from_numpy(t).float()).numpy()
        assert ours == pytest.approx([sk_ssim(a, b) for a, b in zip(p, t)], abs=1e-5)


def test_fast_ssim_in_pieces_of_many_frames():
    # 70 frames of 64x64: more than one piece of whole frames; uint8-like levels scaled to [0, 1]
    g = torch.Generator().manual_seed(4)
    target = torch.randint(0, 256, (70, 3, 64, 64), generator=g).double() / 255
    pred = (target + 0.05 * torch.randn(target.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(pred, target).numpy()
    assert ours == pytest.approx([sk_ssim(p, t) for p, t in zip(pred.numpy(), target.numpy())], abs=1e-5)


def test_wrong_variants_would_be_caught():
    # Each plausible mistake moves SSIM far beyond TOL on several cases, so the tests above would fail.
    pairs = make_pairs(3, 48, 80)
    pred, target = batch(pairs)
    ours, ours_range2 = ssim(pred, target).numpy(), ssim(pred, target, data_range=2.0).numpy()
    ref = np.array([sk_ssim(p, t) for p, t in pairs.values()])
    no_crop = np.array([structural_similarity(p, t, data_range=1, gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False, channel_axis=0, full=True)[1].mean()
                        for p, t in pairs.values()])
    wrong = {
        "data_range=2": (ours_range2, ref, 1e-3, 3),
        "sigma=1.0": (ours, [sk_ssim(p, t, sigma=1.0) for p, t in pairs.values()], 1e-3, 3),
        "uniform 7x7 window": (ours, [sk_ssim(p, t, gaussian_weights=False) for p, t in pairs.values()], 1e-3, 3),
        "border not cropped": (ours, no_crop, 1e-3, 3),
        # N/(N-1) = 121/120 on the variances: a subtler shift, still several times TOL
        "sample covariance": (ours, [sk_ssim(p, t, use_sample_covariance=True) for p, t in pairs.values()], 5e-4, 3),
        # C1 only matters where local means are small or differ: the dark-brightness-shift pair
        "K1=0.02": (ours, [sk_ssim(p, t, K1=0.02) for p, t in pairs.values()], 1e-3, 1),
    }
    for name, (a, b, margin, min_cases) in wrong.items():
        diffs = np.abs(np.asarray(a) - np.asarray(b))
        assert diffs.max() > margin and (diffs > TOL).sum() >= min_cases, (name, diffs)


def test_identical_images_and_data_range():
    x = torch.rand(2, 3, 32, 40, dtype=torch.float64)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    assert sk_psnr(x[0].numpy(), x[0].numpy()) == np.inf  # what the 100 dB cap replaces
    assert torch.allclose(psnr(x, x), torch.full((2,), 100.0, dtype=torch.float64))
    near = x + 1e-4  # MSE 1e-8: far above the floor, must still match skimage
    assert psnr(near, x)[0].item() == pytest.approx(sk_psnr(near[0].numpy(), x[0].numpy()), abs=TOL)
    x255, y255 = x * 255, (x * 255 + 5 * torch.randn_like(x)).clamp(0, 255)
    a, b = y255[0].numpy(), x255[0].numpy()
    assert ssim(y255, x255, 255.0)[0].item() == pytest.approx(sk_ssim(a, b, 255.0), abs=TOL)
    assert psnr(y255, x255, 255.0)[0].item() == pytest.approx(sk_psnr(a, b, 255.0), abs=TOL)


def test_input_validation():
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.rand(1, 1, 10, 64), torch.rand(1, 1, 10, 64))
    with pytest.raises(ValueError):
        ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 17))
    with pytest.raises(ValueError):
        psnr(torch.rand(1, 16, 16), torch.rand(1, 16, 16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_with_same_values():
    pred, target = batch(make_pairs(3, 48, 80))
    out = ssim(pred.float().cuda(), target.float().cuda())
    assert out.device.type == "cuda"
    assert torch.allclose(out.cpu(), ssim(pred.float(), target.float()), atol=1e-6)  # float32 on both
    assert torch.allclose(out.cpu(), ssim(pred, target, exact=True), atol=1e-5)


# ---------------------------------------------------------------- per-step means over sequences

def make_videos(b: int, t: int = 4, c: int = 3, h: int = 24, w: int = 20, seed: int = 0):
    """float32 [B, T, C, H, W] targets and predictions whose error grows with t."""
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(b, t, c, h, w, generator=g)
    noise = torch.randn(b, t, c, h, w, generator=g) * torch.linspace(0.01, 0.3, t).view(1, t, 1, 1, 1)
    return (target + noise).clamp(0, 1), target


def reference_per_step(pred: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
    p, t = pred.double().numpy(), target.double().numpy()
    per_frame = {m: np.zeros(p.shape[:2]) for m in METRICS}
    for s in range(p.shape[0]):
        for k in range(p.shape[1]):
            per_frame["mse"][s, k] = np.mean((p[s, k] - t[s, k]) ** 2)
            per_frame["mae"][s, k] = np.mean(np.abs(p[s, k] - t[s, k]))
            per_frame["psnr"][s, k] = sk_psnr(p[s, k], t[s, k])
            per_frame["ssim"][s, k] = sk_ssim(p[s, k], t[s, k])
    return {m: v.mean(axis=0) for m, v in per_frame.items()}


def frame_sums(batches, horizon: int = 4) -> MetricSums:
    """The frame metrics summed as `evaluate` sums them, over batches of one sample per clip."""
    sums = MetricSums(FrameMetric(), horizon)
    for pred, target in batches:
        sums.add(pred.unsqueeze(1), target)
    return sums


def summarised(sums: MetricSums) -> dict:
    summary = sums.summary()
    return {**summary.figures, "sequences": summary.sequences}


def test_frame_metrics_match_independent_reference():
    batches = [make_videos(3, seed=0), make_videos(2, seed=1)]
    out = summarised(frame_sums(batches))
    ref = reference_per_step(torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]))
    assert out["sequences"] == 5
    assert set(out["per_step"]) == set(out["mean"]) == set(METRICS) == set(FrameMetric().higher_is_better)
    for m in METRICS:
        assert out["per_step"][m] == pytest.approx(ref[m].tolist(), abs=TOL), m
        assert out["mean"][m] == pytest.approx(float(np.mean(out["per_step"][m])), abs=1e-12), m
    assert np.all(np.diff(out["per_step"]["mse"]) > 0)  # steps are kept in order


def test_frame_metrics_identical_frames():
    x = torch.rand(2, 3, 1, 16, 16)
    out = summarised(frame_sums([(x, x.clone())], horizon=3))
    assert out["per_step"]["psnr"] == pytest.approx([100.0] * 3)
    assert out["per_step"]["ssim"] == pytest.approx([1.0] * 3)
    assert out["mean"]["mse"] == 0.0 and out["mean"]["mae"] == 0.0


def test_frame_metrics_errors():
    with pytest.raises(ValueError):
        frame_sums([]).summary()  # nothing scored
    pred, target = make_videos(2)
    for bad_pred, bad_target in [(pred, target[..., :-1]), (pred[:, :3], target[:, :3]), (pred[:, 0], target[:, 0])]:
        with pytest.raises(ValueError):
            frame_sums([(bad_pred, bad_target)])
    assert frame_sums([(pred, target)]).summary().sequences == 2


def _dist_worker(rank: int, world: int, store: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        shard = [make_videos(b, seed=seed) for b, seed in [(3, 0), (2, 1), (1, 2)][rank::world]]  # uneven shards
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(summarised(frame_sums(shard)), f)
    finally:
        torch.distributed.destroy_process_group()


def test_sync_over_processes_equals_single_process(tmp_path):
    torch.multiprocessing.spawn(_dist_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    expected = summarised(frame_sums([make_videos(b, seed=seed) for b, seed in [(3, 0), (2, 1), (1, 2)]]))
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["sequences"] == expected["sequences"] == 6
        for m in METRICS:
            assert got["per_step"][m] == pytest.approx(expected["per_step"][m], abs=1e-12)
