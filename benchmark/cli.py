"""The `bench` command line."""
from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import typer

from .config import Overrides, load_config_file, parse_set_options
from .errors import Stopped, UserError
from .progress import console
from .registry import PREDICTORS, load_plugin

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="vpbench: train and evaluate video predictors on one protocol, then report.")


class ListWhat(str, Enum):
    predictors = "predictors"
    datasets = "datasets"
    all = "all"


class PrecisionChoice(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    auto = "auto"


class Format(str, Enum):
    md = "md"
    csv = "csv"
    json = "json"
    html = "html"  # `bench report` only: one self-contained page with the figures


class FigureFormat(str, Enum):
    svg = "svg"
    pdf = "pdf"


def _split_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _load_plugins(plugins: Optional[List[Path]]) -> None:
    for path in plugins or []:
        load_plugin(path)


PluginOpt = typer.Option(None, "--plugin", help="Python file that registers predictors or datasets (repeatable).")


@app.command("list")
def list_cmd(what: ListWhat = typer.Argument(ListWhat.all), plugin: Optional[List[Path]] = PluginOpt,
             verbose: bool = typer.Option(False, "--verbose", "-v", help="Also every setting (type, default, "
                                          "help) and every preset or protocol.")) -> None:
    """List registered predictors and datasets, one line each."""
    from .listing import dataset_lines, predictor_lines

    _load_plugins(plugin)
    if what in (ListWhat.predictors, ListWhat.all):
        if what is ListWhat.all:
            print("predictors:")
        print("\n".join(predictor_lines(verbose)))
    if what in (ListWhat.datasets, ListWhat.all):
        if what is ListWhat.all:
            print("datasets:")
        print("\n".join(dataset_lines(verbose)))


def _overrides(set_: Optional[List[str]], config: Optional[Path], context: Optional[int],
               horizon: Optional[int]) -> Overrides:
    """--config, then --set, then --context / --horizon (the dataset's context / future: any protocol,
    e.g. 36 -> 300). Scopes may name any registered predictor, so one config file serves any subset."""
    known = set(PREDICTORS.names())
    overrides = load_config_file(config, known) if config is not None else Overrides()
    overrides = overrides.merge(parse_set_options(set_ or [], known))
    overrides.dataset.update({k: v for k, v in (("context", context), ("future", horizon)) if v is not None})
    return overrides


def _execute(mode: str, models: str, dataset: str, protocol: Optional[str], set_: Optional[List[str]],
             config: Optional[Path], plugin: Optional[List[Path]], context: Optional[int], horizon: Optional[int],
             out: Path, force: bool, identity: dict[str, Any], execution: dict[str, Any],
             scoring: dict[str, Any], log: tuple[str, ...] = ()) -> list[dict]:
    from .registry import DATASETS

    _load_plugins(plugin)
    names = _split_names(models)
    PREDICTORS.refuse_unknown(names)  # before torch is imported: a mistyped name answers at once
    DATASETS.refuse_unknown([dataset])
    from .trackers import check_trackers

    check_trackers(list(log))  # an unknown or uninstalled tracker answers before any work
    overrides = _overrides(set_, config, context, horizon)

    from .cpu import set_threads
    from .devices import ExecutionSettings
    from .distributed import from_environment
    # torch import deferred: `bench list --help` stays fast
    from .runner import IdentitySettings, RunSettings, ScoringSettings, run_models

    console.quiet = not from_environment().is_main  # other ranks print errors only (see main)
    set_threads()
    run_settings = RunSettings(out=out, force=force, identity=IdentitySettings(**identity),
                               execution=ExecutionSettings(**execution),
                               scoring=ScoringSettings(**scoring), log=log)
    return run_models(names, dataset, protocol, overrides, run_settings, mode)  # type: ignore[arg-type]


ModelsOpt = typer.Option(..., "--models", "--model", "-m", help="Comma-separated predictor names (see `bench list`).")
DatasetOpt = typer.Option(..., "--dataset", "-d", help="Dataset name (see `bench list datasets`).")
ProtocolOpt = typer.Option(None, "--protocol", help="Dataset protocol; default: the dataset's first.")
QuickOpt = typer.Option(False, "--quick", help="Short schedule and a small test subset: a smoke run, marked as such.")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N.")
SeedOpt = typer.Option(0, "--seed", min=0, help="Training seed (initial weights, batches, samples).")
OutOpt = typer.Option(Path("runs"), "--out", help="Runs directory.")
SetOpt = typer.Option(None, "--set", help="key=value for every predictor, name.key=value for one, data.key=value for the dataset.")
ConfigOpt = typer.Option(None, "--config", help="YAML file of settings (same scopes as --set).")
PresetOpt = typer.Option(None, "--preset", help="Use this predictor preset instead of the dataset's (e.g. mmnist).")
PrecisionOpt = typer.Option(PrecisionChoice.fp32, "--precision", help="fp32 (default: the numbers papers report), "
                            "bf16, fp16 (CUDA, with a loss scaler) or auto: bf16 on GPUs that have it (else fp16), on "
                            "a CPU bf16 only when a short probe finds it faster than fp32. The precision used is part "
                            "of the run and its result.")
CompileOpt = typer.Option(False, "--compile", help="torch.compile the recurrent step (CUDA graphs on GPU); a predictor "
                          "that cannot compile runs eagerly and the result says why.")
WorkersOpt = typer.Option(None, "--workers", min=0, help="Data-loading worker processes; default: 0 on a CPU (the "
                          "compute takes every core), up to 4 on a GPU, so that clips load while the GPU computes.")
ForceOpt = typer.Option(False, "--force", help="Redo runs that already have a result.")
ContextOpt = typer.Option(None, "--context", min=1, help="Frames given (default: the protocol's), e.g. 36.")
HorizonOpt = typer.Option(None, "--horizon", min=1, help="Frames predicted, closed loop (default: the protocol's), "
                          "e.g. 300 for the long-term table.")
NprocOpt = typer.Option(1, "--nproc", min=1, help="Processes on this machine (torchrun --standalone): data-parallel "
                        "training on the same global batch, the test split shared out; one GPU each (cuda:LOCAL_RANK) "
                        "or gloo on the CPU. Several nodes: torchrun ... -m vpbench (README).")
SamplesOpt = typer.Option(None, "--samples", min=1, help="Samples per sequence for stochastic predictors (cwvae, "
                          "htsrm, dmvfn): scored as the mean over samples and as the best of N. Default: the predictor's "
                          "eval_samples.")


QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bar and no progress lines (errors and results "
                        "still print).")
NoWaitOpt = typer.Option(False, "--no-wait", help="When another process is working on a run, stop at once naming "
                         "it (exit 2) instead of waiting for it.")
ConventionOpt = typer.Option(None, "--convention", help="Also score in these reference conventions, e.g. "
                             "vpbench,cwvae: openstl, stip, cwvae (= htsrm); vpbench's own are always the main "
                             "columns. Stored apart (eval.conventions) and printed as labelled columns.")
FvdOpt = typer.Option(None, "--fvd", help="Also measure FVD in these conventions, e.g. stylegan-v,mcvd: stylegan-v "
                      "(= fvd-comparison), mcvd, predbench-jit (= predbench) read i3d_torchscript.pt; videogpt, tats, "
                      "predbench-400 read i3d_pretrained_400.pt (see `bench weights`); without the file the result "
                      "says FVD was not measured and where the file goes.")
I3dWeightsOpt = typer.Option(None, "--i3d-weights", help="StyleGAN-V's i3d_torchscript.pt for FVD stylegan-v, mcvd, "
                             "predbench-jit; default: VPBENCH_I3D_WEIGHTS. No checksum is published: the file used "
                             "is recorded with its sha256.")
I3dPytorchWeightsOpt = typer.Option(None, "--i3d-pytorch-weights", help="VideoGPT's i3d_pretrained_400.pt for FVD "
                                    "videogpt, tats, predbench-400; default: VPBENCH_I3D_PYTORCH_WEIGHTS, then "
                                    "TORCH_HOME's cache (used from there only if it is the file TATS commits).")
CheckpointOpt = typer.Option(None, "--checkpoint", help="Evaluate these weights instead of training (run, eval).")
LpipsWeightsOpt = typer.Option(None, "--lpips-weights", help="AlexNet state dict for LPIPS, used even if its checksum "
                               "is not torchvision's (recorded); default: VPBENCH_LPIPS_WEIGHTS, then TORCH_HOME's cache.")
YoloWeightsOpt = typer.Option(None, "--yolo-weights", help="Ultralytics detection weights (a file or a name such as "
                              "yolov8n.pt); default: VPBENCH_YOLO_WEIGHTS, then yolov5su.pt. See `bench weights`.")
LogOpt = typer.Option(None, "--log", help="Also record the runs in experiment trackers: tensorboard, mlflow, wandb "
                      "(comma-separated or repeated; each needs its package: pip install 'vpbench[mlflow]').")
DOCS = {
    "run": "Train (when needed) and evaluate each predictor, then print the dataset's table.",
    "train": "Train only (resumes an interrupted run); the checkpoint is chosen on the validation split.",
    "eval": "Evaluate trained predictors (or --checkpoint FILE) on the whole test split.",
}


def _register(mode: str) -> None:
    """`run`, `train` and `eval` take the same options; one definition serves all three."""

    def command(models: str = ModelsOpt, dataset: str = DatasetOpt, protocol: Optional[str] = ProtocolOpt,
                context: Optional[int] = ContextOpt, horizon: Optional[int] = HorizonOpt,
                quick: bool = QuickOpt, device: str = DeviceOpt, seed: int = SeedOpt, out: Path = OutOpt,
                set_: Optional[List[str]] = SetOpt, config: Optional[Path] = ConfigOpt,
                plugin: Optional[List[Path]] = PluginOpt, preset: Optional[str] = PresetOpt,
                precision: PrecisionChoice = PrecisionOpt, compile_: bool = CompileOpt,
                workers: Optional[int] = WorkersOpt, force: bool = ForceOpt, samples: Optional[int] = SamplesOpt,
                checkpoint: Optional[Path] = CheckpointOpt, lpips_weights: Optional[Path] = LpipsWeightsOpt,
                yolo_weights: Optional[str] = YoloWeightsOpt, nproc: int = NprocOpt,
                convention: Optional[str] = ConventionOpt, fvd: Optional[str] = FvdOpt,
                i3d_weights: Optional[Path] = I3dWeightsOpt,
                i3d_pytorch_weights: Optional[Path] = I3dPytorchWeightsOpt, log: Optional[List[str]] = LogOpt,
                quiet: bool = QuietOpt, no_wait: bool = NoWaitOpt) -> None:
        from .progress import progress_style

        style = progress_style(quiet)  # a bad VPBENCH_PROGRESS fails here, before any process starts
        if nproc > 1:
            from .launch import launch

            raise typer.Exit(launch(nproc, sys.argv[1:]))
        for flag, named in (("--i3d-weights", i3d_weights), ("--i3d-pytorch-weights", i3d_pytorch_weights)):
            if named is not None and not fvd:
                raise UserError(f"{flag} is read only for FVD: add --fvd CONVENTION (e.g. --fvd stylegan-v)")
        if mode == "train" and checkpoint is not None:
            raise UserError("--checkpoint is for `bench eval` and `bench run`: training starts from the run's own state")
        results = _execute(mode, models, dataset, protocol, set_, config, plugin, context, horizon, out, force,
                           identity=dict(seed=seed, quick=quick, precision=precision.value, preset=preset,
                                         checkpoint=checkpoint, samples=samples),
                           execution=dict(device=device, workers=workers, compile=compile_,
                                          progress=style, wait=not no_wait),
                           scoring=dict(lpips_weights=lpips_weights, yolo_weights=yolo_weights,
                                        conventions=tuple(_split_names(convention or "")),
                                        fvd=tuple(_split_names(fvd or "")), i3d_weights=i3d_weights,
                                        i3d_pytorch_weights=i3d_pytorch_weights),
                           log=tuple(dict.fromkeys(n for item in log or [] for n in _split_names(item))))
        from .distributed import current, shutdown

        main_rank = current().is_main
        shutdown()
        if mode != "train" and main_rank:
            from vpbench.reports.tables import load_results, render

            frame, _ = load_results(out)
            print(render(frame[frame["run_id"].isin({r["run_id"] for r in results})], "md"))

    command.__doc__ = DOCS[mode]
    app.command(mode)(command)


for _mode in DOCS:
    _register(_mode)


@app.command()
def profile(models: str = ModelsOpt, dataset: str = DatasetOpt, protocol: Optional[str] = ProtocolOpt,
            device: str = DeviceOpt, seed: int = SeedOpt, set_: Optional[List[str]] = SetOpt,
            config: Optional[Path] = ConfigOpt, plugin: Optional[List[Path]] = PluginOpt,
            preset: Optional[str] = PresetOpt, precision: PrecisionChoice = PrecisionOpt, compile_: bool = CompileOpt,
            context: Optional[int] = ContextOpt, horizon: Optional[int] = HorizonOpt,
            repeats: int = typer.Option(10, "--repeats", min=1, help="Timed runs; the median is reported."),
            warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed runs first."),
            json_: bool = typer.Option(False, "--json", help="A JSON list with one object per predictor.")) -> None:
    """Params, FLOPs, inference time and peak memory at batch 1, without training (weights are random)
    and without data (a random clip of the protocol's shape: no `bench data prepare` needed)."""
    from .cpu import set_threads
    from .profiling import profile_models, render_profiles

    set_threads()
    _load_plugins(plugin)
    overrides = _overrides(set_, config, context, horizon)
    records = profile_models(_split_names(models), dataset, protocol, overrides, device=device, seed=seed,
                             preset=preset, precision=precision.value, compile=compile_, repeats=repeats,
                             warmup=warmup)
    print(render_profiles(records, as_json=json_))


@app.command()
def predict(footage: Path = typer.Argument(..., help="A video file (anything FFmpeg decodes) or a folder of frames."),
            run: Optional[Path] = typer.Option(None, "--run", help="A trained run: runs/<dataset>/<predictor>/<id>."),
            checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Weights instead of a run: "
                                                      "vpbench's, or the OpenSTL / STIP files `bench eval` takes; "
                                                      "with --model and --dataset."),
            model: Optional[str] = typer.Option(None, "--model", "-m", help="The predictor (with --checkpoint)."),
            dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="The dataset whose protocol the "
                                                  "weights were trained for (with --checkpoint)."),
            protocol: Optional[str] = ProtocolOpt, set_: Optional[List[str]] = SetOpt,
            config: Optional[Path] = ConfigOpt, plugin: Optional[List[Path]] = PluginOpt,
            preset: Optional[str] = PresetOpt, device: str = DeviceOpt,
            stride: Optional[int] = typer.Option(None, "--stride", min=1, help="Frames between windows; default: "
                                                 "the horizon (predictions side by side, not overlapping)."),
            native_size: bool = typer.Option(False, "--native-size", help="Keep the footage's frame size instead "
                                             "of resizing to the protocol's (fully convolutional predictors only)."),
            out: Optional[Path] = typer.Option(None, "--out", help="Output folder; default: predictions/<name>.")) -> None:
    """Apply a trained predictor to your own video or frame folder: slide a context window over it, write the
    predicted frames (PNG) and an mp4 of context | prediction | ground truth, and print PSNR/SSIM per step where
    the footage goes on."""
    from .cpu import set_threads
    from .devices import resolve_device
    from .predicting import WeightsSource, run_predict, score_lines

    _load_plugins(plugin)
    set_threads()
    source = WeightsSource(run=run, checkpoint=checkpoint, model=model, dataset=dataset, protocol=protocol,
                           overrides=_overrides(set_, config, None, None), preset=preset)
    target = out if out is not None else Path("predictions") / footage.stem
    scores, windows, frames = run_predict(source, footage, target, stride, native_size, resolve_device(device))
    print("\n".join(score_lines(scores)))
    print(f"{windows} windows: predicted frames in {target / 'frames'}, {frames}-frame video {target / 'side_by_side.mp4'}")


