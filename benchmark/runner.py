"""Orchestrates `bench run / train / eval`: resolve names and configs, then train, evaluate and store."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from rich.markup import escape
from torch.utils.data import Dataset, Subset

from . import __version__, distributed, memory
from .config import EvalConfig, Overrides, config_to_dict, identity_dict
from .acceleration import Execution, prepare_execution, resolve_precision
from .costs import measure_costs
from .data import SPLITS, DataProblem, VideoDataset
from .devices import ExecutionSettings, Runtime, describe_device, resolve_runtime
from .digest import sha256_file
from .files import npz_bytes
from .errors import UserError
from .evaluation import evaluate, rank_share
from .foreign import Checkpoint, configure, describe, load_into, load_weights, read_checkpoint
from .metrics.conventions import CONVENTIONS, Convention, resolve_conventions
from .metrics.fvd import DETECTORS, check_named_files, resolve_fvd_conventions
from .metrics.suite import MetricSuite
from .predictor import (Predictor, ResolvedConfig, check_shared_keys, predictor_overrides, reads_training_split,
                        resolve_config)
from .progress import clock_text, console, progress_bar, say
from .registry import DATASETS, PREDICTORS
from .result import (NEEDS_NO_TRAINING, Costs, DataRecord, Evaluation, Identity, NewerSchemaError, Result,
                     ResultError, TrainRecord, Versions)
from .spec import VideoSpec
from .store import RunDir
from .trackers import TrackedRun, Tracker, open_trackers, outcome_of
from .precision import Precision
from .training import train

Mode = Literal["run", "train", "eval"]
# --quick scores a prefix of the test split, and the result says so: 256 sequences, fewer (down to 32) when the
# horizon is long, so that a 300-frame smoke run scores about as many frames as a 20-frame one.
QUICK_TEST_SEQUENCES, QUICK_MIN_SEQUENCES, QUICK_TEST_FRAMES = 256, 32, 5120


def quick_test_sequences(future: int) -> int:
    return min(QUICK_TEST_SEQUENCES, max(QUICK_MIN_SEQUENCES, QUICK_TEST_FRAMES // future))


@dataclass(frozen=True)
class IdentitySettings:
    """What a command asks that makes a run's identity (its run id), besides the predictor, dataset and config."""

    seed: int = 0
    quick: bool = False
    precision: Precision | Literal["auto"] = "fp32"  # auto is resolved once per command (resolve_precision)
    preset: str | None = None
    checkpoint: Path | None = None  # weights to evaluate instead of training
    samples: int | None = None  # per sequence, for stochastic predictors; None: the predictor's `eval_samples`


@dataclass(frozen=True)
class ScoringSettings:
    """How the test split is scored besides vpbench's metrics; none of it enters the run's identity: these change
    how the same predictions are scored, not what is trained or predicted."""

    lpips_weights: Path | None = None  # None: VPBENCH_LPIPS_WEIGHTS, else torchvision's cache under TORCH_HOME
    yolo_weights: str | None = None  # a file or an Ultralytics weights name; None: VPBENCH_YOLO_WEIGHTS, yolov5su.pt
    conventions: tuple[str, ...] = ()  # reference metric conventions scored besides vpbench's (metrics/conventions.py)
    fvd: tuple[str, ...] = ()  # FVD conventions (metrics/fvd.py); none: FVD is not measured
    i3d_weights: Path | None = None  # None: VPBENCH_I3D_WEIGHTS (a file at the default location is never verified)
    i3d_pytorch_weights: Path | None = None  # None: VPBENCH_I3D_PYTORCH_WEIGHTS, else TORCH_HOME's cache if verified
    evaluation: EvalConfig = field(default_factory=EvalConfig)  # `--set eval.*`


@dataclass(frozen=True)
class RunSettings:
    """A command's settings by role: where runs live, what they are, how they execute, how they are scored."""

    out: Path = Path("runs")
    force: bool = False  # redo runs that have a result
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    log: tuple[str, ...] = ()  # experiment trackers (--log), vpbench.trackers; rank 0 only


