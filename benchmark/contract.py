"""The predictor contract: what every registered predictor must do, as plain checks.

tests/test_contract.py holds every registered predictor to it and `bench check` runs it for plugin authors.
Each check takes a `Subject` (a registered predictor at its tiny size) and returns a one-line detail, or
raises `ContractError` saying what broke; some apply only to stochastic or to trainable predictors.

The tiny size is the predictor's `tiny` preset (every built-in has one, made with `vpbench.config.tiny_preset`),
or its defaults on the tiny schedule when it has none. Everything runs on the CPU on moving-digits clips at a
short 4 -> 4 protocol, so the checks of every built-in take about a minute of one CPU core.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterator, Literal, Mapping

import torch
from torch import Tensor

from .config import TINY_SCHEDULE
from .costs import count_flops, count_parameters
from .metrics.frame import psnr
from .predictor import Predictor, create_predictor
from .registry import DATASETS, PREDICTORS
from .spec import VideoSpec
from .training import TrainContext, mean_validation_loss

TINY = "tiny"
SPEC = VideoSpec(channels=1, height=64, width=64, context=4, future=4)
ROLLOUT_FACTOR = 3  # closed-loop rollouts run this many times the horizon
BATCH, SAMPLES = 2, 3  # clips in the forward checks; samples a stochastic predictor draws per clip
TRAIN_CLIPS, HELD_OUT_CLIPS = 64, 32
MAX_STEPS = 100  # the quick run trains the tiny preset's max_iterations, at most this many
LOSS_RATIO = 0.85  # the quick run's loss (and a generative model's held-out loss) must fall by 15%
MARGIN_DB = 0.5  # over copy-last's t+1 PSNR; an untrained model that predicts black scores ~0.4 dB below it
FLOP_TOLERANCE = 0.01  # fvcore against torch's counter per operator family both count
CPU = torch.device("cpu")

Status = Literal["PASS", "FAIL", "WARN", "SKIP"]


class ContractError(AssertionError):
    """The predictor breaks the contract; the message says how."""


@dataclass(frozen=True)
class Clips:
    train: Tensor  # [N, T, C, H, W] moving-digits training clips
    held_out: Tensor  # validation clips: never trained on


@lru_cache(maxsize=1)
def clips() -> Clips:
    data = DATASETS.get("moving-digits").create(context=SPEC.context, future=SPEC.future, train_size=TRAIN_CLIPS,
                                                val_size=HELD_OUT_CLIPS)
    train, val = data.split("train"), data.split("val")
    return Clips(torch.stack([train[i] for i in range(TRAIN_CLIPS)]),
                 torch.stack([val[i] for i in range(HELD_OUT_CLIPS)]))


@dataclass(frozen=True)
class QuickRun:
    key: str  # the loss judged: "mse" where training_step reports it (a GAN's reconstruction term), else "loss"
    losses: list[float]
    batch_size: int
    psnr_before: float  # t+1 PSNR on the held-out clips, untrained and trained
    psnr_after: float
    val_before: float | None  # held-out validation_loss, for predictors selected on it (generative ones)
    val_after: float | None
    seconds: float


class Subject:
    """A registered predictor at its tiny size; the quick run is shared by the checks that read it."""

    def __init__(self, name: str, settings: Mapping[str, Any] | None = None) -> None:
        self.cls: type[Predictor] = PREDICTORS.get(name)
        self.settings = dict(settings or {})  # `bench check --set`: a variant of the tiny size (simvp's translator)
        set_ = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        self.name: str = self.cls.registry_name + (f" ({set_})" if set_ else "")
        self.preset = TINY if TINY in self.cls.presets else None
        self.builtin = self.cls.__module__.startswith("vpbench.predictors.")
        self._quick: QuickRun | Exception | None = None

    def build(self, seed: int = 0) -> Predictor:
        torch.manual_seed(seed)
        return create_predictor(self.cls, SPEC, preset=self.preset,
                                overrides={**({} if self.preset else TINY_SCHEDULE), **self.settings})

    def quick_run(self) -> QuickRun:
        """Trained once, for the learning checks; a failure is kept too, so the second check does not retrain."""
        if self._quick is None:
            try:
                self._quick = _train(self)
            except Exception as exc:  # noqa: BLE001 - reported by each check that reads the run
                self._quick = exc
        if isinstance(self._quick, Exception):
            raise self._quick
        return self._quick


# --- helpers ------------------------------------------------------------------------------------------
def _predict(model: Predictor, context: Tensor, future: int, seed: int = 0) -> Tensor:
    """One closed-loop prediction in eval mode; a stochastic model's one sample comes from a seeded generator."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if model.stochastic:
                return model(context, future, generator=torch.Generator().manual_seed(seed))
            return model(context, future)
    finally:
        model.train(was_training)