class WeightsAction(str, Enum):
    show = "show"
    fetch = "fetch"


@app.command()
def weights(action: WeightsAction = typer.Argument(WeightsAction.show, help="show (default) or fetch."),
            only: Optional[List[str]] = typer.Option(None, "--only", help="lpips-alexnet, lpips-linear, yolo, "
                                                     "i3d-torchscript or i3d-pytorch (repeatable); default: all."),
            lpips_weights: Optional[Path] = LpipsWeightsOpt, yolo_weights: Optional[str] = YoloWeightsOpt,
            i3d_weights: Optional[Path] = I3dWeightsOpt, i3d_pytorch_weights: Optional[Path] = I3dPytorchWeightsOpt,
            mirror: Optional[str] = typer.Option(None, "--from", help="fetch: base URL to download from instead of "
                                                 "the official one (e.g. file:///media/weights).")) -> None:
    """Where each weight file (LPIPS backbone, YOLO, FVD's I3Ds) is looked for, whether it is there and valid; `fetch`
    downloads the missing ones (on a machine with internet)."""
    from .metrics.weights import ENTRIES, fetch, status_lines

    keys = only or list(ENTRIES)
    unknown = [k for k in keys if k not in ENTRIES]
    if unknown:
        raise UserError(f"unknown weight file {unknown[0]!r}; choose from {', '.join(ENTRIES)}")
    if action is WeightsAction.fetch:
        names = {"yolo": Path(yolo_weights).name} if yolo_weights else {}
        print("\n".join(fetch(keys, names, mirror)))
        return
    given = {"lpips-alexnet": lpips_weights, "yolo": yolo_weights, "i3d-torchscript": i3d_weights,
             "i3d-pytorch": i3d_pytorch_weights}
    print("\n".join(status_lines(given, keys)).rstrip())