def build_dataset(name: str, protocol: str | None, options: dict[str, Any]) -> VideoDataset:
    return DATASETS.get(name).create(protocol, **options)


def run_models(models: list[str], dataset_name: str, protocol: str | None, overrides: Overrides,
               settings: RunSettings, mode: Mode = "run") -> list[dict]:
    """Train and/or evaluate each model; returns the results as result.json holds them (empty dicts for
    train-only), which is what the CLI picks its runs out of a report by."""
    if not models:
        raise UserError("no predictor named: pass --models a,b")
    classes = [PREDICTORS.get(name) for name in models]  # unknown names fail before any work
    dataset = build_dataset(dataset_name, protocol, overrides.dataset)
    check_shared_keys(classes, overrides)
    _check_asked(classes, settings)
    runtime = resolve_runtime(settings.execution)
    distributed.init_from_environment(runtime.device)
    settings = dataclasses.replace(
        settings, identity=dataclasses.replace(settings.identity, precision=_precision(settings.identity, runtime)),
        scoring=dataclasses.replace(settings.scoring, evaluation=overrides.eval_config()))
    # Every value of every predictor is checked, and every model's construction and memory, before any work:
    # the last predictor's bad setting must not surface after the first one has trained for hours.
    # A given checkpoint is read here too: one that does not load fails before any run is touched.
    configs = [_resolve(cls, dataset, overrides, settings.identity) for cls in classes]
    for resolved, _ in configs:
        _check_before_building(resolved, dataset.spec, settings.identity, runtime, mode)
    # Weights are found and checked before any training, so a mistyped --lpips-weights fails at once.
    scoring = settings.scoring
    metric_suite = None if mode == "train" else MetricSuite(scoring.lpips_weights, scoring.yolo_weights,
                                                            scoring.fvd, _named_i3d_files(scoring))
    results = [_run_one(resolved, given, dataset, settings, runtime, mode, metric_suite) for resolved, given in configs]
    return [{} if result is None else result.to_dict() for result in results]


def _check_asked(classes: list[type[Predictor]], settings: RunSettings) -> None:
    """What the command names that could be missing: a preset, a checkpoint file, a convention."""
    asked = settings.identity
    if asked.preset is not None and not any(asked.preset in c.presets for c in classes):
        raise UserError(f"no predictor of this run has a preset {asked.preset!r}")
    if asked.checkpoint is not None and not asked.checkpoint.is_file():
        raise UserError(f"checkpoint file not found: {asked.checkpoint}")
    resolve_conventions(settings.scoring.conventions)  # an unknown name fails before any work
    check_named_files(resolve_fvd_conventions(settings.scoring.fvd), _named_i3d_files(settings.scoring))


def _named_i3d_files(scoring: ScoringSettings) -> dict[str, Path | None]:
    return {"i3d-torchscript": scoring.i3d_weights, "i3d-pytorch": scoring.i3d_pytorch_weights}


def _precision(asked: IdentitySettings, runtime: Runtime) -> Precision:
    """The precision the runs take. auto's timing probe could choose differently on two ranks: rank 0 chooses for
    all, and says what it chose."""
    world = distributed.current()
    precision, note = distributed.broadcast_object(resolve_precision(asked.precision, runtime.device)
                                                   if world.is_main else None)
    if note is not None:
        console.print(note)
    return precision


def _resolve(cls: type[Predictor], dataset: VideoDataset, overrides: Overrides,
             settings: IdentitySettings) -> tuple[ResolvedConfig, Checkpoint | None]:
    """The predictor's config, and the weights to evaluate if given. Weights from elsewhere may need settings
    (a reference's switches): they join the config, hence the run id."""
    given = read_checkpoint(settings.checkpoint, cls) if settings.checkpoint is not None else None
    chosen = predictor_overrides(cls, overrides)
    if given is not None:
        chosen = configure(given, dataset.spec, chosen)
    resolved = resolve_config(cls, dataset.presets(), chosen,
                              preset=settings.preset if settings.preset in cls.presets else None, quick=settings.quick)
    return resolved, given


