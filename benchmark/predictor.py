"""The predictor contract every plugin implements, and the one way a predictor is built from its name.

Registration checks the contract (`registration.py`); `resolve_config` + `ResolvedConfig.build` (together:
`create_predictor`) are how the runner, the profiler and the tests construct every model.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import Overrides, StochasticConfig, TrainConfig, apply_overrides, check_rules, shrink_schedule
from .errors import UserError
from .registry import PREDICTORS
from .spec import VideoSpec

if TYPE_CHECKING:
    from .foreign import ReferenceLayout

class Trainer(Protocol):
    """What a predictor's `training_step` may ask of the harness (`vpbench.training.TrainContext` is it): a
    predictor never builds optimizers or scalers, so precision and distribution stay the harness's business."""

    iteration: int

    def backward(self, loss: Tensor) -> None: ...

    def step(self, name: str = "model") -> None: ...


class Clips(Protocol):
    """Clips [T, C, H, W] by index: a dataset split (the harness) or a stacked tensor [N, T, C, H, W] (the contract)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Tensor: ...


class Predictor(nn.Module):
    """A video predictor: `forward(context, future)` maps [B, Tc, C, H, W] in [0, 1] to [B, future, C, H, W]
    in [0, 1]: `future` frames, closed loop (it never sees the frames it predicts).

    Subclasses set `Config` (a dataclass extending `TrainConfig`: every setting, with defaults) and
    `presets` (preset name, usually a dataset name, -> overrides of Config fields: the papers' settings),
    and register with `@register_predictor("name")`, which checks all of this.
    """

    registry_name: ClassVar[str]
    Config: ClassVar[type] = TrainConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    trainable: ClassVar[bool] = True
    # A reference that learns nothing (copy-last, mean-frame): what "beats the floor" means on a dataset. Results
    # record it, and reports never bold its costs, which are nothing to beat (0 parameters, 0 FLOPs).
    floor: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False  # True: subclass StochasticPredictor
    # The reference implementations' checkpoint files this predictor takes (`--checkpoint`), besides vpbench's
    # own: how they name its tensors and what their weights need (vpbench.foreign).
    checkpoint_layouts: ClassVar[tuple[ReferenceLayout, ...]] = ()
    # True: its weights fit any frame size (convolutions only), so `bench predict --native-size` may run it on the
    # user's frames as they are instead of resizing them to the protocol's.
    fully_convolutional: ClassVar[bool] = False

    def __init__(self, spec: VideoSpec, config: Any) -> None:
        super().__init__()
        self.spec = spec
        self.config = config

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def forward(self, context: Tensor, future: int) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def training_loss(self, clip: Tensor, iteration: int) -> Tensor:
        """Loss on one batch of clips [B, T, C, H, W]. Default: MSE of the open-loop prediction."""
        context = clip[:, : self.spec.context]
        target = clip[:, self.spec.context:]
        prediction = self(context, target.shape[1])
        check_prediction(self, prediction, context, target.shape[1])
        return F.mse_loss(prediction, target)

    def training_step(self, clip: Tensor, trainer: Trainer) -> dict[str, Tensor]:
        """One optimisation step. Adversarial predictors override this and step several optimizers;
        `trainer.backward` / `trainer.step` keep mixed precision and clipping the harness's business."""
        loss = self.training_loss(clip, trainer.iteration)
        trainer.backward(loss)
        trainer.step("model")
        return {"loss": loss.detach()}

    def validation_loss(self, clip: Tensor) -> Tensor | None:
        """A scalar that checkpoint selection minimises on validation clips [B, T, C, H, W], or None to
        select on the MSE of the closed-loop prediction (the default). Generative models return their
        training objective (e.g. the negative ELBO): a sharp sample scores worse on MSE than a blurry mean,
        so MSE would favour barely trained checkpoints."""
        return None

    def fit_statistics(self, train: Clips) -> str | None:
        """For predictors that need no training (`trainable = False`) but a statistic of the training split
        (mean-frame: its per-pixel mean frame): read it from `train` into buffers, so that checkpoints carry it.
        The harness calls this before testing, on every rank alike, unless given weights are scored; it returns
        what it read, in words, which the result records as the weights scored (`eval.checkpoint`).
        None (the default): nothing is read."""
        return None

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], dict[str, Any]]]:
        """Parameters per optimizer name, each with the settings in which it differs from the config
        (e.g. a discriminator's `{"lr": 5e-4}`). The harness builds optimizers and schedules from them."""
        return {"model": ([p for p in self.parameters() if p.requires_grad], {})}

    def modules_outside_prediction(self) -> list[nn.Module]:
        """Submodules `forward` never uses: a GAN's discriminator, modules a reference implementation
        defines but never calls (kept so its checkpoints load). Parameter counts leave them out."""
        return []