@app.command()
def check(names: Optional[List[str]] = typer.Argument(None, help="Predictors to check; default: those the plugin "
                                                      "files register, or every registered one."),
          plugin: Optional[List[Path]] = PluginOpt,
          set_: Optional[List[str]] = typer.Option(None, "--set", help="name.key=value (or key=value for every "
                                                   "predictor that has it) over the tiny preset: a variant, e.g. "
                                                   "simvp.translator=van.")) -> None:
    """Hold predictors to the contract at their `tiny` preset: shapes, samples, rollout, checkpoint, costs,
    learning, beating copy-last. One line per check; exit 1 if any fails (a plugin's costs and copy-last
    checks only warn)."""
    from .contract import run_checks  # torch and the predictors load only for this command
    from .predictor import predictor_overrides, resolve_config

    before = set(PREDICTORS.names())
    _load_plugins(plugin)
    added = [name for name in PREDICTORS.names() if name not in before]
    for name in names or []:
        PREDICTORS.get(name)  # an unknown name is a usage error (exit 2), not a failed check
    if plugin and not names and not added:
        raise UserError(f"no predictor registered by {', '.join(map(str, plugin))}")
    overrides = parse_set_options(set_ or [], set(PREDICTORS.names()))
    if overrides.dataset or overrides.evaluation:
        raise UserError("bench check: --set takes predictor settings only (the contract fixes the data and evaluation)")
    settings = {name: predictor_overrides(PREDICTORS.get(name), overrides)
                for name in names or added or PREDICTORS.names()}
    for name, values in settings.items():
        resolve_config(name, overrides=values)  # a value the setting cannot take is a usage error, not a failed check
    failed = []
    for name, values in settings.items():
        for outcome in run_checks(name, settings=values):
            print(outcome.line(), flush=True)
            if outcome.status == "FAIL":
                failed.append(f"{outcome.name}: {outcome.check}")
    if failed:
        print(f"{len(failed)} failed: {', '.join(failed)}")
        raise typer.Exit(1)


