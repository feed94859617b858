"""Reading checkpoints: vpbench's own (`CHECKPOINT_FORMAT`, written by training), and weights from other code
(`--checkpoint`): recognise a reference implementation's file, give its tensors vpbench's names, drop the ones the
reference creates but never calls, and set what its weights need.

Each predictor owns its mapping: `Predictor.checkpoint_layouts` lists the reference files it takes, each a
`ReferenceLayout` declared in the predictor's own file (names renamed, tensors dropped, settings such as a
switch that reproduces a reference bug its weights were trained with). The flow:

1. `read_checkpoint(path, predictor)` loads the file (`torch.load(weights_only=True)`: tensors, numbers and
   strings only) and recognises it: a vpbench checkpoint, a reference's file (a Lightning checkpoint's
   `state_dict`, whose `model.` prefix is stripped, or a bare state dict that carries the reference's own
   names), or else a bare state dict in vpbench's names. Renames and drops need no model.
2. `configure(checkpoint, spec, overrides)` adds the settings the weights need to the user's overrides before
   the config is resolved, so the run's identity (its id) holds them; what the user set explicitly wins.
3. `load_into(model, checkpoint)` loads strictly: every tensor of the model, no other, of the same shapes.
Every step says what it did in `Checkpoint.notes`, which the runner prints and records (eval.checkpoint_notes).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping

from torch import Tensor

from .errors import UserError
from .mxnet_params import is_mxnet_params, read_mxnet_params
from .store import load_checkpoint

if TYPE_CHECKING:
    from torch import nn

    from .predictor import Predictor
    from .spec import VideoSpec

# vpbench's checkpoints say what they are in their "format" key: every version of the layout starts with
# CHECKPOINT_KIND, and CHECKPOINT_FORMAT is the version this vpbench writes.
CHECKPOINT_KIND = "vpbench-checkpoint"
CHECKPOINT_FORMAT = f"{CHECKPOINT_KIND}-1"
LIGHTNING_PREFIX = "model."  # a LightningModule holds the network as `self.model` (OpenSTL's Base_method)
# what tells a Lightning checkpoint from other {"state_dict": ...} files (OpenSTL's pre-Lightning latest.pth)
LIGHTNING_VERSION = "pytorch-lightning_version"


@dataclass(frozen=True)
class ReferenceLayout:
    """How a reference implementation's checkpoint files hold one predictor's weights."""

    source: str  # whose files, as the notes name them: "OpenSTL" (checkpoint, weights), "official STIP"
    # "lightning": a Lightning checkpoint ({"state_dict": ...}; OpenSTL's pre-Lightning runs save their latest.pth
    # so too) or a bare state dict, either with the `model.` prefix; "net_param": {"net_param": state dict} (the
    # STIP / STRPM / MotionRNN authors' files); "mxnet": MXNet parameter files (`Module.save_checkpoint`), one per
    # name in `parts` (`<part>-<epoch>.params`, side by side; the user names any one of them), read together.
    container: Literal["lightning", "net_param", "mxnet"] = "lightning"
    parts: tuple[str, ...] = ()
    # (regex on the reference's whole name, replacement: a template or a function of the match), first match wins
    renames: tuple[tuple[str, str | Callable[[re.Match[str]], str]], ...] = ()
    unused: str = ""  # regex of the reference's tensors that its forward never calls (or saves twice): dropped
    # what the notes say of the dropped tensors, after the source's name (tensors a file holds twice, or constants)
    unused_reason: str = "creates but never calls"
    own: str = ""  # regex of this model's tensors such files do not hold (a discriminator): the model keeps its own
    settings: Mapping[str, tuple[Any, str]] = field(default_factory=dict)  # config key -> (value needed, why)
    colour_settings: Mapping[str, tuple[Any, str]] = field(default_factory=dict)  # the same, for 3-channel frames
    refuse: tuple[tuple[str, str], ...] = ()  # (regex on a file's names, why such a file is refused)
    # A regex on the reference's names: the layout reads only files holding a tensor so named (a predictor whose
    # variants the reference names differently lists one layout per variant, the catch-all last).
    recognise: str = ""

    def needs(self, spec: VideoSpec) -> dict[str, tuple[Any, str]]:
        return {**self.settings, **(self.colour_settings if spec.channels == 3 else {})}

    def rename(self, name: str) -> str:
        for pattern, replacement in self.renames:
            if (match := re.fullmatch(pattern, name)) is not None:
                return match.expand(replacement) if isinstance(replacement, str) else replacement(match)
        return name

    def carries_own_names(self, names: Iterable[str]) -> bool:
        """Whether a bare state dict shows this reference's layout: a tensor it drops or renames."""
        return any((self.unused and re.fullmatch(self.unused, n)) or self.rename(n) != n for n in names)


