"""CW-VAE and HTSRM: sizes equal to the references, the ELBO's terms, long rollouts with memory flat in the
horizon, contexts of any length, and HTSRM's residual pieces (that the ELBO falls and seeded samples reproduce
is the contract's: tests/test_contract.py)."""
import pytest
import torch
from torch.distributions import Normal, kl_divergence
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import vpbench.predictors.cwvae  # noqa: F401  (registers cwvae)
import vpbench.predictors.htsrm  # noqa: F401  (registers htsrm)
from vpbench.errors import UserError
from vpbench.predictor import count_parameters, create_predictor
from vpbench.predictors._clockwork import block_sum, gaussian_kl, gaussian_nll
from vpbench.predictors.htsrm import ContextResidual, ResidualSECell
from vpbench.spec import VideoSpec
from vpbench.training import TrainContext

from conftest import tiny as tiny_predictor

MODELS = ["cwvae", "htsrm"]


def tiny(name, context=10, future=10, **overrides):
    """At the tiny preset's widths: the reference's 3 levels and factor 6 unless a test says otherwise."""
    return tiny_predictor(name, VideoSpec(1, 64, 64, context, future), **overrides)


# --- sizes --------------------------------------------------------------------------------------------
def conv(cin, cout, k):  # also a transposed convolution
    return cin * cout * k * k + cout


def dense(fan_in, fan_out):
    return fan_in * fan_out + fan_out


def gru(fan_in, hidden):  # Keras GRUCell(reset_after=True) and torch GRUCell: input and recurrent biases
    return 3 * hidden * (fan_in + hidden) + 6 * hidden


# configs/mmnist.yml: z / h / embed 20 / 200 / 200, dense levels 1000 wide, 1024 conv features, 1 channel.
Z, H, E, D, F = 20, 200, 200, 1000, 1024
ENCODER = conv(1, 32, 4) + conv(32, 64, 4) + conv(64, 128, 4) + conv(128, 256, 4)
LEVEL_NET = dense(F, D) + dense(D, D) + dense(D, F)
PRIOR = dense(Z + (Z + H), E) + gru(E, H) + dense(H, E) + 2 * dense(E, Z)  # [z_prev, ctx] -> GRU -> mean, std
POSTERIOR = dense(H + F, E) + dense(E, E) + 2 * dense(E, Z)
DECODER = dense(Z + H, F) + conv(F, 128, 5) + conv(128, 64, 5) + conv(64, 32, 6) + conv(32, 1, 6)
CWVAE = ENCODER + 2 * LEVEL_NET + 3 * (PRIOR + POSTERIOR) + DECODER
SE_CELL = 2 * conv(32, 32, 3) + dense(32, 4) + dense(4, 32)  # squeeze to max(32 // 16, 4)
HTSRM = CWVAE + 2 * SE_CELL + 3 * dense(Z + H, Z + H)  # + encoder / decoder cells, per-level context residual


@pytest.mark.parametrize("name, expected", [("cwvae", CWVAE), ("htsrm", HTSRM)])
def test_mmnist_size_equals_the_reference(name, expected):
    model = create_predictor(name, VideoSpec(1, 64, 64, 36, 64), preset="mmnist")
    assert count_parameters(model) == (expected, expected)
    assert (CWVAE, HTSRM) == (12_466_817, 12_650_253)


def test_presets_follow_the_reference_configs():
    spec = VideoSpec(3, 64, 64, 36, 264)
    cw = create_predictor("cwvae", spec, preset="mazes").config
    ht = create_predictor("htsrm", spec, preset="kth-htsrm").config
    assert (cw.dec_stddev, cw.lr, cw.batch_size, cw.adam_eps, cw.grad_clip) == (0.1, 3e-4, 50, 1e-4, 1e4)
    assert (ht.dec_stddev, ht.lr, ht.train_length, ht.levels, ht.tmp_abs_factor) == (1.0, 1e-4, 100, 3, 6)
    assert create_predictor("htsrm", spec, preset="mazes").config.lr == 1e-4
    # Epochs over the training clips as iterations of batch 50: 300 x 10,000 / 50 and 60 x 10,000 / 50.
    mmnist = VideoSpec(1, 64, 64, 36, 64)
    assert create_predictor("cwvae", mmnist, preset="mmnist").config.max_iterations == 60_000
    assert create_predictor("htsrm", mmnist, preset="mmnist").config.max_iterations == 12_000


def test_frames_other_than_64x64_are_refused():
    with pytest.raises(UserError, match="64x64"):
        create_predictor("cwvae", VideoSpec(1, 128, 128, 10, 10), preset="moving-digits")