@app.command()
def report(runs: Path = typer.Option(Path("runs"), "--runs", help="Runs directory to read."),
           out: Optional[Path] = typer.Option(None, "--out", help="Write the report here as well."),
           format: Format = typer.Option(Format.md, "--format"),
           compare_paper: Optional[str] = typer.Option(None, "--compare-paper", help="Also print a paper's "
                                                       "published numbers (stip, openstl, htsrm) beside our runs of "
                                                       "the same dataset and protocol, marked comparable or not."),
           figure_format: Optional[FigureFormat] = typer.Option(
               None, "--figure-format", help="With --out report.md: each figure as this too, beside its PNG.")) -> None:
    """Tables from every result.json under --runs: one markdown table per dataset and protocol; with --out
    report.md its figures too (curves, frame strips, detection overlay, cost vs quality)."""
    from vpbench.reports.tables import write_report

    if compare_paper is not None and format is not Format.md:
        raise UserError("--compare-paper prints markdown tables: use --format md")
    if format is Format.html:
        from vpbench.reports.html import write_html

        page = write_html(runs, out)
        print(f"wrote {out}" if out is not None else page)
        return

    def figures(frame: Any, report: Path) -> str:  # matplotlib is imported only when figures are written
        from vpbench.reports.figures import figures_section

        return figures_section(frame, report, (figure_format.value,) if figure_format else ())

    if compare_paper is None:
        print(write_report(runs, out, format.value, figures=figures))
        return
    from vpbench.reports.papers import compare_paper as beside_paper, published_tables
    from vpbench.reports.tables import load_results
    from vpbench.files import write_text_atomic

    published_tables(compare_paper)  # an unknown paper fails before any file is read
    text = write_report(runs, out, "md", figures=figures) + "\n" + beside_paper(load_results(runs)[0], compare_paper)
    if out is not None:
        write_text_atomic(out, text)
    print(text)


