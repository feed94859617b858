"""One training loop for every predictor.

Batches are drawn with a generator seeded by (seed, iteration), so a run resumed from its last
checkpoint sees exactly the batches it would have seen; the checkpoint carries the model, the
optimizers, the schedulers, the loss scaler and the RNG state. The checkpoint kept for evaluation is
chosen on the validation split, never on test.

Under several processes (torchrun) the run keeps the global batch of a 1-process run: each rank trains on a
contiguous slice of the batch that iteration draws, its batch-mean loss weighted by its share, and
`TrainContext.step` sums the gradients over ranks before clipping and stepping, so every rank applies the
1-process update. Rank 0 alone writes the log and the checkpoints; every rank reads them to resume.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, replace
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from . import distributed
from .config import TrainConfig, config_to_dict
from .errors import Stopped, UserError
from .evaluation import evaluate
from .foreign import CHECKPOINT_FORMAT
from .precision import Precision, autocast
from .predictor import Predictor
from .progress import Style, progress_bar
from .result import TrainRecord
from .sharding import BatchShard, shard_bounds, training_batch
from .stopping import StopRequests, signal_name
from .store import RunDir, load_checkpoint
from .trackers import Tracker

class TrainingDiverged(UserError):
    """A NaN or infinite loss: training stops (nothing is scored) and the checkpoints written before stay."""


def build_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if cfg.optimizer in kinds:
        return kinds[cfg.optimizer](params, lr=cfg.lr, betas=(cfg.adam_beta1, 0.999), eps=cfg.adam_eps,
                                    weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def delayed_decays(done: int, start: int, every: int) -> int:
    """Decays made by `done` iterations when one follows each iteration j >= start with j % every == 0
    (the STIPHR / STRPM reference schedule)."""
    if done <= start:
        return 0
    return (done - 1) // every - (start - 1) // every


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped once per iteration."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.max_iterations)
    if cfg.lr_schedule == "exponential":
        # STIP and STRPM decay only once scheduled sampling has ended.
        start = cfg.lr_decay_start
        if start > 0:
            return torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda done: cfg.lr_gamma ** delayed_decays(done, start, cfg.lr_step_every))
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step_every, gamma=cfg.lr_gamma)
    if cfg.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.max_iterations)
    return None


def batch_shard(batch_size: int, world: distributed.World) -> BatchShard | None:
    """This rank's rows of every global batch; None in a single process (nothing is sliced)."""
    if not world.several:
        return None
    if batch_size < world.world_size:
        raise UserError(f"batch_size {batch_size} is smaller than the {world.world_size} processes: every process "
                        f"needs at least one clip per step (--set batch_size=..., or fewer processes)")
    return BatchShard(batch_size, *shard_bounds(batch_size, world.rank, world.world_size))


class TrainContext:
    """What a predictor's `training_step` asks of the harness: backward and optimizer steps. Under several
    processes it also makes them data-parallel: `backward` weights this rank's loss by its share of the global
    batch and `step` sums the gradients over ranks, so a predictor holds no distributed code."""

    def __init__(self, model: Predictor, cfg: TrainConfig, precision: Precision, device: torch.device) -> None:
        self.model = model
        self.cfg = cfg
        self.device = device
        self.precision = precision
        self.iteration = 0
        self.shard = batch_shard(cfg.batch_size, distributed.current())
        self.optimizers, self.schedulers = {}, {}
        for name, (params, differences) in model.optimizer_groups().items():
            group_cfg = replace(cfg, **differences)
            self.optimizers[name] = build_optimizer(params, group_cfg)
            self.schedulers[name] = build_scheduler(self.optimizers[name], group_cfg)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def backward(self, loss: Tensor) -> None:
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"training diverged at iteration {self.iteration + 1}: loss is {loss.item()}")
        if self.shard is not None:  # the summed gradients are then the global batch's (losses are batch means)
            loss = loss * self.shard.weight
        self.scaler.scale(loss).backward()

    def step(self, name: str = "model") -> None:
        optimizer = self.optimizers[name]
        if self.shard is not None:  # before clipping, so that the clip sees the global gradient
            sum_gradients([p for group in optimizer.param_groups for p in group["params"]])
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if self.schedulers[name] is not None:
            self.schedulers[name].step()

    def lr(self, name: str | None = None) -> float:
        """Learning rate of optimizer `name`, by default the first (GANs name theirs "generator", ...)."""
        optimizer = self.optimizers[name] if name is not None else next(iter(self.optimizers.values()))
        return optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items() if s is not None},
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in self.schedulers.items():
            if sched is not None:
                sched.load_state_dict(state["schedulers"][name])
        self.scaler.load_state_dict(state["scaler"])


