"""Saving and loading a trained :class:`~user_models.transformer.UserTransformer` (no pickle).

A checkpoint directory holds

- ``model.safetensors``: the weights;
- ``vocab.json``: the item vocabulary (raw id of item ``1..n_items``) and the behavior names;
- ``config.json``: format version, the :class:`~user_models.transformer.TransformerConfig`, catalogue
  size, the dataset's name and fingerprint, the sha256 of the two files above and a training summary;
- optionally ``choice.safetensors`` and ``choice.json``: a choice model learned from impression logs
  (``recsim user-model fit-choice``, :mod:`user_models.choice_model`); checkpoints without them load as
  before, with no learned choice.

Each file is written to a temporary name and renamed; ``config.json`` goes last, so a directory whose
``config.json`` names the right hashes is complete. :func:`load_user_model` checks all of it and raises
:class:`~user_models.errors.CheckpointError` with the file and the reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from user_models.choice_model import CHOICE_FORMS, LearnedChoice
from user_models.data.artifact import SequenceDataset, file_sha256
from user_models.errors import CheckpointError
from user_models.transformer import TransformerConfig, UserTransformer

FORMAT_VERSION = 1
"""Bumped whenever the layout or the meaning of a checkpoint file changes; loading another fails."""

WEIGHTS, VOCAB, CONFIG = "model.safetensors", "vocab.json", "config.json"
CHOICE_FORMAT_VERSION = 2
"""Bumped whenever the layout or the meaning of ``choice.json``/``choice.safetensors`` changes (2: the
choice's ``form``; a version-1 file is a multinomial logit and still loads)."""
CHOICE_READABLE_VERSIONS = (1, CHOICE_FORMAT_VERSION)
CHOICE_WEIGHTS, CHOICE_CONFIG = "choice.safetensors", "choice.json"


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (temporary file, then rename)."""
    _write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write ``tensors`` as safetensors to ``path`` atomically."""
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _write_atomic(path, lambda tmp: save_file(contiguous, str(tmp)))


def save_user_model(model: UserTransformer, path: str | os.PathLike[str], dataset: SequenceDataset,
                    training: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (trained on ``dataset``) as a checkpoint directory at ``path`` (a learned choice
    fitted on weights the directory held before is removed: ``recsim user-model fit-choice`` again)."""
    root = Path(path)
    if model.n_items != dataset.n_items or model.behaviors != dataset.behaviors:
        raise CheckpointError(f"{root}: model and dataset {dataset.meta.name!r} disagree on the vocabulary")
    bad = non_finite_tensors(model.state_dict())
    if bad:
        raise CheckpointError(f"{root}: refusing to save a model whose tensor {bad[0]!r} holds NaN or "
                              "infinite values")
    root.mkdir(parents=True, exist_ok=True)
    for stale in (CHOICE_CONFIG, CHOICE_WEIGHTS):  # a choice fitted on earlier weights no longer applies
        (root / stale).unlink(missing_ok=True)
    save_tensors(root / WEIGHTS, model.state_dict())
    raw_ids = dataset.items.sort("item")["raw_id"].to_list()
    write_json(root / VOCAB, {"items": raw_ids, "behaviors": list(model.behaviors)})
    write_json(root / CONFIG, {
        "format_version": FORMAT_VERSION,
        "kind": "user_transformer",
        "model": asdict(model.config),
        "n_items": model.n_items,
        "behaviors": list(model.behaviors),
        "dataset": {"name": dataset.meta.name, "fingerprint": dataset.fingerprint},
        "sha256": {WEIGHTS: file_sha256(root / WEIGHTS), VOCAB: file_sha256(root / VOCAB)},
        "training": training or {},
    })
    return root


def read_checkpoint_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated ``config.json`` of the checkpoint at ``path`` (version and file hashes checked)."""
    root = Path(path)
    config_path = root / CONFIG
    if not config_path.is_file():
        raise CheckpointError(f"{root}: not a user-model checkpoint (no {CONFIG}); train one first")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path}: invalid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: checkpoint format version {version!r}, this recsim-env reads version "
            f"{FORMAT_VERSION}; train the model again"
        )
    for key in ("model", "n_items", "behaviors", "dataset", "sha256"):
        if key not in config:
            raise CheckpointError(f"{config_path}: missing key {key!r}")
    expected_types: dict[str, tuple[type, str]] = {
        "model": (dict, "an object"), "dataset": (dict, "an object"), "sha256": (dict, "an object"),
        "behaviors": (list, "a list of names"), "n_items": (int, "a positive integer"),
    }
    for key, (kind, text) in expected_types.items():
        value = config[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{config_path}: key {key!r} must be {text}, got {_short(value)}")
    if config["n_items"] < 1:
        raise CheckpointError(f"{config_path}: key 'n_items' must be a positive integer, got "
                              f"{config['n_items']}")
    if not config["behaviors"] or not all(isinstance(b, str) and b for b in config["behaviors"]):
        raise CheckpointError(f"{config_path}: key 'behaviors' must be a list of names, got "
                              f"{_short(config['behaviors'])}")
    for name in (WEIGHTS, VOCAB):
        file = root / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing")
        if file_sha256(file) != config["sha256"].get(name):
            raise CheckpointError(f"{file}: corrupt or modified (sha256 differs from {CONFIG})")
    return config


def load_user_model(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                    dataset: SequenceDataset | None = None) -> UserTransformer:
    """Load a checkpoint as a ready-to-use :class:`UserTransformer` in eval mode on ``device``.

    Args:
        path: checkpoint directory written by :func:`save_user_model` (or ``recsim user-model train``).
        device: where the model's tensors live.
        dataset: when given, the checkpoint must have been trained on it (same fingerprint, vocabulary).

    Raises:
        CheckpointError: missing or corrupt files, another format version, another dataset.
    """
    root = Path(path)
    config = read_checkpoint_config(root)
    known = {f.name for f in fields(TransformerConfig)}
    try:
        model_config = TransformerConfig(**{k: v for k, v in config["model"].items() if k in known})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{root / CONFIG}: invalid model config ({str(exc).splitlines()[0]})") from None
    behaviors = tuple(config["behaviors"])
    _check_vocab(root / VOCAB, int(config["n_items"]), behaviors)
    if dataset is not None:
        fingerprint = config["dataset"].get("fingerprint")
        if fingerprint != dataset.fingerprint:
            raise CheckpointError(
                f"{root}: trained on dataset {config['dataset'].get('name')!r} (fingerprint "
                f"{str(fingerprint)[:12]}), not on {dataset.meta.name!r} ({dataset.fingerprint[:12]})"
            )
        if config["n_items"] != dataset.n_items or behaviors != dataset.behaviors:
            raise CheckpointError(f"{root}: vocabulary differs from dataset {dataset.meta.name!r}")
    try:
        weights = load_file(str(root / WEIGHTS))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{root / WEIGHTS}: cannot read ({exc})") from None
    model = UserTransformer(model_config, int(config["n_items"]), behaviors)
    mismatch = describe_mismatch(model.state_dict(), weights)
    if mismatch:
        raise CheckpointError(f"{root / WEIGHTS}: weights do not fit the config ({mismatch})")
    bad = non_finite_tensors(weights)
    if bad:
        raise CheckpointError(f"{root / WEIGHTS}: tensor {bad[0]!r} holds NaN or infinite values "
                              f"({len(bad)} tensor(s) in all); the model diverged in training: train again "
                              "with a lower --lr")
    model.load_state_dict(weights, strict=True)
    model = model.to(device).eval()
    model.learned_choice = load_learned_choice(root, device)
    return model


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [name for name, t in tensors.items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def _check_vocab(file: Path, n_items: int, behaviors: tuple[str, ...]) -> None:
    try:
        vocab = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file}: invalid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(vocab, dict) or not isinstance(vocab.get("items"), list):
        raise CheckpointError(f"{file}: expected an object with an 'items' list")
    if len(vocab["items"]) != n_items:
        raise CheckpointError(f"{file}: {len(vocab['items'])} item ids, but {CONFIG} says n_items "
                              f"{n_items}")
    if tuple(vocab.get("behaviors", ())) != behaviors:
        raise CheckpointError(f"{file}: behaviors {vocab.get('behaviors')!r} differ from {CONFIG}'s "
                              f"{list(behaviors)}")


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """'' when ``found`` has exactly the names and shapes of ``expected``, else the first difference."""
    problems = []
    for name, tensor in expected.items():
        if name not in found:
            problems.append(f"tensor {name!r} is missing")
        elif tuple(found[name].shape) != tuple(tensor.shape):
            problems.append(f"tensor {name!r} has shape {list(found[name].shape)}, the config needs "
                            f"{list(tensor.shape)}")
    problems += [f"unexpected tensor {name!r}" for name in found if name not in expected]
    if not problems:
        return ""
    more = f"; {len(problems) - 1} more difference(s)" if len(problems) > 1 else ""
    return problems[0] + more


# --- the learned choice (optional files) ----------------------------------------------------------------
def save_learned_choice(choice: LearnedChoice, checkpoint: str | os.PathLike[str]) -> Path:
    """Write ``choice`` into the user-model checkpoint directory (weights first, ``choice.json`` last,
    each atomically); ``choice.json`` names the ``model.safetensors`` it was fitted on."""
    root = Path(checkpoint)
    config = read_checkpoint_config(root)
    if int(config["n_items"]) != choice.n_items:
        raise CheckpointError(f"{root}: the choice model has {choice.n_items} items, the checkpoint "
                              f"{config['n_items']}")
    save_tensors(root / CHOICE_WEIGHTS, choice.tensors())
    write_json(root / CHOICE_CONFIG, {
        "format_version": CHOICE_FORMAT_VERSION, "kind": "learned_choice", "n_items": choice.n_items,
        "n_slots": choice.n_slots, "form": choice.form,
        "sha256": {CHOICE_WEIGHTS: file_sha256(root / CHOICE_WEIGHTS), WEIGHTS: file_sha256(root / WEIGHTS)},
        "checkpoint_config": CONFIG, "report": choice.report,
    })
    return root / CHOICE_CONFIG


def load_learned_choice(checkpoint: str | os.PathLike[str], device: torch.device | str = "cpu"
                        ) -> LearnedChoice | None:
    """The learned choice saved in ``checkpoint``, or None when it has none (older checkpoints).

    Raises:
        CheckpointError: another format version, a corrupt file, or a choice fitted on other weights.
    """
    root = Path(checkpoint)
    path = root / CHOICE_CONFIG
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: invalid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict) or meta.get("format_version") not in CHOICE_READABLE_VERSIONS:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path}: choice format version {version!r}, this recsim-env reads versions "
                              f"{CHOICE_READABLE_VERSIONS}; run `recsim user-model fit-choice` again")
    raw_hashes = meta.get("sha256")
    hashes: dict[str, Any] = raw_hashes if isinstance(raw_hashes, dict) else {}
    weights = root / CHOICE_WEIGHTS
    if not weights.is_file() or file_sha256(weights) != hashes.get(CHOICE_WEIGHTS):
        raise CheckpointError(f"{weights}: missing, corrupt or modified (sha256 differs from "
                              f"{CHOICE_CONFIG})")
    if file_sha256(root / WEIGHTS) != hashes.get(WEIGHTS):
        raise CheckpointError(f"{path}: fitted on other user-model weights than {root / WEIGHTS} (the model "
                              "was retrained); run `recsim user-model fit-choice` again")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: cannot read ({exc})") from None
    names = ("pref_weight", "repeat_weight", "item_bias", "position_bias", "no_choice")
    missing = [n for n in names if n not in tensors]
    if missing or set(tensors) - set(names):
        raise CheckpointError(f"{weights}: expected tensors {list(names)}, got {sorted(tensors)}")
    n_items = int(meta.get("n_items", -1))
    if tensors["item_bias"].shape != (n_items + 1,) or tensors["position_bias"].ndim != 1 \
            or tensors["position_bias"].numel() < 1:
        raise CheckpointError(f"{weights}: tensor shapes do not fit {CHOICE_CONFIG}")
    if not all(bool(torch.isfinite(t).all()) for t in tensors.values()):
        raise CheckpointError(f"{weights}: holds NaN or infinite values")
    form = meta.get("form", "mnl")
    if form not in CHOICE_FORMS:
        raise CheckpointError(f"{path}: choice form {form!r} is not one of {CHOICE_FORMS}")
    return LearnedChoice.from_tensors({n: tensors[n].float().to(device) for n in names}, form,
                                      dict(meta.get("report", {})))