# --- training ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_training_step_reports_the_elbo_terms_under_the_reference_adam_eps(name):
    # That the ELBO falls is the contract's check (tests/test_contract.py).
    model = tiny(name)
    trainer = TrainContext(model, model.config, "fp32", torch.device("cpu"))
    assert trainer.optimizers["model"].defaults["eps"] == 1e-4
    terms = model.training_step(torch.rand(4, 20, 1, 64, 64), trainer)
    assert set(terms) == {"loss", "nll", "kl"} and not terms["loss"].requires_grad


def test_training_windows_are_train_length_frames_at_random_offsets():
    model = tiny("cwvae", train_length=12)
    clip = torch.arange(30.0)[None, :, None, None, None].expand(5, 30, 1, 1, 1)
    torch.manual_seed(1)
    window = model.training_window(clip)
    assert window.shape[:2] == (5, 12)
    starts = window[:, 0, 0, 0, 0]
    assert torch.equal(window[:, :, 0, 0, 0], starts[:, None] + torch.arange(12.0))
    assert len(set(starts.tolist())) > 1 and starts.max() <= 18
    assert model.training_window(clip[:, :8]).shape[1] == 8  # shorter clips: whole


def test_the_nll_term_is_the_decoders_gaussian_log_likelihood_per_frame():
    """The NLL from torch.distributions: -log N(frames; decoded mean, dec_stddev), summed over pixels, averaged
    over clips, divided by the frames; the loss adds the KL to it."""
    model = tiny("cwvae")
    clip = torch.rand(2, 8, 1, 64, 64)
    decoded, decode = [], model.decode

    def recording(outputs: torch.Tensor) -> torch.Tensor:
        decoded.append(decode(outputs))
        return decoded[-1]

    model.decode = recording
    terms = model.elbo(clip)
    log_likelihood = Normal(decoded[0], model.config.dec_stddev).log_prob(clip).sum((1, 2, 3, 4))
    assert torch.allclose(terms["nll"], -log_likelihood.mean() / clip.shape[1], rtol=1e-5)
    assert terms["kl"] > 0 and torch.allclose(terms["loss"], terms["nll"] + terms["kl"])


# --- long rollouts ----------------------------------------------------------------------------------
class LiveStorageBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages that operations create and that are alive at once (parameters
    and inputs made before entering are not counted). Independent of timing and of the allocator."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.live = {key: entry for key, entry in self.live.items() if not entry[0].expired()}
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                storage = leaf.untyped_storage()
                self.live.setdefault(storage._cdata, (StorageWeakRef(storage), storage.nbytes()))
        self.peak = max(self.peak, sum(nbytes for _, nbytes in self.live.values()))
        return out


@pytest.mark.parametrize("name", MODELS)
def test_long_rollout_from_36_frames_with_memory_flat_in_the_horizon(name):
    torch.set_num_threads(1)
    model = tiny(name, context=36, future=300, cell_stoch_size=20, cell_deter_size=200).eval()
    context = torch.rand(1, 36, 1, 64, 64)
    peaks = {}
    for horizon in (100, 300):
        with torch.no_grad(), LiveStorageBytes() as tracker:
            out = model(context, horizon, samples=2, generator=torch.Generator().manual_seed(0))
        assert out.shape == (1, 2, horizon, 1, 64, 64) and torch.isfinite(out).all()
        peaks[horizon] = tracker.peak
    print(f"{name}: peak live activation bytes {peaks}")
    output_growth = 2 * 200 * 64 * 64 * 4  # the 200 extra output frames of both samples, float32
    # Keeping the bottom state [z, h] of each step would add 2 * 200 * 220 * 4 = 352,000 bytes.
    assert output_growth <= peaks[300] - peaks[100] <= output_growth + 16_384, peaks


def test_contexts_not_divisible_by_36_work_and_filter_only_complete_blocks():
    model = tiny("cwvae").eval()
    calls = {level: 0 for level in range(3)}
    for level, cell in enumerate(model.cells):
        def counted(*args, level=level, original=cell.posterior):
            calls[level] += 1
            return original(*args)
        cell.posterior = counted
    with torch.no_grad():
        out = model(torch.rand(2, 10, 1, 64, 64), 10, samples=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 2, 10, 1, 64, 64) and torch.isfinite(out).all()
    assert out.min() >= -1 and out.max() <= 1  # the decoder's tanh outputs, unclamped (the harness clamps)
    # 10 frames: level 0 filters all 10, level 1 its complete block 0-5, the top level (0-35) none.
    assert calls == {0: 10, 1: 1, 2: 0}
    calls.update({0: 0, 1: 0, 2: 0})
    with torch.no_grad():
        model(torch.rand(1, 37, 1, 64, 64), 5)
    assert calls == {0: 37, 1: 6, 2: 1}