def sum_gradients(params: list[nn.Parameter]) -> None:
    """Sum the gradients of `params` over every rank: one flat collective per dtype and device. A parameter
    without a gradient on this rank takes part with zeros (every rank must send the same layout); one that no
    rank gave a gradient keeps None, as in a 1-process run (Adam leaves such parameters untouched)."""
    buckets: dict[tuple[torch.dtype, torch.device], list[nn.Parameter]] = {}
    for p in params:
        buckets.setdefault((p.dtype, p.device), []).append(p)
    for (dtype, device), group in buckets.items():
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in group]
                         + [torch.tensor([float(p.grad is not None) for p in group], dtype=dtype, device=device)])
        distributed.all_reduce_(flat)
        had_grad = flat[-len(group):].tolist()
        for p, chunk, any_rank in zip(group, flat[:-len(group)].split([p.numel() for p in group]), had_grad):
            if not any_rank:
                continue
            if p.grad is None:
                p.grad = chunk.view_as(p).clone()
            else:
                p.grad.copy_(chunk.view_as(p))


class IterationSampler(Sampler[list[int]]):
    """Batch indices for iterations start..total-1, each a pure function of (seed, iteration); with a `shard`,
    this rank's rows of each."""

    def __init__(self, size: int, batch_size: int, seed: int, start: int, total: int,
                 shard: BatchShard | None = None) -> None:
        self.size, self.batch_size, self.seed, self.start, self.total = size, batch_size, seed, start, total
        self.shard = shard

    def __iter__(self) -> Iterator[list[int]]:
        for iteration in range(self.start, self.total):
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + iteration)
            batch = torch.randint(self.size, (self.batch_size,), generator=gen).tolist()
            yield batch if self.shard is None else batch[self.shard.start:self.shard.stop]

    def __len__(self) -> int:
        return max(0, self.total - self.start)


SELECTED_ON_LOSS = "validation loss (the predictor's validation_loss, e.g. negative ELBO per frame)"
NO_VALIDATION = "none: no validation sequences (val_size or val_sequences 0), the last checkpoint is tested"


def selects_on_own_loss(model: Predictor) -> bool:
    """Whether checkpoints are selected on the predictor's `validation_loss` rather than validation MSE."""
    return type(model).validation_loss is not Predictor.validation_loss


@torch.no_grad()
def mean_validation_loss(model: Predictor, split: Dataset, *, device: torch.device, precision: Precision,
                         batch_size: int, workers: int) -> float | None:
    """The mean over `split` of the predictor's `validation_loss`, or None when it selects on MSE.
    Random draws inside it (posterior samples) come from a fixed seed in a forked RNG, so every validation
    sees the same draws and training's random stream is untouched (resumed runs stay exact)."""
    if not selects_on_own_loss(model):
        return None
    was_training = model.training
    model.eval()
    loader = DataLoader(split, batch_size=batch_size, shuffle=False, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))
    total, count = 0.0, 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        for clip in loader:
            with autocast(device, precision):
                loss = model.validation_loss(clip.to(device, non_blocking=True))
            total += float(loss) * clip.shape[0]
            count += clip.shape[0]
    model.train(was_training)
    return total / max(count, 1)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Standing:
    """Where training stands besides the weights and optimizers: what last.pt carries (`save_last`) so that a
    resumed run goes on exactly where it stopped."""

    iteration: int = 0  # iterations done
    best_score: float = math.inf  # selection score of best.pt: validation MSE, or the predictor's validation loss
    best_mse: float = math.nan  # validation MSE of best.pt
    best_iteration: int = 0
    wall_seconds: float = 0.0  # time spent training, over every session of the run

    @classmethod
    def from_checkpoint(cls, state: dict) -> Standing:
        return cls(state["iteration"], state["best_val_score"], state["best_val_mse"], state["best_iteration"],
                   state["wall_seconds"])