class StochasticPredictor(Predictor):
    """A predictor that draws samples. `forward(context, future, samples=N, generator=g)` returns
    [B, N, future, C, H, W] (one sample [B, future, C, H, W] when samples is None), every random draw
    from `g`, so that a seeded evaluation is repeatable. Its Config extends `StochasticConfig`."""

    Config: ClassVar[type] = StochasticConfig
    stochastic: ClassVar[bool] = True

    def forward(self, context: Tensor, future: int, samples: int | None = None,
                generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def reads_training_split(cls: type[Predictor]) -> bool:
    """Whether a predictor that needs no training reads a statistic of the training split (`fit_statistics`)."""
    return cls.fit_statistics is not Predictor.fit_statistics


def check_prediction(model: Predictor, prediction: object, context: Tensor, future: int,
                     samples: int | None = None) -> None:
    """A forward's output is a float tensor [B, future, C, H, W] ([B, samples, future, C, H, W] when samples
    were asked for); else one line with the expected and the actual shape, before any metric sees it."""
    batch, _, *frame = context.shape
    expected = (batch, future, *frame) if samples is None else (batch, samples, future, *frame)
    if isinstance(prediction, Tensor) and tuple(prediction.shape) == expected and prediction.is_floating_point():
        return
    got = (f"{tuple(prediction.shape)} {prediction.dtype}" if isinstance(prediction, Tensor)
           else type(prediction).__name__)
    asked = "" if samples is None else f", samples={samples}"
    raise UserError(f"predictor {model.registry_name!r}: forward(context {tuple(context.shape)}, {future}{asked}) "
                    f"returned {got}; expected a float tensor of shape {expected}")


@dataclass(frozen=True)
class ResolvedConfig:
    """A predictor class with its config resolved: `build(spec)` makes the model."""

    predictor: type[Predictor]
    config: Any
    preset: str | None

    def build(self, spec: VideoSpec) -> Predictor:
        return self.predictor(spec, self.config)


def resolve_config(predictor: str | type[Predictor], preset_keys: tuple[str, ...] = (),
                   overrides: Mapping[str, Any] | None = None, *, preset: str | None = None,
                   quick: bool = False) -> ResolvedConfig:
    """Defaults, then the first preset this predictor defines among `preset_keys` (or the one named),
    then user overrides, then the quick schedule."""
    cls = PREDICTORS.get(predictor) if isinstance(predictor, str) else predictor
    if preset is not None and preset not in cls.presets:
        raise UserError(f"predictor {cls.registry_name!r} has no preset {preset!r}; "
                        f"presets: {', '.join(cls.presets) or 'none'}")
    chosen = preset or next((key for key in preset_keys if key in cls.presets), None)
    config = cls.Config()
    origins: dict[str, str] = {}
    if chosen is not None:
        config = apply_overrides(config, cls.presets[chosen], f"preset {chosen!r} of {cls.registry_name}")
        origins.update(dict.fromkeys(cls.presets[chosen], f"preset {chosen!r}"))
    config = apply_overrides(config, overrides or {}, f"predictor {cls.registry_name}")
    origins.update(dict.fromkeys(overrides or {}, "--set or --config"))
    check_rules(config, f"predictor {cls.registry_name}", origins)  # before --quick: it keeps every rule
    if quick:
        config = shrink_schedule(config)
    return ResolvedConfig(cls, config, chosen)


def setting_names(cls: type[Predictor]) -> set[str]:
    """The names a predictor's settings go by in --set / --config."""
    return {f.name for f in fields(cls.Config)}


def predictor_overrides(cls: type[Predictor], overrides: Overrides) -> dict[str, Any]:
    """Keys set for every predictor apply where the predictor has them; scoped keys always apply."""
    known = setting_names(cls)
    shared = {k: v for k, v in overrides.everyone.items() if k in known}
    return {**shared, **overrides.per_predictor.get(cls.registry_name, {})}


def check_shared_keys(classes: list[type[Predictor]], overrides: Overrides) -> None:
    """A key set for every predictor must be a setting of at least one of them (else it is a typo)."""
    known = set().union(*map(setting_names, classes))
    unknown = sorted(set(overrides.everyone) - known)
    if unknown:
        names = ", ".join(c.registry_name for c in classes)
        raise UserError(f"--set/--config key {unknown[0]!r} is not a setting of any of: {names}")


def create_predictor(predictor: str | type[Predictor], spec: VideoSpec, *, preset: str | None = None,
                     preset_keys: tuple[str, ...] = (), overrides: Mapping[str, Any] | None = None,
                     quick: bool = False, **settings: Any) -> Predictor:
    """Build a registered predictor, timm-style: `create_predictor("convlstm", spec, num_hidden=64)`.
    Its config is `model.config`; callers that need the config or the chosen preset before building
    (the runner names a run by them) call `resolve_config(...)` and then `.build(spec)`."""
    return resolve_config(predictor, preset_keys, {**(overrides or {}), **settings}, preset=preset,
                          quick=quick).build(spec)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameters of what predicts: without a predictor's `modules_outside_prediction`."""
    outside = model.modules_outside_prediction() if isinstance(model, Predictor) else []
    skip = {id(p) for module in outside for p in module.parameters()}
    counted = [p for p in model.parameters() if id(p) not in skip]
    return sum(p.numel() for p in counted), sum(p.numel() for p in counted if p.requires_grad)