def _will_train(cls: type[Predictor], settings: IdentitySettings, mode: Mode) -> bool:
    return cls.trainable and settings.checkpoint is None and mode in ("run", "train")


def _memory_need(resolved: ResolvedConfig, spec: VideoSpec, parameters: int, settings: IdentitySettings, mode: Mode,
                 activations: int | None = None) -> memory.MemoryNeed:
    config = resolved.config
    world = distributed.current().world_size
    samples = (settings.samples or config.eval_samples) if resolved.predictor.stochastic else 1
    return memory.estimate(spec, parameters, batch_size=-(-config.batch_size // world),
                           eval_batch_size=config.eval_batch_size, samples=samples,
                           training=_will_train(resolved.predictor, settings, mode), activations_per_clip=activations)


def _check_before_building(resolved: ResolvedConfig, spec: VideoSpec, settings: IdentitySettings, runtime: Runtime,
                           mode: Mode) -> None:
    """The model's own checks (patch size against the frame, ...) on the meta device, which allocates nothing;
    then the memory the run needs (with the activations of a dry forward on small frames when it trains). A
    constructor that cannot run on meta is checked when it is built."""
    try:
        with torch.device("meta"):
            model = resolved.build(spec)
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - e.g. .tolist() of a meta tensor; the real build reports real errors
        return
    parameters = sum(p.numel() for p in model.parameters())
    name, batch = resolved.predictor.registry_name, resolved.config.batch_size
    training = _will_train(resolved.predictor, settings, mode)
    activations = memory.activations_per_clip(resolved, spec, runtime.device) if training else None  # small frames
    warning = memory.check_fits(_memory_need(resolved, spec, parameters, settings, mode, activations), spec, name,
                                runtime.device, batch_size=batch)
    if warning is not None:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)


def _run_one(resolved: ResolvedConfig, given: Checkpoint | None, dataset: VideoDataset, settings: RunSettings,
             runtime: Runtime, mode: Mode, metric_suite: MetricSuite | None = None) -> Result | None:
    """One predictor: skip it if its result stands, else (resume) training, evaluate and record; None for train."""
    cls = resolved.predictor
    identity = run_identity(cls, dataset, resolved, settings.identity)
    world = distributed.current()
    run = RunDir(settings.out, dataset.registry_name, cls.registry_name, identity.to_dict(), writes=world.is_main)
    with run.lock(on_wait=lambda line: console.print(escape(line), highlight=False), wait=settings.execution.wait):
        distributed.barrier(patient=True)  # the other ranks read the run once rank 0 holds it
        return _run_locked(run, identity, resolved, given, dataset, settings, runtime, mode, metric_suite)


def _run_locked(run: RunDir, identity: Identity, resolved: ResolvedConfig, given: Checkpoint | None,
                dataset: VideoDataset, settings: RunSettings, runtime: Runtime, mode: Mode,
                metric_suite: MetricSuite | None) -> Result | None:
    cls = resolved.predictor
    world = distributed.current()
    kept = _result_to_keep(cls.registry_name, run, settings, mode)
    conventions = resolve_conventions(settings.scoring.conventions)
    if kept is not None:
        scored = list(kept.eval.conventions or {})
        missing = [c.name for c in conventions if c.name not in scored]
        # FVD asked and not in the result (never scored, or not measured then): evaluate again
        missing += [f"FVD {c.name}" for c in resolve_fvd_conventions(settings.scoring.fvd)
                    if c.name not in (kept.eval.fvd or {})]
        if not missing:
            console.print(f"[dim]{cls.registry_name}: result exists, skipped ({run.path}); --force redoes it[/dim]")
            return kept
        # Scoring the same weights in another convention needs no training: evaluate again, keep the training
        # record, and keep every convention the result had (the main columns come out the same).
        console.print(f"{cls.registry_name}: result exists without convention(s) {', '.join(missing)}: "
                      f"evaluating again, training kept ({run.path})")
        conventions = resolve_conventions([*(n for n in scored if n in CONVENTIONS), *settings.scoring.conventions])
    run.prepare(force=settings.force)  # keeps an interrupted run's checkpoints: training resumes from them
    distributed.barrier()  # under --force rank 0 has removed the old files before any rank reads last.pt
    with open_trackers(settings.log, _tracked(run, dataset) if world.is_main else None) as tracker:
        return _train_and_score(run, identity, resolved, given, dataset, settings, runtime, mode, metric_suite,
                                kept, conventions, tracker)