@dataclass
class Checkpoint:
    """A checkpoint file read for a predictor: its tensors in vpbench's names, and what reading it did."""

    path: Path
    tensors: dict[str, Tensor]
    layout: ReferenceLayout | None  # None: vpbench's own layout
    notes: list[str] = field(default_factory=list)
    kept_settings: set[str] = field(default_factory=set)  # keys the user set against what the weights need


def read_checkpoint(path: Path, predictor: type[Predictor]) -> Checkpoint:
    """Load `path` and recognise its layout among vpbench's and `predictor.checkpoint_layouts`."""
    if is_mxnet_params(Path(path)):
        return _read_mxnet(Path(path), predictor)
    state = load_checkpoint(path, "cpu")  # weights_only=True; a file it cannot read is one error line
    # vpbench's own, or any {"model": state dict} (what `torch.save({"model": m.state_dict()}, f)` writes)
    if isinstance(state, dict) and (str(state.get("format", "")).startswith(CHECKPOINT_KIND)
                                    or _tensors(state.get("model"), path, strict=False)):
        return Checkpoint(Path(path), _tensors(state.get("model"), path), None)
    for layout in predictor.checkpoint_layouts:
        for pattern, why in layout.refuse:
            names = _inner(state, layout)
            if names is not None and any(re.fullmatch(pattern, n) for n in names):
                raise UserError(f"{predictor.registry_name}: {path}: {why}")
        found = _unwrap(state, layout, path)
        if found is not None and (not layout.recognise or any(re.fullmatch(layout.recognise, n) for n in found[0])):
            return _mapped(Path(path), found[0], layout, found[1])
    tensors = _tensors(state, path)
    # E.g. an OpenSTL E3D-LSTM saved bare: the same names as vpbench's, and nothing else tells the two apart.
    hints = [f"{layout.source} weights, set " + ", ".join(f"{k}={v!r}" for k, (v, _) in layout.settings.items())
             for layout in predictor.checkpoint_layouts
             if layout.container == "lightning" and layout.settings and not layout.recognise]
    notes = ["a bare state dict, read as vpbench's; if it is " + " or ".join(hints)] if hints else []
    return Checkpoint(Path(path), tensors, None, notes)