def _expect_frames(out: object, shape: tuple[int, ...], call: str) -> str:
    """Shape and finiteness. Values may leave [0, 1] (linear read-outs do, as in the references): the harness
    clamps predictions before scoring them, so the range is reported, not judged."""
    if not isinstance(out, Tensor):
        raise ContractError(f"{call} returned {type(out).__name__}, not a tensor")
    if tuple(out.shape) != shape:
        raise ContractError(f"{call} returned shape {list(out.shape)}, expected {list(shape)}")
    if not torch.isfinite(out).all():
        raise ContractError(f"{call} returned non-finite values")
    return f"{list(shape)}, values in [{out.min().item():.2f}, {out.max().item():.2f}]"


def _psnr(prediction: Tensor, truth: Tensor) -> float:
    """Mean over clips of the PSNR of frames [B, C, H, W] clamped to [0, 1], as the harness scores them."""
    return float(psnr(prediction.clamp(0, 1), truth).mean())


def copy_last_psnr() -> float:
    held_out = clips().held_out
    return _psnr(held_out[:, SPEC.context - 1], held_out[:, SPEC.context])


def _first_step_psnr(model: Predictor) -> float:
    held_out = clips().held_out
    return _psnr(_predict(model, held_out[:, :SPEC.context], 1)[:, 0], held_out[:, SPEC.context])


def _validation_loss(model: Predictor) -> float | None:
    return mean_validation_loss(model, list(clips().held_out), device=CPU, precision="fp32",
                                batch_size=HELD_OUT_CLIPS, workers=0)


def _fell(first: float, last: float) -> bool:
    """Fell by (1 - LOSS_RATIO) of its size; the sign-safe form, as a negative ELBO can be below zero."""
    return last < first - (1 - LOSS_RATIO) * abs(first)


def _train(subject: Subject) -> QuickRun:
    """The quick run: `max_iterations` steps through TrainContext and `training_step`, as the harness trains,
    on batches drawn with a fixed seed from a small training set; scored on held-out clips before and after."""
    model = subject.build()
    cfg = model.config
    psnr_before, val_before = _first_step_psnr(model), _validation_loss(model)
    trainer = TrainContext(model, cfg, "fp32", CPU)
    draw = torch.Generator().manual_seed(0)
    train = clips().train
    losses: list[float] = []
    key = ""
    tic = time.perf_counter()
    model.train()
    for trainer.iteration in range(min(cfg.max_iterations, MAX_STEPS)):
        batch = train[torch.randint(len(train), (cfg.batch_size,), generator=draw)]
        step = model.training_step(batch, trainer)
        key = key or ("mse" if "mse" in step else "loss")
        if key not in step:
            raise ContractError(f"training_step returned {sorted(step)}: no 'loss'")
        losses.append(float(step[key]))
    seconds = time.perf_counter() - tic
    return QuickRun(key, losses, cfg.batch_size, psnr_before, _first_step_psnr(model), val_before,
                    _validation_loss(model), seconds)


# --- the checks ---------------------------------------------------------------------------------------
def check_builds(subject: Subject) -> str:
    total, trainable = count_parameters(subject.build())
    size = "its tiny preset" if subject.preset else "its defaults on the tiny schedule"
    if not subject.preset and subject.cls.trainable:
        size += " (declare a `tiny` preset to choose the size checked)"
    return f"{total:,} parameters ({trainable:,} trainable) at {size}"


def check_forward(subject: Subject) -> str:
    context = clips().held_out[:BATCH, :SPEC.context]
    out = _predict(subject.build(), context, SPEC.future)
    shape = (BATCH, SPEC.future, SPEC.channels, SPEC.height, SPEC.width)
    return _expect_frames(out, shape, f"forward(context {list(context.shape)}, future={SPEC.future})")