def _tracked(run: RunDir, dataset: VideoDataset) -> TrackedRun:
    identity = run.identity
    return TrackedRun(name=f"{identity['predictor']}-{run.id}", experiment=f"vpbench-{dataset.registry_name}-"
                      f"{dataset.protocol.name}", path=run.path,
                      params={"run_id": run.id, **identity})


def _train_and_score(run: RunDir, identity: Identity, resolved: ResolvedConfig, given: Checkpoint | None,
                     dataset: VideoDataset, settings: RunSettings, runtime: Runtime, mode: Mode,
                     metric_suite: MetricSuite | None, kept: Result | None, conventions: tuple[Convention, ...],
                     tracker: Tracker) -> Result | None:
    cls = resolved.predictor
    world = distributed.current()
    model, execution = _build_model(dataset, resolved, settings, runtime)
    say(_start_line(model, dataset, run, runtime, trains=kept is None and _will_train(cls, settings.identity, mode)),
        runtime.progress)
    trained = (kept.train if kept is not None
               else _train(model, dataset, run, settings.identity, runtime, mode, tracker))
    if mode == "train":
        console.print(f"{cls.registry_name}: trained, best checkpoint {run.best_checkpoint}")
        return None
    checkpoint = _load_weights_for_eval(model, run, given, dataset)
    test = dataset.split("test")
    samples = 1 if identity.samples is None else identity.samples  # None: a deterministic predictor
    evaluation = _evaluate(model, test, settings, runtime, metric_suite, samples=samples, checkpoint=checkpoint,
                           run=run, conventions=conventions,
                           checkpoint_notes=given.notes if given is not None else [])
    if kept is not None and kept.eval.fvd:  # FVD conventions scored before and not asked now stay in the result
        evaluation.fvd = {**kept.eval.fvd, **(evaluation.fvd or {})}
        for name in evaluation.fvd:
            evaluation.not_measured.pop(f"fvd@{name}", None)
        # the files those numbers came from, with their marks
        detectors = {key: record for key, record in (kept.eval.weights or {}).items() if key in DETECTORS}
        evaluation.weights = {**detectors, **(evaluation.weights or {})}
    # Timed on rank 0 alone, so that no other process shares its device (or its CPU cores) meanwhile.
    costs = _measure_costs(model, test, runtime, execution) if world.is_main else Costs({})
    distributed.barrier(patient=True)
    result = _record(run, identity, model, trained, evaluation, costs, dataset.problems())
    run.write_result(result)
    if world.is_main and settings.log:
        tracker.result(outcome_of(run.path, result.to_dict()))
    _print_summary(cls.registry_name, result, run.result_path)
    say(f"end {cls.registry_name}: result {run.result_path} after {clock_text(time.monotonic() - run.started)}",
        runtime.progress)
    return result


def _start_line(model: Predictor, dataset: VideoDataset, run: RunDir, runtime: Runtime, trains: bool) -> str:
    """What a log without a terminal says when a run starts: what runs, where, on what, for how long."""
    spec, world = model.spec, distributed.current()
    processes = f"{world.world_size} processes" if world.several else "1 process"
    threads = torch.get_num_threads()
    if trains:
        done = run.resume_iteration()
        work = f"{model.config.max_iterations} iterations" + (f" (resuming at {done})" if done else "")
    else:
        work = "no training"
    return (f"start {model.registry_name} on {dataset.registry_name} protocol {dataset.protocol.name} "
            f"({spec.context} -> {spec.future} frames of {spec.height}x{spec.width}): run {run.path}, device {runtime.device}, "
            f"{threads} thread{'s' if threads > 1 else ''} x {processes}, {work}")