def resume(model: Predictor, ctx: TrainContext, run: RunDir) -> Standing:
    """Restore the model, the optimizers and the RNG from the run's last.pt; a fresh Standing when there is none."""
    if not run.last_checkpoint.is_file():
        return Standing()
    try:
        state = load_checkpoint(run.last_checkpoint, ctx.device)
    except UserError as exc:
        raise UserError(f"{exc}; it is the run's resume point: --force restarts the run") from None
    model.load_state_dict(state["model"])
    ctx.load_state_dict(state["trainer"])
    _set_rng_state(state["rng"])
    standing = Standing.from_checkpoint(state)
    run.log({"event": "resume", "iteration": standing.iteration})
    return standing


def save_last(run: RunDir, model: Predictor, ctx: TrainContext, standing: Standing) -> None:
    """The resume point: weights, optimizers, schedulers, scaler, RNG and the standing."""
    run.save_checkpoint(run.last_checkpoint, {
        "format": CHECKPOINT_FORMAT, "predictor": model.registry_name, "iteration": standing.iteration,
        "model": model.state_dict(), "trainer": ctx.state_dict(), "rng": _rng_state(),
        "best_val_score": standing.best_score, "best_val_mse": standing.best_mse,
        "best_iteration": standing.best_iteration, "wall_seconds": standing.wall_seconds,
        "config": config_to_dict(model.config)})


def save_best(run: RunDir, model: Predictor, iteration: int) -> None:
    """The weights that are tested."""
    run.save_checkpoint(run.best_checkpoint, {
        "format": CHECKPOINT_FORMAT, "predictor": model.registry_name, "iteration": iteration,
        "model": model.state_dict(), "config": config_to_dict(model.config)})


def training_batches(split: Dataset, cfg: TrainConfig, seed: int, start: int, shard: BatchShard | None,
                     workers: int, device: torch.device) -> DataLoader:
    """The clips of iterations start..max_iterations-1, each batch a function of (seed, iteration)."""
    sampler = IterationSampler(len(split), cfg.batch_size, seed, start, cfg.max_iterations, shard)
    # Its own generator: creating a loader iterator otherwise draws from the global RNG, which would
    # shift every later random draw of a resumed run against an uninterrupted one.
    return DataLoader(split, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
                      generator=torch.Generator().manual_seed(seed))


def training_step(model: Predictor, clip: Tensor, ctx: TrainContext, run: RunDir) -> dict[str, float]:
    """One step of the predictor's `training_step` on this rank's clips; its losses over the global batch. A NaN or
    infinite loss stops training with what it leaves."""
    model.train()
    cfg = model.config
    # `train_horizon` trains on fewer predicted frames than the protocol scores (e.g. 10 of a long-term
    # protocol's 300); validation and testing always roll out the protocol's whole horizon.
    length = model.spec.context + cfg.train_horizon if cfg.train_horizon else None
    try:
        with ctx.autocast(), training_batch(ctx.shard):
            losses = model.training_step(clip[:, :length].to(ctx.device, non_blocking=True), ctx)
    except TrainingDiverged as exc:
        run.log({"event": "diverged", "iteration": ctx.iteration + 1, "message": str(exc)})
        raise TrainingDiverged(f"{model.registry_name}: {exc}; nothing was scored. {kept(run)}; lower lr "
                               f"(now {cfg.lr}) or set grad_clip, then --force") from None
    return global_losses(losses, ctx.shard)


def validate(model: Predictor, val_subset: Dataset, ctx: TrainContext, workers: int) -> tuple[float, dict[str, float]]:
    """The checkpoint-selection score on the validation sequences (validation MSE, or the predictor's own
    validation loss) and the figures train.log records."""
    cfg = model.config
    val = evaluate(model, val_subset, device=ctx.device, precision=ctx.precision, batch_size=cfg.eval_batch_size,
                   workers=workers)
    val_mse = val.summary.mean["mse"]
    val_loss = mean_validation_loss(model, val_subset, device=ctx.device, precision=ctx.precision,
                                    batch_size=cfg.eval_batch_size, workers=workers)
    figures = {"mse": val_mse, "psnr": val.summary.mean["psnr"], **({} if val_loss is None else {"loss": val_loss})}
    return (val_mse if val_loss is None else val_loss), figures


