"""Where the weight files of LPIPS, detection and FVD are looked for, how they are checked, how they are fetched.

Nothing is downloaded unless the user runs `bench weights fetch`. A metric whose weights are missing or fail
their check is not measured (the result says why and where the file goes), never computed from something else.
A file the user names explicitly (a flag or an environment variable) is used even if its check fails: the
result then records its sha256 and the failed check, and the report marks the numbers as user-vouched.
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch

from ..digest import git_blob_sha1, sha256_file
from ..errors import UserError
from .yolo import model_of, read_checkpoint, ultralytics_settings

Source = Literal["explicit", "default location"]


@dataclass(frozen=True)
class Check:
    """Outcome of checking a weight file: `verified` if it is the file the metric is defined with."""

    verified: bool
    text: str
    usable: bool = True  # False: cannot be loaded at all, even if the user vouches for it


@dataclass(frozen=True)
class WeightFile:
    key: str
    used_for: str
    filename: str
    url: str
    flag: str  # the CLI option that names a file explicitly
    env: str  # the environment variable that does the same
    checker: Callable[[Path, str], Check]  # (path, sha256) -> Check
    locations: Callable[[], list[Path]]  # directories searched, in order; files are fetched into the first
    fetch_hash_prefix: str | None = None  # torch.hub checks a download against it and deletes a file that fails
    published: str = "none published"  # the checksum the release states, as `bench weights` prints it
    url_query: str = ""  # what the official URL needs after the file name (Dropbox: ?dl=1 for the file itself)

    def url_for(self, filename: str, mirror: str | None = None) -> str:
        if mirror:
            return f"{mirror.rstrip('/')}/{filename}"
        return f"{self.url.rsplit('/', 1)[0]}/{filename}{self.url_query}"


@dataclass(frozen=True)
class Resolution:
    """Which file a metric uses, and if none, why not."""

    entry: WeightFile
    filename: str
    path: Path | None = None
    source: Source | None = None
    sha256: str | None = None
    check: Check | None = None
    problem: str | None = None  # set: the metric is not measured, for this reason

    @property
    def usable(self) -> bool:
        return self.problem is None

    def record(self) -> dict:
        """What result.json keeps about the file used."""
        assert self.path is not None and self.check is not None and self.sha256 is not None
        return {"file": str(self.path), "sha256": self.sha256, "source": self.source,
                "verified": self.check.verified, "check": self.check.text}


def sha256_prefix_check(prefix: str, release: str) -> Callable[[Path, str], Check]:
    """torch.hub's convention: the file name carries the first hex digits of the file's sha256."""

    def check(path: Path, sha256: str) -> Check:
        if sha256.startswith(prefix):
            return Check(True, f"sha256 starts with {prefix}, as {release}")
        return Check(False, f"checksum mismatch: sha256 {sha256[:16]}..., {release} has a sha256 starting {prefix}")

    return check


def sha256_check(expected: str, release: str) -> Callable[[Path, str], Check]:
    def check(path: Path, sha256: str) -> Check:
        if sha256 == expected:
            return Check(True, f"sha256 equals {release}'s")
        return Check(False, f"checksum mismatch: sha256 {sha256[:16]}..., {release} has {expected[:16]}...")

    return check


def _torch_hub_checkpoints() -> list[Path]:
    # torch.hub.get_dir() honours TORCH_HOME and XDG_CACHE_HOME, as torchvision's own loader does.
    return [Path(torch.hub.get_dir()) / "checkpoints"]


def _lpips_package_weights() -> list[Path]:
    # Located without importing lpips, which imports torchvision's model zoo (seconds).
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the lpips package is not installed: pip install lpips")
    return [Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1"]


def _yolo_locations() -> list[Path]:
    # Where Ultralytics itself finds a bare file name (its weights_dir and the working directory); fetched
    # files go to weights_dir, so that `YOLO("yolov5su.pt")` finds them too.
    return [Path(ultralytics_settings()["weights_dir"]), Path.cwd()]


def _yolo_check(path: Path, sha256: str) -> Check:
    """An Ultralytics detection checkpoint that records its training (released weights keep `train_args`;
    a model built from a yaml and saved untrained does not). YOLO releases publish no checksums."""
    ckpt, error = read_checkpoint(path)
    if ckpt is None:
        return Check(False, f"not an Ultralytics checkpoint ({error})", usable=False)
    model = model_of(ckpt)
    task = getattr(model, "task", None)
    if model is None or task != "detect":
        return Check(False, f"not an Ultralytics detection model (task {task!r})", usable=False)
    classes = len(getattr(model, "names", {}))
    if not ckpt.get("train_args"):
        return Check(False, f"checkpoint records no training (an untrained model?), {classes} classes")
    return Check(True, f"trained Ultralytics detection checkpoint (train_args recorded), {classes} classes, "
                       f"saved by ultralytics {ckpt.get('version', '?')}")


_ALEXNET_PREFIX = "7be5be79"
ALEXNET = WeightFile(
    key="lpips-alexnet", used_for="LPIPS backbone (torchvision AlexNet, ImageNet)",
    filename="alexnet-owt-7be5be79.pth", url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    flag="--lpips-weights", env="VPBENCH_LPIPS_WEIGHTS",
    checker=sha256_prefix_check(_ALEXNET_PREFIX, "torchvision's alexnet-owt-7be5be79.pth"),
    locations=_torch_hub_checkpoints, fetch_hash_prefix=_ALEXNET_PREFIX,
    published=f"starts with {_ALEXNET_PREFIX} (torchvision's file name)")
_LPIPS_LINEAR_SHA256 = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
LPIPS_LINEAR = WeightFile(
    key="lpips-linear", used_for="LPIPS linear layers (v0.1, alex; shipped inside the lpips package)",
    filename="alex.pth", url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
    flag="", env="",
    checker=sha256_check(_LPIPS_LINEAR_SHA256, "lpips 0.1.4"), locations=_lpips_package_weights,
    published=_LPIPS_LINEAR_SHA256)
YOLO = WeightFile(
    key="yolo", used_for="detection confidence (Ultralytics YOLO, COCO)",
    filename="yolov5su.pt", url="https://github.com/ultralytics/assets/releases/download/v8.4.0/yolov5su.pt",
    flag="--yolo-weights", env="VPBENCH_YOLO_WEIGHTS", checker=_yolo_check, locations=_yolo_locations)


# No sha256 of i3d_torchscript.pt is published (StyleGAN-V, fvd-comparison, MCVD and PredBench name only its Dropbox
# URL), but JunyaoHu/common_metrics_on_video_quality commits the file (fvd/styleganv/i3d_torchscript.pt, unchanged from
# e96450b, 2023-10-29, to 5f75173), and git names it by its content. That repository's copy of VideoGPT's
# i3d_pretrained_400.pt is the very blob TATS commits, which speaks for its copies.
_I3D_TORCHSCRIPT_BLOB = "93daef59c7ae0e9e8f76225521407e60cbafa6aa"
_COMMON_METRICS_COMMIT = "5f751734ce9cef4cd2dddb235726b75dff62a387"


def _torchscript_check(path: Path, sha256: str) -> Check:
    """A TorchScript module that loads; `verified` when its git blob id is the one common_metrics_on_video_quality
    commits. Any other module is used only when the user vouches for it (--i3d-weights / VPBENCH_I3D_WEIGHTS), and
    the result records its sha256."""
    try:
        with warnings.catch_warnings():  # torch's deprecation notice for TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        return Check(False, f"not a TorchScript module ({type(exc).__name__})", usable=False)
    blob = git_blob_sha1(path)
    if blob == _I3D_TORCHSCRIPT_BLOB:
        return Check(True, f"git blob {blob[:12]}..., the file common_metrics_on_video_quality commits at "
                           "fvd/styleganv/i3d_torchscript.pt")
    return Check(False, f"a TorchScript module, but git blob {blob[:12]}... (sha256 {sha256[:16]}...) is not the "
                        f"i3d_torchscript.pt that common_metrics_on_video_quality commits ({_I3D_TORCHSCRIPT_BLOB[:12]}...)")


I3D_TORCHSCRIPT = WeightFile(
    key="i3d-torchscript",
    used_for="FVD stylegan-v, mcvd, predbench-jit (StyleGAN-V's TorchScript port of the tf.hub I3D, Kinetics-400)",
    filename="i3d_torchscript.pt", url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt",
    published=f"none published (StyleGAN-V, fvd-comparison, MCVD and PredBench give only the URL); checked by git blob "
              f"id {_I3D_TORCHSCRIPT_BLOB} (JunyaoHu/common_metrics_on_video_quality {_COMMON_METRICS_COMMIT[:7]} "
              "fvd/styleganv/i3d_torchscript.pt)",
    url_query="?dl=1", flag="--i3d-weights", env="VPBENCH_I3D_WEIGHTS", checker=_torchscript_check,
    locations=_torch_hub_checkpoints)
# No sha256 of i3d_pretrained_400.pt is published (VideoGPT names a Google Drive id), but two repositories commit
# the file itself, and git names it by its content: TATS tats/fvd/i3d_pretrained_400.pt (1aa93e1, 2022) and
# JunyaoHu/common_metrics_on_video_quality fvd/videogpt/i3d_pretrained_400.pt hold the same blob.
_I3D_400_BLOB = "a867b87ac3a9097d200598b1d48a1b890d8ec744"
_TATS_COMMIT = "1aa93e189080a7bfc070c355d2377b43474b520b"


def _i3d_state_dict_check(path: Path, sha256: str) -> Check:
    """A state dict that loads strictly into VideoGPT's InceptionI3d (vpbench.metrics.i3d); `verified` when its git
    blob id is the one TATS commits."""
    from .i3d import load_i3d

    try:
        load_i3d(path)
    except Exception as exc:  # an unpickling error, a wrong layout, anything: the file cannot be this one
        first = (str(exc).strip().splitlines() or [""])[-1].strip()[:160]
        return Check(False, f"not a state dict of VideoGPT's InceptionI3d ({type(exc).__name__}: {first})",
                     usable=False)
    blob = git_blob_sha1(path)
    if blob == _I3D_400_BLOB:
        return Check(True, f"git blob {blob[:12]}..., the file TATS commits at tats/fvd/i3d_pretrained_400.pt")
    return Check(False, f"a state dict of VideoGPT's InceptionI3d, but git blob {blob[:12]}... is not the one TATS "
                        f"commits ({_I3D_400_BLOB[:12]}...)")


I3D_PYTORCH = WeightFile(
    key="i3d-pytorch", used_for="FVD videogpt, tats, predbench-400 (VideoGPT's i3d_pretrained_400.pt: the tf.hub I3D's "
    "Kinetics-400 weights as a state dict of its PyTorch InceptionI3d)",
    filename="i3d_pretrained_400.pt",
    url=f"https://github.com/SongweiGe/TATS/raw/{_TATS_COMMIT}/tats/fvd/i3d_pretrained_400.pt",
    published=f"none published; checked by git blob id {_I3D_400_BLOB} (TATS {_TATS_COMMIT[:7]} "
              "tats/fvd/i3d_pretrained_400.pt)",
    flag="--i3d-pytorch-weights", env="VPBENCH_I3D_PYTORCH_WEIGHTS", checker=_i3d_state_dict_check,
    locations=_torch_hub_checkpoints)
ENTRIES: dict[str, WeightFile] = {e.key: e for e in (ALEXNET, LPIPS_LINEAR, YOLO, I3D_TORCHSCRIPT, I3D_PYTORCH)}


def _explicit(entry: WeightFile, given: str | Path | None) -> tuple[str | None, str]:
    """The file the user named (flag first, then environment), and how they named it."""
    if given is not None:
        return str(given), entry.flag
    if entry.env and os.environ.get(entry.env):
        return os.environ[entry.env], entry.env
    return None, ""


def resolve(entry: WeightFile, given: str | Path | None = None) -> Resolution:
    """Find and check the file for `entry`. A file named explicitly that does not exist, or cannot be used at
    all, is a UserError (the user asked for it); a missing or failing default file is a `problem`."""
    named, how = _explicit(entry, given)
    if named is not None:
        path = Path(named).expanduser()
        if not path.is_file() and path.name == named:  # a bare name, e.g. yolov8n.pt: look where it would be
            path = next((d / named for d in entry.locations() if (d / named).is_file()), path)
        if not path.is_file():
            raise UserError(f"{how} {named}: file not found")
        sha256 = sha256_file(path)
        check = entry.checker(path, sha256)
        if not check.usable:
            raise UserError(f"{how} {path}: {check.text}")
        return Resolution(entry, path.name, path, "explicit", sha256, check)

    searched = entry.locations()
    path = next((d / entry.filename for d in searched if (d / entry.filename).is_file()), None)
    if path is None:
        where = " or ".join(str(d) for d in searched)
        hint = f", or pass {entry.flag} FILE" if entry.flag else ""
        return Resolution(entry, entry.filename, problem=(
            f"weights missing: put {entry.filename} in {where}{hint}; "
            f"`bench weights fetch` downloads it on a machine with internet"))
    sha256 = sha256_file(path)
    check = entry.checker(path, sha256)
    resolution = Resolution(entry, entry.filename, path, "default location", sha256, check)
    if check.verified:
        return resolution
    vouch = f"; pass {entry.flag} {path} (or set {entry.env}) to use it anyway" if entry.flag and check.usable else ""
    return Resolution(entry, entry.filename, path, "default location", sha256, check,
                      problem=f"{path}: {check.text}{vouch}")


def status_lines(given: dict[str, str | Path | None] | None = None, keys: list[str] | None = None) -> list[str]:
    """`bench weights`: for each file, where it is looked for, whether it is there and valid, how to fetch it."""
    lines = []
    for entry in (ENTRIES[k] for k in keys or ENTRIES):
        named = (given or {}).get(entry.key)
        # A bare name (yolov8n.pt) is looked for where the default is; a path is just that file.
        filename = str(named) if named is not None and Path(named).name == str(named) else entry.filename
        lines += [f"{entry.key}: {entry.used_for}",
                  f"  looks in:  {', '.join(str(d / filename) for d in entry.locations())}"
                  + (f" (or {entry.flag} FILE / {entry.env}=FILE)" if entry.flag else "")]
        try:
            res = resolve(entry, named)
        except UserError as exc:
            state = f"error: {exc}"
        else:
            if not res.usable:
                state = f"not usable: {res.problem}"
            else:
                state = f"{'ok' if res.check.verified else 'used (vouched for)'}: {res.path} ({res.check.text})"
        lines += [f"  status:    {state}", f"  sha256:    {entry.published}",
                  f"  fetch:     {entry.url_for(filename)}" if entry.flag else
                  "  fetch:     ships with the lpips package (pip install --force-reinstall lpips)", ""]
    return lines


def fetch(keys: list[str], names: dict[str, str] | None = None, mirror: str | None = None) -> list[str]:
    """Download weight files into their entry's first location, from the official URL or `mirror` (a base URL,
    e.g. file:///media/usb/weights, for machines that only see an internal copy). Returns one line per file."""
    lines = []
    for key in keys:
        entry = ENTRIES[key]
        if not entry.flag:
            lines.append(f"{key}: ships with the lpips package; nothing to fetch")
            continue
        filename = (names or {}).get(key) or entry.filename
        target = entry.locations()[0] / filename
        if target.is_file():
            lines.append(f"{key}: {target} is already there")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        url = entry.url_for(filename, mirror)
        try:
            torch.hub.download_url_to_file(url, str(target), hash_prefix=entry.fetch_hash_prefix, progress=False)
        except Exception as exc:  # network errors and the hash check alike: say which file and why
            raise UserError(f"{key}: fetching {url} failed: {exc}") from None
        check = entry.checker(target, sha256_file(target))
        lines.append(f"{key}: {url} -> {target} ({check.text})")
    return lines