def run_identity(cls: type[Predictor], dataset: VideoDataset, resolved: ResolvedConfig,
                 settings: IdentitySettings) -> Identity:
    """What the run is; its hash is the run id, so a key added here gives every existing run a new id."""
    identity = Identity(
        predictor=cls.registry_name, dataset=dataset.registry_name, protocol=dataset.protocol,
        dataset_config=config_to_dict(dataset.config), seed=settings.seed, quick=settings.quick,
        preset=resolved.preset, precision=settings.precision, config=identity_dict(resolved.config),
        # other files under the same root are other data: a new run, not a skip
        data_fingerprint=dataset.fingerprint())
    if cls.stochastic:
        identity.samples = settings.samples or resolved.config.eval_samples
    if settings.checkpoint is not None:
        identity.checkpoint_sha256 = sha256_file(settings.checkpoint)[:16]
    return identity


def _result_to_keep(name: str, run: RunDir, settings: RunSettings, mode: Mode) -> Result | None:
    """The run's existing result, when it stands: not under --force, and never for `bench train`."""
    if settings.force or mode == "train":
        return None
    try:
        return run.read_result()
    except NewerSchemaError as exc:  # redoing it would overwrite a newer vpbench's result
        raise UserError(f"{exc}; --force redoes the run with this vpbench") from None
    except ResultError as exc:
        aside = run.set_aside_result()
        console.print(f"[yellow]warning:[/yellow] {name}: {run.result_path} is not a readable result "
                      f"({exc.reason}); moved to {aside.name}, evaluating again")
        return None


def _build_model(dataset: VideoDataset, resolved: ResolvedConfig, settings: RunSettings,
                 runtime: Runtime) -> tuple[Predictor, Execution]:
    """The one place the runner builds a predictor, laid out and compiled as the settings ask."""
    torch.manual_seed(settings.identity.seed)  # the initial weights follow from the seed
    model = resolved.build(dataset.spec).to(runtime.device)
    return model, prepare_execution(model, runtime.device, settings.identity.precision,  # type: ignore[arg-type]
                                    channels_last=settings.execution.channels_last,
                                    compile=settings.execution.compile)


def _train(model: Predictor, dataset: VideoDataset, run: RunDir, settings: IdentitySettings, runtime: Runtime,
           mode: Mode, tracker: Tracker | None = None) -> TrainRecord | None:
    """Train (or resume training) unless the predictor needs none or given weights are to be evaluated."""
    if not _will_train(type(model), settings, mode):
        return None
    return train(model, dataset.split("train"), dataset.split("val"), run, seed=settings.seed, device=runtime.device,
                 precision=settings.precision, workers=runtime.workers,  # type: ignore[arg-type]
                 show_progress=runtime.progress, tracker=tracker)


def _load_weights_for_eval(model: Predictor, run: RunDir, given: Checkpoint | None, dataset: VideoDataset) -> str:
    """Load the weights to score: given ones, else the run's best on validation, else (a predictor that needs no
    training) the training split's statistic it reads, if any; says which, for the result."""
    if given is not None:
        load_into(model, given)
        if (line := describe(model.registry_name, given)) is not None:
            console.print(line, highlight=False)
        return str(given.path)
    if not model.trainable:  # a split is read only where it is used: a real dataset's split opens its files
        read = reads_training_split(type(model)) and model.fit_statistics(dataset.split("train"))
        return read or NEEDS_NO_TRAINING
    if not run.best_checkpoint.is_file():
        raise UserError(f"{model.registry_name}: no trained checkpoint in {run.path}; "
                        "run `bench train` or `bench run` first")
    load_weights(model, run.best_checkpoint)
    return "best on validation"