def train(model: Predictor, train_split: Dataset, val_split: Dataset, run: RunDir, *, seed: int,
          device: torch.device, precision: Precision = "fp32", workers: int = 0,
          show_progress: Style | bool = "bar", tracker: Tracker | None = None) -> TrainRecord:
    """Train `model` in `run`, resuming from `run.last_checkpoint` when there is one; `tracker` records what
    train.log does. A SIGTERM or SIGUSR1 saves last.pt at the end of the iteration and raises Stopped
    (vpbench.stopping)."""
    tracker = tracker or Tracker()
    cfg: TrainConfig = model.config
    ctx = TrainContext(model, cfg, precision, device)
    standing = resume(model, ctx, run)
    resumed_from = standing.iteration
    val_subset = Subset(val_split, range(min(cfg.val_sequences, len(val_split))))
    validates = len(val_subset) > 0  # without validation sequences the last weights are the ones tested
    loader = training_batches(train_split, cfg, seed, resumed_from, ctx.shard, workers, device)
    tic = last_saved = time.perf_counter()
    stops = StopRequests()
    with stops.listening(), progress_bar(f"train {model.registry_name}", total=cfg.max_iterations,
                                         completed=resumed_from, style=show_progress) as bar:
        for iteration, clip in zip(range(resumed_from, cfg.max_iterations), loader):
            ctx.iteration = iteration
            logged = training_step(model, clip, ctx, run)
            done = iteration + 1
            bar.advance(**logged)
            if done % cfg.log_every == 0 or done == cfg.max_iterations:
                run.log({"event": "train", "iteration": done, "lr": ctx.lr(), **logged})
                tracker.train(done, {"lr": ctx.lr(), **logged})
            if not validates and done == cfg.max_iterations:
                standing.best_iteration = done
                save_best(run, model, done)
            if validates and (done % cfg.val_every == 0 or done == cfg.max_iterations):
                score, figures = validate(model, val_subset, ctx, workers)
                run.log({"event": "val", "iteration": done, **figures})
                tracker.validation(done, figures)
                bar.note(val_mse=figures["mse"])
                if score < standing.best_score:
                    standing.best_score, standing.best_mse, standing.best_iteration = score, figures["mse"], done
                    save_best(run, model, done)
            stop = stops.agreed()
            by_time = 0 < cfg.checkpoint_minutes * 60 <= time.perf_counter() - last_saved
            if (stop is not None or by_time or done % cfg.checkpoint_every == 0 or done % cfg.val_every == 0
                    or done == cfg.max_iterations):
                standing.wall_seconds += time.perf_counter() - tic
                tic = last_saved = time.perf_counter()
                standing.iteration = done
                save_last(run, model, ctx, standing)
                run.log({"event": "checkpoint", "iteration": done})
            if stop is not None:
                run.log({"event": "stopped", "iteration": done, "signal": signal_name(stop)})
                distributed.barrier()  # last.pt is written before any rank exits
                raise Stopped(f"{model.registry_name}: stopped by {signal_name(stop)} at iteration {done} of "
                              f"{cfg.max_iterations}, saved {run.last_checkpoint}; the same command resumes there",
                              stop)
    run.log({"event": "done", "iteration": cfg.max_iterations, "best_iteration": standing.best_iteration})
    distributed.barrier()  # every rank reads best.pt next, which rank 0 has just written
    selected_on = (NO_VALIDATION if not validates else SELECTED_ON_LOSS if selects_on_own_loss(model)
                   else "validation MSE")
    return TrainRecord(iterations=cfg.max_iterations, best_iteration=standing.best_iteration,
                       best_val_mse=standing.best_mse, val_sequences=len(val_subset),
                       wall_seconds=round(standing.wall_seconds, 3), resumed_from=resumed_from,
                       selected_on=selected_on, best_val_score=standing.best_score)


def kept(run: RunDir) -> str:
    """What a stopped training leaves to resume or inspect."""
    if not run.last_checkpoint.is_file():
        return "No checkpoint was written before"
    state = load_checkpoint(run.last_checkpoint)
    return f"The last checkpoint (iteration {state['iteration']}) is kept: {run.last_checkpoint}"


def global_losses(losses: dict[str, Tensor], shard: BatchShard | None) -> dict[str, float]:
    """A training step's batch-mean losses over the global batch: each rank's weighted by its share and summed
    (one small collective), so the log and the progress bar show what a 1-process run shows."""
    if shard is None:
        return {k: float(v) for k, v in losses.items()}
    names = list(losses)
    values = torch.tensor([float(losses[k]) * shard.weight for k in names], dtype=torch.float64)
    return dict(zip(names, distributed.all_reduce_(values).tolist()))