def check_samples(subject: Subject) -> str:
    """Stochastic predictors: `samples=N, generator=g` gives [B, N, future, C, H, W], every draw from `g`."""
    model = subject.build().eval()
    context = clips().held_out[:BATCH, :SPEC.context]

    def draw(seed: int) -> Tensor:
        return model(context, SPEC.future, samples=SAMPLES, generator=torch.Generator().manual_seed(seed))

    with torch.no_grad():
        first, again, other = draw(1), draw(1), draw(2)
        torch.manual_seed(5)
        global_first = model(context, SPEC.future)
        torch.manual_seed(5)
        global_again = model(context, SPEC.future)
    shape = (BATCH, SAMPLES, SPEC.future, SPEC.channels, SPEC.height, SPEC.width)
    detail = _expect_frames(first, shape, f"forward(..., samples={SAMPLES}, generator=g)")
    if not torch.equal(first, again):
        raise ContractError("the same generator seed gave different samples: draw every random number from "
                            "`generator`")
    if torch.equal(first, other):
        raise ContractError("different generator seeds gave the same samples")
    if all(torch.equal(first[:, 0], first[:, i]) for i in range(1, SAMPLES)):
        raise ContractError(f"the {SAMPLES} samples of a clip are identical")
    if not torch.equal(global_first, global_again):
        raise ContractError("with generator=None, torch.manual_seed does not reproduce the prediction")
    return f"{detail}; same seed, same samples"


def check_rollout(subject: Subject) -> str:
    horizon = ROLLOUT_FACTOR * SPEC.future
    out = _predict(subject.build(), clips().held_out[:BATCH, :SPEC.context], horizon)
    shape = (BATCH, horizon, SPEC.channels, SPEC.height, SPEC.width)
    _expect_frames(out, shape, f"forward(context, future={horizon})")
    return f"{horizon} frames ({ROLLOUT_FACTOR}x the horizon) closed loop, all finite"


def check_checkpoint(subject: Subject) -> str:
    saved, fresh = subject.build(seed=0), subject.build(seed=1)
    saved.fit_statistics(clips().train)  # what it reads from the training split (mean-frame) must be state too
    buffer = io.BytesIO()
    torch.save(saved.state_dict(), buffer)
    buffer.seek(0)
    try:
        state = torch.load(buffer, weights_only=True)
    except Exception as exc:  # what weights_only refuses: pickled objects beyond tensors and containers
        raise ContractError(f"its state dict does not load with torch.load(weights_only=True): {exc}") from None
    fresh.load_state_dict(state)
    context = clips().held_out[:BATCH, :SPEC.context]
    if not torch.equal(_predict(saved, context, SPEC.future), _predict(fresh, context, SPEC.future)):
        raise ContractError("a model loaded from the saved state dict predicts differently: state outside the "
                            "state dict (a plain attribute instead of a buffer or parameter?)")
    return f"{len(state)} entries through torch.save / torch.load(weights_only=True), same predictions"


def check_costs(subject: Subject) -> str:
    model = subject.build()
    total, trainable = count_parameters(model)
    if subject.cls.trainable and trainable == 0:
        raise ContractError("trainable, but count_parameters finds no trainable parameter")
    flops = count_flops(model, clips().held_out[:1, :SPEC.context], SPEC.future)
    if subject.cls.trainable and flops.fvcore == 0:
        raise ContractError("trainable, but fvcore counts no FLOPs")
    if flops.unexplained:
        raise ContractError(f"counted operators neither compared nor named: {', '.join(flops.unexplained)}")
    if flops.relative_difference > FLOP_TOLERANCE:
        raise ContractError(f"the FLOP counts disagree: {flops.describe()}; fvcore by operator "
                            f"{flops.fvcore_by_operator}, torch's (halved) {flops.torch_by_operator}")
    return (f"{total:,} parameters, {flops.fvcore:,} FLOPs for {SPEC.context} -> {SPEC.future} at batch 1; "
            f"fvcore and torch's counter agree within {100 * flops.relative_difference:.2f}% per operator family")