def _evaluate(model: Predictor, test: Dataset, settings: RunSettings, runtime: Runtime,
              metric_suite: MetricSuite | None, *, samples: int, checkpoint: str, run: RunDir,
              conventions: tuple[Convention, ...] = (), checkpoint_notes: list[str] | None = None) -> Evaluation:
    """Score the test split (a prefix of it under --quick) with every metric whose weights are at hand; the
    frames of `eval.keep_sequences` of its sequences go to the run's kept_frames.npz."""
    quick_size = quick_test_sequences(model.spec.future)
    asked = settings.identity
    scored = Subset(test, range(min(quick_size, len(test)))) if asked.quick else test
    extra = (metric_suite or MetricSuite()).build(model.spec, runtime.device)
    tic = time.perf_counter()
    with progress_bar(f"test {model.registry_name}", total=len(rank_share(scored, model.stochastic)),
                      style=runtime.progress, unit="seq") as bar:
        scores = evaluate(model, scored, device=runtime.device, precision=asked.precision,  # type: ignore[arg-type]
                          batch_size=model.config.eval_batch_size, workers=runtime.workers, progress=bar,
                          extra_metrics=extra.metrics, samples=samples, seed=asked.seed, conventions=conventions,
                          keep_sequences=settings.scoring.evaluation.keep_sequences, fvd=extra.fvd)
    wall_seconds = time.perf_counter() - tic
    if scores.kept_frames is not None:
        run.write_kept_frames(npz_bytes(scores.kept_frames))
    return Evaluation(
        split="test", sequences=scores.sequences, split_size=len(test),
        whole_split=scores.sequences == len(test), checkpoint=checkpoint, checkpoint_notes=checkpoint_notes or None,
        per_step=scores.summary.per_step, mean=scores.summary.mean,
        not_measured={**extra.not_measured, **(scores.fvd_not_measured or {})}, fvd=scores.fvd,
        weights=extra.weights, detection=scores.detection, samples=scores.samples,
        best_of_samples=scores.best_of_samples, sampling=_sampling(scores.samples), conventions=scores.conventions,
        wall_seconds=round(wall_seconds, 3), forward_seconds=round(scores.forward_seconds, 3))


def _measure_costs(model: Predictor, test: Dataset, runtime: Runtime, execution: Execution) -> Costs:
    """Params, FLOPs, time and peak memory of one rollout at batch 1, on the first test sequence."""
    costs = measure_costs(model, test[0], runtime.device, describe_device(runtime.device),
                          precision=execution.precision)
    return Costs.from_dict({**costs, "execution": execution.describe()})


def _sampling(samples: int | None) -> str | None:
    """How a stochastic predictor's numbers were drawn, in words (None for a deterministic one)."""
    if samples is None:
        return None
    return (f"per_step and mean: the mean over {samples} samples per sequence; best_of_samples: per sequence and "
            f"metric the sample with the best time-averaged score; detection: the first sample")


def _record(run: RunDir, identity: Identity, model: Predictor, trained: TrainRecord | None, evaluation: Evaluation,
            costs: Costs, problems: list[DataProblem]) -> Result:
    """The result: the identity with the whole config the model ran with, and what the run measured."""
    return Result(
        run_id=run.id, identity=dataclasses.replace(identity, config=config_to_dict(model.config)),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        versions=Versions(vpbench=__version__, torch=torch.__version__, python=platform.python_version()),
        train=trained, eval=evaluation, costs=costs,
        # files a split lost (corrupt, truncated): counted, never silently dropped
        data=DataRecord({split: sum(p.split == split for p in problems) for split in SPLITS}, problems),
        world_size=distributed.current().world_size, threads=torch.get_num_threads(), floor=model.floor)


def _print_summary(name: str, result: Result, path: Path) -> None:
    mean = result.eval.mean
    lpips = f"  LPIPS {mean['lpips']:.4f}" if "lpips" in mean else ""
    # the reference conventions' figures, labelled: never to be read as ours
    others = "".join(f"  ({c}: PSNR {block['mean']['psnr']:.2f}  SSIM {block['mean']['ssim']:.4f})"
                     for c, block in (result.eval.conventions or {}).items())
    others += "".join(f"  (FVD {c}: {block['fvd']:.2f} from {block['clips']} clips)"
                      for c, block in (result.eval.fvd or {}).items())
    console.print(f"{name}: PSNR {mean['psnr']:.2f}  SSIM {mean['ssim']:.4f}  MSE {mean['mse']:.3e}{lpips}{others} "
                  f"over {result.eval.sequences} test sequences -> {path}")