def configure(checkpoint: Checkpoint, spec: VideoSpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`overrides` plus the settings the checkpoint's weights need; a key the user set keeps the user's value."""
    if checkpoint.layout is None:
        return dict(overrides)
    merged = dict(overrides)
    for key, (value, why) in checkpoint.layout.needs(spec).items():
        if key in overrides and overrides[key] != value:
            checkpoint.kept_settings.add(key)
            checkpoint.notes.append(f"kept {key}={overrides[key]!r} as set; {checkpoint.layout.source} weights "
                                    f"need {value!r} ({why})")
        else:
            merged[key] = value
            checkpoint.notes.append(f"set {key}={value!r}: {why}")
    return merged


def load_into(model: Predictor, checkpoint: Checkpoint) -> None:
    """Load strictly. A reference's weights go only into a model configured as they need (`configure` configures
    the runner's models), but for the keys the user set otherwise on purpose."""
    layout, weights = checkpoint.layout, dict(checkpoint.tensors)
    if layout is not None:
        wrong = {k: v for k, (v, _) in layout.needs(model.spec).items()
                 if k not in checkpoint.kept_settings and getattr(model.config, k) != v}
        if wrong:
            settings = " ".join(f"--set {model.registry_name}.{k}={_cli(v)}" for k, v in wrong.items())
            raise UserError(f"{model.registry_name}: {checkpoint.path} holds {layout.source} weights, which need "
                            f"{settings} (bench eval --checkpoint sets them itself)")
        if layout.own:
            weights.update({k: v for k, v in model.state_dict().items() if re.fullmatch(layout.own, k)})
    load_strictly(model, weights, checkpoint.path)


def load_weights(model: Predictor, path: str | Path) -> Checkpoint:
    """Read the checkpoint at `path` and load it strictly into `model` (`read_checkpoint`, then `load_into`). The
    tensors are read on the CPU and copied to wherever the model is."""
    checkpoint = read_checkpoint(Path(path), type(model))
    load_into(model, checkpoint)
    return checkpoint


def load_strictly(model: nn.Module, weights: Mapping[str, Tensor], path: Path) -> None:
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        name = getattr(model, "registry_name", type(model).__name__)
        raise UserError(f"checkpoint {path} does not fit {name}: {' '.join(first[:2])}") from None


def describe(name: str, checkpoint: Checkpoint) -> str | None:
    """The console line about what reading the checkpoint did, or None when there is nothing to say."""
    return f"{name}: {checkpoint.path}: " + "; ".join(checkpoint.notes) if checkpoint.notes else None


# --- recognising and mapping ------------------------------------------------------------------------------------
def _inner(state: Any, layout: ReferenceLayout) -> list[str] | None:
    """The tensor names inside the layout's container, if the file has one."""
    key = "net_param" if layout.container == "net_param" else "state_dict"
    inner = state.get(key) if isinstance(state, dict) else None
    if layout.container == "lightning" and inner is None:
        inner = state
    return list(inner) if isinstance(inner, dict) else None


def _unwrap(state: Any, layout: ReferenceLayout, path: Path) -> tuple[dict[str, Tensor], list[str]] | None:
    """The file's tensors in the reference's names and how they were found, or None if it is not in this layout."""
    if not isinstance(state, dict):
        return None
    if layout.container == "net_param":
        return (_tensors(state["net_param"], path), []) if "net_param" in state else None
    lightning = isinstance(state.get("state_dict"), dict)
    tensors = _tensors(state["state_dict"] if lightning else state, path, strict=lightning)
    if not tensors:
        return None
    prefixed = all(k.startswith(LIGHTNING_PREFIX) for k in tensors)
    if prefixed:
        tensors = {k[len(LIGHTNING_PREFIX):]: v for k, v in tensors.items()}
    if not (lightning or prefixed or layout.carries_own_names(tensors)):
        return None
    how = [("a Lightning checkpoint's state_dict" if LIGHTNING_VERSION in state else "a checkpoint's state_dict")
           if lightning else "a bare state dict"]
    if prefixed:
        how.append(f"'{LIGHTNING_PREFIX}' prefix removed")
    return tensors, how


def _read_mxnet(path: Path, predictor: type[Predictor]) -> Checkpoint:
    """An MXNet checkpoint: the parameter files of every part the layout names, the `arg:`/`aux:` prefixes removed."""
    name = predictor.registry_name
    layout = next((layout for layout in predictor.checkpoint_layouts if layout.container == "mxnet"), None)
    if layout is None:
        raise UserError(f"{name}: {path} is an MXNet parameter file; {name} reads no MXNet checkpoints")
    match = re.fullmatch(r"(.+)-(\d+)\.params", path.name)
    if match is None or match[1] not in layout.parts:
        expected = " and ".join(f"{part}-<epoch>.params" for part in layout.parts)
        raise UserError(f"{name}: {path}: {layout.source} saves its model as {expected}, side by side; "
                        "give one of them, under the name it was saved as")
    files = [path.with_name(f"{part}-{match[2]}.params") for part in layout.parts]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise UserError(f"{name}: {path}: {layout.source} saves its model in {', '.join(f.name for f in files)}; "
                        f"{', '.join(missing)} is not beside it")
    tensors = {re.sub(r"^(arg|aux):", "", key): tensor
               for file in files for key, tensor in read_mxnet_params(file).items()}
    for pattern, why in layout.refuse:
        if any(re.fullmatch(pattern, n) for n in tensors):
            raise UserError(f"{name}: {path}: {why}")
    how = [f"MXNet parameter files {', '.join(f.name for f in files)}", "'arg:' prefix removed"]
    return _mapped(path, tensors, layout, how)


def _mapped(path: Path, tensors: dict[str, Tensor], layout: ReferenceLayout, how: list[str]) -> Checkpoint:
    dropped = sorted(n for n in tensors if layout.unused and re.fullmatch(layout.unused, n))
    kept = {layout.rename(n): v for n, v in tensors.items() if n not in set(dropped)}
    renamed = sum(layout.rename(n) != n for n in tensors if n not in set(dropped))
    notes = [f"{layout.source} checkpoint" + (f" ({', '.join(how)})" if how else "")]
    if renamed:
        notes.append(f"{_count(renamed)} renamed to vpbench's names")
    if dropped:
        notes.append(f"dropped {_count(len(dropped))} {layout.source} {layout.unused_reason}: {_summary(dropped)}")
    return Checkpoint(path, kept, layout, notes)


def _tensors(value: Any, path: Path, strict: bool = True) -> dict[str, Tensor]:
    """`value` as a state dict; with `strict` False, an empty one when it is not made of tensors only."""
    if isinstance(value, dict) and value and all(isinstance(k, str) and isinstance(v, Tensor)
                                                 for k, v in value.items()):
        return dict(value)
    if not strict:
        return {}
    raise UserError(f"checkpoint {path} holds no state dict: neither vpbench's checkpoint, nor a Lightning "
                    "checkpoint, nor a mapping of names to tensors")


def _summary(names: list[str]) -> str:
    """Names with layer indices folded: 'cell_list.*.conv_o.0.weight (x4)'."""
    folded = Counter(re.sub(r"\.\d+\.", ".*.", f".{n}.").strip(".") for n in names)
    return ", ".join(f"{n} (x{c})" if c > 1 else n for n, c in folded.items())


def _count(n: int) -> str:
    return f"{n} tensor" if n == 1 else f"{n} tensors"


def _cli(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
