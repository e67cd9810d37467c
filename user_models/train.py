"""Training of sequence models on a :class:`~user_models.data.artifact.SequenceDataset`.

One loop serves the Transformer user model and the GRU baseline: next-item cross-entropy at every
position of :class:`~user_models.sequences.TrainingWindows` (full softmax over the catalogue, or sampled
softmax for catalogues over ``full_softmax_max_items``), plus, for the Transformer, the behavior-given-
item and session-end losses. AdamW, linear warm-up then cosine decay, gradient clipping, early stopping
on validation NDCG@10 (full ranking, seen items not masked), the best weights kept.

Determinism: every epoch reseeds its shuffle (an explicit ``torch.Generator``) and the dropout RNG from
``(seed, epoch, rank)``, so a run resumed from its last finished epoch reproduces the uninterrupted run.

Distributed: under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` set) the model is wrapped in
``DistributedDataParallel`` (NCCL on CUDA, gloo on CPU); every rank takes its share of each epoch's
shuffled batches, rank 0 evaluates, writes the checkpoint and broadcasts the early-stopping decision.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from user_models.checkpoint import describe_mismatch, save_user_model
from user_models.data.artifact import SequenceDataset
from user_models.errors import CheckpointError, InputError, TrainingError
from user_models.evaluate import EvalExamples, NextItemScorer, eval_examples, ranking_report
from user_models.sequences import TrainingWindows, event_index, session_end_flags, training_windows
from user_models.transformer import TransformerConfig, UserTransformer


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the architecture is a separate config).

    The defaults (with the default :class:`TransformerConfig`) are the configuration that
    ``scripts/bench_user_model.py`` measures on MovieLens-100k and the synthetic world.
    """

    epochs: int = 30
    """Upper bound (and the length of the cosine schedule); early stopping may end sooner."""
    batch_size: int = 128
    """Windows per optimizer step (split across ranks under DDP)."""
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    grad_clip: float = 1.0
    patience: int = 10
    """Stop after this many evaluations without a better validation NDCG@10."""
    label_smoothing: float = 0.0
    behavior_weight: float = 0.5
    """Weight of the behavior-given-item loss relative to the next-item loss."""
    end_weight: float = 0.5
    """Weight of the session-end loss."""
    full_softmax_max_items: int = 100_000
    """Above this catalogue size the next-item loss is a sampled softmax."""
    sampled_negatives: int = 8192
    """Uniform negatives per batch for the sampled softmax."""
    seed: int = 0
    device: str = "cpu"
    eval_batch_size: int = 512
    progress: bool = True
    """Show a tqdm bar with live metrics (rank 0 only)."""

    def __post_init__(self) -> None:
        def bad(name: str, value: object, rule: str) -> ValueError:
            flag = "--" + name.replace("_", "-")
            return ValueError(f"{flag} must be {rule}, got {value!r}")

        for name in ("epochs", "batch_size", "patience", "full_softmax_max_items", "sampled_negatives",
                     "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(name, value, "an integer of at least 1")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) \
                or self.warmup_steps < 0:
            raise bad("warmup_steps", self.warmup_steps, "an integer of at least 0")
        for name, low_open in (("lr", False), ("weight_decay", False), ("grad_clip", True),
                               ("behavior_weight", False), ("end_weight", False)):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < 0 or (low_open and value == 0):
                raise bad(name, value, "a finite number above 0" if low_open else "a finite number >= 0")
        ls = self.label_smoothing
        if not (isinstance(ls, int | float) and not isinstance(ls, bool) and 0 <= ls < 1):
            raise bad("label_smoothing", ls, "in [0, 1)")




@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` returns: the best validation score, when it was reached and what it cost."""

    best_valid: dict[str, Any]
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[dict[str, float]]


# --- data -----------------------------------------------------------------------------------------

def train_windows(dataset: SequenceDataset, max_len: int) -> TrainingWindows:
    """The training part of ``dataset`` (leave-last-out: all but each user's last two events) as windows."""
    seqs = dataset.sequences
    ends = session_end_flags(seqs, dataset.interactions["session"].to_numpy())
    train = dataset.train_sequences()
    return training_windows(train, ends[event_index(seqs, train.lengths)], max_len)


# --- loss -----------------------------------------------------------------------------------------

class SequenceLoss(nn.Module):
    """The training objective as a module, so DDP sees every parameter used inside ``forward``.

    The wrapped model must map a :class:`History` to hidden states ``[B, L, d]`` and offer
    ``catalogue_logits``; a :class:`UserTransformer` also trains its behavior and session-end heads.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, n_items: int) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.n_items = n_items

    def forward(self, batch: TrainingWindows, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        net: Any = self.model  # a UserTransformer or a GRURecommender
        hidden = net(batch.history)
        has_target = batch.target_items > 0
        h = hidden[has_target]
        targets = batch.target_items[has_target]
        is_transformer = isinstance(net, UserTransformer)
        first = None
        if is_transformer:  # first position of every item per row, to tell the model what it has seen
            rows, positions = has_target.nonzero(as_tuple=True)
            h_first = net.first_positions(batch.history.items, batch.history.lengths, self.n_items)
            first = (h_first[rows], positions[:, None])
        parts = {"item": self._item_loss(net, h, targets, first, generator)}
        c = self.config
        loss = parts["item"]
        if is_transformer:
            parts["behavior"] = F.cross_entropy(net.behavior_logits(h, targets[:, None])[:, 0].float(),
                                                batch.target_behaviors[has_target] - 1)
            positions = torch.arange(hidden.shape[1], device=hidden.device)[None, :]
            is_event = positions < batch.history.lengths[:, None]
            parts["end"] = F.binary_cross_entropy_with_logits(net.end_logit(hidden[is_event]).float(),
                                                              batch.session_end[is_event])
            loss = loss + c.behavior_weight * parts["behavior"] + c.end_weight * parts["end"]
        return loss, parts

    def _item_loss(self, net: Any, h: torch.Tensor, targets: torch.Tensor,
                   first: tuple[torch.Tensor, torch.Tensor] | None, generator: torch.Generator | None
                   ) -> torch.Tensor:
        """Next-item cross-entropy; ``first`` = (first positions ``[P, n+1]``, positions ``[P, 1]``)."""
        c = self.config
        if self.n_items <= c.full_softmax_max_items:
            seen = None if first is None else first[0] <= first[1]
            logits = net.catalogue_logits(h, seen) if seen is not None else net.catalogue_logits(h)
            return F.cross_entropy(logits[:, 1:].float(), targets - 1, label_smoothing=c.label_smoothing)
        # Sampled softmax: the target against uniform negatives shared by the batch (accidental hits
        # removed); uniform proposals need no log-Q correction.
        negatives = torch.randint(1, self.n_items + 1, (c.sampled_negatives,), device=h.device,
                                  generator=generator)
        candidates = torch.cat([targets[:, None], negatives[None, :].expand(len(targets), -1)], dim=1)
        if first is None:
            logits = net.item_scores(h, candidates)
        else:
            logits = net.item_scores(h, candidates, first[0].gather(1, candidates) <= first[1])
        logits = logits.float()
        logits[:, 1:] = logits[:, 1:].masked_fill(negatives[None, :] == targets[:, None], -math.inf)
        return F.cross_entropy(logits, torch.zeros_like(targets), label_smoothing=c.label_smoothing)


# --- distributed helpers --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Dist:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1), else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size())


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda`` (the local rank's GPU under torchrun); a clear error when CUDA is absent."""
    if name not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda, got {name!r}")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA device is available (this torch build or machine)")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


# --- resumable training state (safetensors + JSON, no pickle) --------------------------------------

RESUME_DIR = "resume"


def _save_resume(root: Path, model: nn.Module, best: dict[str, torch.Tensor], opt: torch.optim.Optimizer,
                 progress: dict[str, Any]) -> None:
    """Write ``state.safetensors`` and ``progress.json`` as one unit: a new ``root`` directory is filled
    beside the old one and renamed over it, so a kill at any moment leaves the old state or the new one
    (never new weights with the old epoch count, which would make ``--resume`` train an extra epoch)."""
    from safetensors.torch import save_file

    from user_models.outputs import atomic_swap_directory

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best.items()})
    opt_state = opt.state_dict()
    for index, slots in opt_state["state"].items():
        for name, value in slots.items():
            tensors[f"opt.{index}.{name}"] = torch.as_tensor(value)
    groups = [{k: v for k, v in g.items()} for g in opt_state["param_groups"]]
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_swap_directory(root) as tmp:
        save_file(contiguous, str(tmp / RESUME_STATE))
        (tmp / RESUME_PROGRESS).write_text(json.dumps({**progress, "param_groups": groups}, indent=2) + "\n")


RESUME_STATE, RESUME_PROGRESS = "state.safetensors", "progress.json"


def _load_resume(root: Path, model: nn.Module, opt: torch.optim.Optimizer, expected: dict[str, Any]
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read the resumable state; anything unreadable is a one-line :class:`CheckpointError`."""
    from user_models.outputs import clean_stale

    clean_stale(root)  # puts back a state moved aside by a run killed while replacing it
    progress_file, state_file = root / RESUME_PROGRESS, root / RESUME_STATE
    if not progress_file.is_file() or not state_file.is_file():
        raise InputError(f"{root}: nothing to resume (no progress.json/state.safetensors)")
    hint = "; train again without --resume (--overwrite replaces this run)"
    try:
        progress = json.loads(progress_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{progress_file}: truncated or invalid JSON (line {exc.lineno}, column "
                              f"{exc.colno}: {exc.msg}){hint}") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise CheckpointError(f"{progress_file}: cannot read ({type(exc).__name__}){hint}") from None
    required = ("epoch", "best_ndcg", "best_epoch", "bad_evals", "history", "best_valid", "seconds",
                "param_groups")
    if not isinstance(progress, dict) or any(k not in progress for k in required):
        missing = [k for k in required if not isinstance(progress, dict) or k not in progress]
        raise CheckpointError(f"{progress_file}: not a resume state (missing {', '.join(missing)}){hint}")
    for key, value in expected.items():
        if progress.get(key) != value:
            raise InputError(f"{progress_file}: {key} differs from this run's; cannot resume")
    try:
        tensors = load_file(str(state_file))
    except (SafetensorError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{state_file}: not a safetensors file ({first[:120]}){hint}") from None
    try:
        _fit_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, state_file)
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        opt.load_state_dict({"state": state, "param_groups": progress.pop("param_groups")})
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{state_file}: does not fit this model and optimizer "
                              f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}){hint}"
                              ) from None
    return best, progress


def _fit_state(model: nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    """``model.load_state_dict(weights)`` with a message naming the first tensor that does not fit."""
    mismatch = describe_mismatch(model.state_dict(), weights)
    if mismatch:
        raise CheckpointError(f"{source}: weights do not fit the config ({mismatch})")
    model.load_state_dict(weights, strict=True)


# --- the loop -------------------------------------------------------------------------------------

def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def fit(model: nn.Module, windows: TrainingWindows, valid: EvalExamples,
        scorer: Callable[[nn.Module], NextItemScorer], config: TrainConfig, n_items: int,
        resume_dir: Path | None = None, resume: bool = False, desc: str = "train") -> FitResult:
    """Train ``model`` in place on ``windows``, early-stopping on ``valid`` NDCG@10; load the best weights.

    Args:
        model: a module mapping a History to hidden states (see :class:`SequenceLoss`).
        windows: training windows (CPU tensors; batches move to the model's device).
        valid: validation examples for early stopping.
        scorer: wraps the (unwrapped) model as a :class:`NextItemScorer` for evaluation.
        config: optimisation settings.
        n_items: catalogue size.
        resume_dir: where the per-epoch resumable state lives (None: not saved).
        resume: continue from the state in ``resume_dir``.
        desc: progress-bar label.
    """
    from tqdm.auto import tqdm

    device = resolve_device(config.device)
    ranks = _init_distributed(device)
    model.to(device)
    objective: nn.Module = SequenceLoss(model, config, n_items)
    if ranks.world > 1:
        objective = nn.parallel.DistributedDataParallel(objective)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "emb" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=config.lr)
    steps_per_epoch = math.ceil(len(windows) / config.batch_size)
    total = steps_per_epoch * config.epochs
    # what must not change between an interrupted run and its resumption (the progress bar may)
    identity = {"train_config": _jsonable({**asdict(config), "progress": None}), "n_windows": len(windows)}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    progress: dict[str, Any] = {"epoch": 0, "best_ndcg": -1.0, "best_epoch": 0, "bad_evals": 0,
                                "history": [], "best_valid": {}, "seconds": 0.0}
    if resume:
        if resume_dir is None:
            raise InputError("resume requested without a resume directory")
        best_state, progress = _load_resume(resume_dir, model, opt, identity)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    start_time = time.perf_counter() - progress["seconds"]
    bar = tqdm(total=config.epochs, initial=progress["epoch"], desc=desc, unit="epoch",
               disable=not (config.progress and ranks.main), dynamic_ncols=True)
    while progress["epoch"] < config.epochs and progress["bad_evals"] < config.patience:
        epoch = progress["epoch"]
        torch.manual_seed(config.seed * 1_000_003 + epoch * 101 + ranks.rank)  # dropout of this epoch
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        order = torch.randperm(len(windows), generator=gen)
        sample_gen = torch.Generator(device=device).manual_seed(config.seed + epoch * 7919 + ranks.rank)
        objective.train()
        losses: list[float] = []
        for step_in_epoch in range(steps_per_epoch):
            rows = order[step_in_epoch * config.batch_size:(step_in_epoch + 1) * config.batch_size]
            if len(rows) < ranks.world:  # too small to give every rank an example: skipped by all ranks
                continue
            rows = rows[ranks.rank::ranks.world]
            batch = windows.select(rows).to(device)
            for group in opt.param_groups:
                group["lr"] = config.lr * lr_factor(epoch * steps_per_epoch + step_in_epoch,
                                                    config.warmup_steps, total)
            with autocast:
                loss, _ = objective(batch, sample_gen)
            loss_value = float(loss.detach())
            _check_finite_loss(loss_value, ranks, config, epoch, step_in_epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            losses.append(loss_value)
        _check_finite_weights(model, config, epoch)
        model.eval()
        metric = torch.zeros(1, device=device)
        report: dict[str, Any] = {}
        if ranks.main:
            report = ranking_report(scorer(model), valid, device, config.eval_batch_size)
            metric[0] = report["ndcg@10"]
        if ranks.world > 1:
            dist.broadcast(metric, src=0)
        ndcg = float(metric[0])
        progress["epoch"] = epoch + 1
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        progress["history"].append({"epoch": epoch + 1, "loss": mean_loss, "valid_ndcg@10": ndcg})
        if ndcg > progress["best_ndcg"]:
            progress.update(best_ndcg=ndcg, best_epoch=epoch + 1, bad_evals=0,
                            best_valid={k: v for k, v in report.items() if k != "seen_masked"})
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            progress["bad_evals"] += 1
        progress["seconds"] = time.perf_counter() - start_time
        if ranks.main and resume_dir is not None:
            _save_resume(resume_dir, model, best_state, opt, {**progress, **identity})
        bar.set_postfix(loss=f"{mean_loss:.4f}", ndcg10=f"{ndcg:.4f}", best=f"{progress['best_ndcg']:.4f}")
        bar.update(1)
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(progress["best_valid"], progress["best_epoch"], progress["epoch"],
                     time.perf_counter() - start_time, progress["history"])


def _check_finite_loss(value: float, ranks: _Dist, config: TrainConfig, epoch: int, step: int) -> None:
    """Stop at the first non-finite loss (every rank agrees, so none is left waiting in a collective)."""
    finite = math.isfinite(value)
    if ranks.world > 1:
        flag = torch.tensor([1.0 if finite else 0.0], device=resolve_device(config.device))
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        finite = bool(flag.item() > 0)
    if not finite:
        raise TrainingError(
            f"training diverged: the loss is {value} at epoch {epoch + 1}, step {step + 1} (lr "
            f"{config.lr:g}); no checkpoint was written: lower --lr"
        )


def _check_finite_weights(model: nn.Module, config: TrainConfig, epoch: int) -> None:
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise TrainingError(f"training diverged: weight {name!r} is not finite after epoch {epoch + 1} "
                                f"(lr {config.lr:g}); lower --lr")


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data))


def train_user_model(dataset: SequenceDataset, out: str | os.PathLike[str],
                     model_config: TransformerConfig | None = None, train_config: TrainConfig | None = None,
                     resume: bool = False, overwrite: bool = True) -> tuple[UserTransformer, FitResult]:
    """Train a :class:`UserTransformer` on ``dataset`` and write its checkpoint to ``out``.

    The resumable state lives in ``out/resume``; the checkpoint (see :mod:`user_models.checkpoint`) is
    written by rank 0 when training ends. ``out`` may exist only when it is a user-model checkpoint (or
    an interrupted run) written by recsim-env: ``resume`` continues it, ``overwrite`` (the API default;
    the CLI asks for ``--overwrite``) starts afresh, discarding its resume state at once. A run that
    stops with :class:`~user_models.errors.TrainingError` (a diverging loss) removes the ``out`` it
    created.

    Raises:
        OutputError: ``out`` may not be written (see :func:`user_models.outputs.check_output`).
        TrainingError: the loss or the weights became non-finite.
    """
    import shutil

    from user_models.evaluate import TransformerScorer
    from user_models.outputs import USER_MODEL, check_output, clean_stale

    model_config = model_config or TransformerConfig()
    train_config = train_config or TrainConfig()
    root = Path(out)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if main_rank:
        check_output(root, USER_MODEL, overwrite=overwrite and not resume, allow_existing=resume,
                     inputs=[dataset.path])
        clean_stale(root / RESUME_DIR)  # a resume state moved aside by a killed swap is put back
    if resume and not (root / RESUME_DIR).is_dir():
        raise InputError(f"{root}: --resume given but there is no {RESUME_DIR}/ state to resume from")
    check_model_size(model_config, dataset.n_items)
    created = not root.exists()
    if not resume and main_rank and (root / RESUME_DIR).is_dir():
        shutil.rmtree(root / RESUME_DIR)  # an earlier run's state must not be resumed into this one
    torch.manual_seed(train_config.seed)  # parameter initialisation
    model = UserTransformer(model_config, dataset.n_items, dataset.behaviors)
    windows = train_windows(dataset, model_config.max_len)
    if len(windows) == 0:
        raise InputError(f"dataset {dataset.meta.name!r}: no user has 4 or more events to train on")
    valid = eval_examples(dataset, "valid")
    try:
        result = fit(model, windows, valid, lambda m: TransformerScorer(model), train_config,
                     dataset.n_items, resume_dir=root / RESUME_DIR, resume=resume, desc="user-model")
    except TrainingError:
        if created and main_rank:
            shutil.rmtree(root, ignore_errors=True)
        raise
    if not dist.is_initialized() or dist.get_rank() == 0:
        model.to("cpu")
        save_user_model(model, root, dataset, training={
            "train_config": _jsonable(asdict(train_config)),
            "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "seconds": round(result.seconds, 2), "valid": result.best_valid,
            "parameters": model.n_parameters(),
        })
    return model, result


MAX_PARAMETERS = 2_000_000_000
"""Largest model :func:`train_user_model` builds (8 GB of fp32 weights before optimizer state)."""


def check_model_size(config: TransformerConfig, n_items: int) -> None:
    """Refuse, before allocating anything, a model larger than :data:`MAX_PARAMETERS`."""
    d = config.dim
    estimate = (n_items + 1) * (d + 1) + config.layers * 12 * d * d + config.max_len * d
    if estimate > MAX_PARAMETERS:
        raise InputError(f"model too large: about {estimate:,} parameters (dim {d}, {config.layers} layers, "
                         f"{n_items:,} items); the limit is {MAX_PARAMETERS:,}: lower --dim or --layers")