def test_rollout_never_reads_frames_after_the_context():
    model = tiny("htsrm").eval()
    clip = torch.rand(1, 20, 1, 64, 64)
    changed = clip.clone()
    changed[:, 10:] = torch.rand(1, 10, 1, 64, 64)
    with torch.no_grad():
        a = model(clip[:, :10], 10, generator=torch.Generator().manual_seed(3))
        b = model(changed[:, :10], 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


# --- the shared pieces and HTSRM's residuals ---------------------------------------------------------
def test_gaussian_kl_equals_torch_distributions():
    torch.manual_seed(0)
    mq, mp = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    sq, sp = torch.rand(2, 5, 7) + 0.1, torch.rand(2, 5, 7) + 0.1
    expected = kl_divergence(Normal(mq, sq), Normal(mp, sp)).sum(-1)
    assert torch.allclose(gaussian_kl(mq, sq, mp, sp), expected, atol=1e-5)


def test_gaussian_nll_equals_torch_distributions():
    torch.manual_seed(0)
    target, mean = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    for std in (0.1, 1.0, 2.5):
        assert torch.allclose(gaussian_nll(target, mean, std), -Normal(mean, std).log_prob(target), atol=1e-5)


def test_block_sum_pads_time_and_sums_each_block():
    x = torch.arange(7.0)[None, :, None]
    assert block_sum(x, 3).flatten().tolist() == [0 + 1 + 2, 3 + 4 + 5, 6]


def test_htsrm_posterior_is_the_prior_plus_a_residual_and_its_kl():
    cell = tiny("htsrm").cells[0]
    torch.manual_seed(0)
    z, h, ctx, obs = torch.randn(3, 4), torch.randn(3, 16), torch.randn(3, 20), torch.randn(3, 4 * 32)
    h1, mean_p, std_p = cell.prior(z, h, ctx)
    mean_q, std_q = cell.posterior(h1, obs, mean_p, std_p)
    x = cell.posterior_net(torch.cat([h1, obs], -1))
    d_mean = cell.posterior_head.mean(x)
    d_std = torch.nn.functional.softplus(cell.posterior_head.std(x + 0.54))
    assert torch.allclose(mean_q, mean_p + d_mean) and torch.allclose(std_q, std_p + d_std)
    expected = kl_divergence(Normal(mean_p + d_mean, std_p + d_std), Normal(mean_p, std_p)).sum(-1)
    assert torch.allclose(gaussian_kl(mean_q, std_q, mean_p, std_p), expected, atol=1e-5)
    # CW-VAE's posterior does not depend on the prior's statistics.
    plain = tiny("cwvae").cells[0]
    m1, _ = plain.posterior(h1, obs, mean_p, std_p)
    m2, _ = plain.posterior(h1, obs, mean_p + 1.0, std_p)
    assert torch.equal(m1, m2)


def test_htsrm_se_cell_keeps_the_shape_and_adds_a_tenth_of_its_input():
    model = tiny("htsrm", filters=32)
    cell = model.encoder.after_first
    assert isinstance(cell, ResidualSECell) and isinstance(model.decoder.before_last, ResidualSECell)
    assert cell.se.squeeze.out_features == 4  # max(32 // 16, 4)
    x = torch.randn(2, 32, 31, 31)
    y = cell(x)
    assert y.shape == x.shape
    silu = torch.nn.functional.silu
    branch = silu(cell.conv2(silu(cell.conv1(x))))
    gate = torch.sigmoid(cell.se.excite(torch.relu(cell.se.squeeze(branch.mean((2, 3))))))
    assert torch.allclose(y, 0.1 * x + branch * gate[:, :, None, None], atol=1e-6)
    for conv in (cell.conv1, cell.conv2):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    assert torch.allclose(cell(x), 0.1 * x)


def test_htsrm_context_residual():
    model = tiny("htsrm")
    net = model.cells[1].context_net
    assert isinstance(net, ContextResidual)
    ctx = torch.randn(3, 20)
    assert torch.allclose(net(ctx), torch.relu(net.dense(ctx)) + 0.1 * ctx)
    assert isinstance(tiny("cwvae").cells[1].context_net, torch.nn.Identity)


def test_htsrm_level_features_add_a_tenth_of_the_level_below():
    model = tiny("htsrm")
    frames = torch.rand(2, 40, 1, 64, 64)
    levels = model.encode(frames)
    x = model.encoder(frames.flatten(0, 1)).view(2, 40, -1)
    hidden1 = model.level_nets[0](x)
    feature1 = hidden1 + 0.1 * x
    feature2 = model.level_nets[1](hidden1) + 0.1 * feature1
    assert [tuple(level.shape) for level in levels] == [(2, 40, 128), (2, 7, 128), (2, 2, 128)]
    assert torch.allclose(levels[1], block_sum(feature1, 6), atol=1e-5)
    assert torch.allclose(levels[2], block_sum(feature2, 36), atol=1e-5)
    plain = tiny("cwvae")
    x = plain.encoder(frames.flatten(0, 1)).view(2, 40, -1)
    assert torch.allclose(plain.encode(frames)[1], block_sum(plain.level_nets[0](x), 6), atol=1e-5)