def check_learns(subject: Subject) -> str:
    run = subject.quick_run()
    steps, batch = len(run.losses), run.batch_size
    k = max(1, min(5, steps // 2))
    first, last = sum(run.losses[:k]) / k, sum(run.losses[-k:]) / k
    if not _fell(first, last):
        raise ContractError(f"its {run.key} did not fall by {100 * (1 - LOSS_RATIO):.0f}% in {steps} steps of batch "
                            f"{batch}: {first:.4g} -> {last:.4g} (means of the first and last {k}); the `tiny` "
                            "preset sets the size, lr and steps")
    return f"{run.key} {first:.4g} -> {last:.4g} in {steps} steps of batch {batch} ({run.seconds:.1f} s)"


def check_beats_copy_last(subject: Subject) -> str:
    run = subject.quick_run()
    baseline, clips_scored = copy_last_psnr(), f"{HELD_OUT_CLIPS} held-out clips"
    psnrs = f"t+1 PSNR {run.psnr_after:.2f} dB (untrained {run.psnr_before:.2f}), copy-last {baseline:.2f}"
    if run.val_before is not None and run.val_after is not None:
        # Selected on its own validation loss (a generative model's negative ELBO), as the harness selects it:
        # a sample scores worse on PSNR than a blurred mean, so PSNR is shown, not judged.
        if not _fell(run.val_before, run.val_after):
            raise ContractError(f"its validation loss on {clips_scored} did not fall by "
                                f"{100 * (1 - LOSS_RATIO):.0f}%: {run.val_before:.4g} -> {run.val_after:.4g}")
        return f"validation loss {run.val_before:.4g} -> {run.val_after:.4g} on {clips_scored}; {psnrs} (a sample)"
    if run.psnr_after < baseline + MARGIN_DB:
        raise ContractError(f"{psnrs}: not {MARGIN_DB} dB above copy-last on {clips_scored}")
    return f"{psnrs} on {clips_scored}"


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Subject], str]
    soft: bool = False  # for a plugin a failure is a warning: a quality figure, not the interface the harness needs
    only: Literal["stochastic", "trainable"] | None = None  # the class flag it applies under

    def applies(self, cls: type[Predictor]) -> bool:
        return self.only is None or bool(getattr(cls, self.only))


CHECKS: tuple[Check, ...] = (
    Check("builds", check_builds), Check("forward", check_forward),
    Check("samples", check_samples, only="stochastic"), Check("rollout", check_rollout),
    Check("checkpoint", check_checkpoint), Check("costs", check_costs, soft=True),
    Check("learns", check_learns, only="trainable"),
    Check("beats-copy-last", check_beats_copy_last, soft=True, only="trainable"),
)


@dataclass(frozen=True)
class Outcome:
    name: str
    check: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.check} ({self.detail})"


def run_check(subject: Subject, check: Check, strict: bool | None = None) -> Outcome:
    """One check; `strict` (default: built-ins) makes a soft check's failure a FAIL rather than a WARN."""
    strict = subject.builtin if strict is None else strict
    if not check.applies(subject.cls):
        return Outcome(subject.name, check.name, "SKIP", f"not {check.only}")
    try:
        return Outcome(subject.name, check.name, "PASS", check.run(subject))
    except Exception as exc:  # noqa: BLE001 - a plugin may raise anything; the line names the check
        reason = str(exc) if isinstance(exc, ContractError) else f"{type(exc).__name__}: {exc}"
        status: Status = "WARN" if check.soft and not strict else "FAIL"
        return Outcome(subject.name, check.name, status, " ".join(reason.split())[:600])


def run_checks(name: str, strict: bool | None = None, settings: Mapping[str, Any] | None = None) -> Iterator[Outcome]:
    """Every check of the predictor registered as `name` (with `settings` over its tiny size), in order; nothing
    after a failure to build."""
    try:
        subject = Subject(name, settings)
    except Exception as exc:  # noqa: BLE001
        yield Outcome(name, "builds", "FAIL", f"{type(exc).__name__}: {exc}")
        return
    for check in CHECKS:
        outcome = run_check(subject, check, strict)
        yield outcome
        if check.name == "builds" and outcome.status == "FAIL":
            return