from vpbench.datasets._commands import app as _data_app  # noqa: E402  (typer only: `bench --help` stays fast)

app.add_typer(_data_app, name="data")


def main() -> None:
    from .faults import debugging, plugin_fault, print_traceback, take_debug_flag

    args = take_debug_flag(sys.argv[1:])
    try:
        from .cpu import keep_freed_memory_for_reuse

        keep_freed_memory_for_reuse()  # torch threads are set by the commands that compute, after option parsing
        app(args=args)  # standalone: typer reports usage errors itself with exit code 2
    except Stopped as exc:  # a scheduler's signal: the resume point is saved, the job ends as the signal would
        if os.environ.get("RANK", "0") == "0":
            console.quiet = False
            console.print(str(exc), markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except UserError as exc:
        if debugging():
            print_traceback(exc)
        _print_error(str(exc), exc)
        sys.exit(2)
    except Exception as exc:
        # A plugin's own failure is the user's code: one line naming it (exit 2, as for bad input).
        fault = plugin_fault(exc)
        several = int(os.environ.get("WORLD_SIZE") or 1) > 1
        if debugging() or (fault is None and not several):
            print_traceback(exc)  # a vpbench bug: the traceback, to report
        if fault is not None:
            _print_error(fault + ("" if debugging() else " (--debug shows the traceback)"), exc)
            sys.exit(2)
        if several:  # one line per process, naming it, instead of N interleaved tracebacks
            _print_error(f"rank {os.environ.get('RANK')}: {type(exc).__name__}: {exc}".splitlines()[0], exc)
        sys.exit(1)


def _print_error(message: str, exc: BaseException) -> None:
    """One `error:` line. Under several processes it should come from the process that failed: a rank whose
    collective broke because another died waits a moment for the launcher to end it, and a rank other than 0
    waits too, so that an error every rank hits (bad input) shows once, from rank 0."""
    delay = _echo_delay(exc)
    if delay:
        import time

        time.sleep(delay)
    from rich.markup import escape

    console.quiet = False
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def _echo_delay(exc: BaseException) -> float:
    """Seconds to wait before printing `exc` (see _print_error): none in a single process."""
    rank = os.environ.get("RANK")
    if rank is None or int(os.environ.get("WORLD_SIZE") or 1) <= 1:
        return 0.0
    dist = sys.modules.get("torch.distributed")  # loaded: several processes have run collectives
    # gloo reports a peer that went away as a plain RuntimeError naming gloo
    if (dist is not None and isinstance(exc, dist.DistError)) or any(name in str(exc) for name in ("gloo", "NCCL")):
        return 5.0  # an echo of another rank's failure, unless the launcher lets this rank live that long
    return 0.0 if rank == "0" else 2.0
