"""Checkpoint round trip and every corruption case fails with a clear CheckpointError."""

import json

import polars as pl
import pytest
import torch

from user_models.checkpoint import load_user_model, save_user_model
from user_models.data.artifact import DatasetMeta, SequenceDataset
from user_models.errors import CheckpointError
from user_models.protocol import History
from user_models.transformer import TransformerConfig, UserTransformer


def small_dataset(shift: int = 0) -> SequenceDataset:
    """4 users x 6 random events over 12 items; ``shift`` changes the events (and the fingerprint)."""
    gen = torch.Generator().manual_seed(shift)
    n_users, n_items, per_user = 4, 12, 6
    items = torch.randint(1, n_items + 1, (n_users * per_user,), generator=gen).tolist()
    inter = pl.DataFrame({
        "user": [u for u in range(n_users) for _ in range(per_user)],
        "item": items,
        "behavior": [1 + (i % 2) for i in range(n_users * per_user)],
        "timestamp": [100 * i for i in range(n_users * per_user)],
        "session": [t // 3 for _ in range(n_users) for t in range(per_user)],
        "position": [t for _ in range(n_users) for t in range(per_user)],
    })
    raw_ids = [f"m{i}" for i in range(n_items)]
    item_frame = pl.DataFrame({"item": list(range(1, n_items + 1)), "raw_id": raw_ids,
                               "title": None, "category": None, "price": None})
    users = pl.DataFrame({"user": list(range(n_users)), "user_key": [f"u{u}" for u in range(n_users)]})
    meta = DatasetMeta(name="small", behaviors=("view", "buy"), n_users=0, n_items=0, n_interactions=0,
                       n_sessions=0, has_timestamps=True, behavior_source="events", session_gap_seconds=1800)
    return SequenceDataset.from_frames(inter, item_frame, users, meta)


@pytest.fixture
def saved(tmp_path):
    ds = small_dataset()
    torch.manual_seed(0)
    model = UserTransformer(TransformerConfig(dim=8, layers=1, heads=2, max_len=6), ds.n_items, ds.behaviors)
    with torch.no_grad():
        model.item_bias.normal_()
    save_user_model(model.eval(), tmp_path / "ckpt", ds, training={"epochs": 0})
    return model, ds, tmp_path / "ckpt"


def test_round_trip_gives_identical_outputs(saved):
    model, ds, path = saved
    loaded = load_user_model(path, dataset=ds)
    assert not loaded.training and loaded.config == model.config
    history = History(torch.tensor([[1, 2, 3], [4, 0, 0]]), torch.tensor([[1, 2, 1], [2, 0, 0]]),
                      torch.tensor([[-1.0, 5.0, 60.0], [-1.0, -1.0, -1.0]]), torch.tensor([3, 1]))
    a, b = model.encode(history), loaded.encode(history)
    items = torch.tensor([[1, 5, 9], [2, 3, 12]])
    assert torch.equal(model.item_logits(a, items), loaded.item_logits(b, items))
    assert torch.equal(model.behavior_probs(a, items), loaded.behavior_probs(b, items))
    assert torch.equal(model.end_prob(a), loaded.end_prob(b))
    assert json.loads((path / "vocab.json").read_text())["items"][:2] == ["m0", "m1"]


def test_wrong_dataset_is_rejected(saved):
    _, _, path = saved
    with pytest.raises(CheckpointError, match="trained on dataset 'small'"):
        load_user_model(path, dataset=small_dataset(shift=1))


def test_wrong_version_is_rejected(saved):
    _, ds, path = saved
    config = json.loads((path / "config.json").read_text())
    config["format_version"] = 7
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="format version 7"):
        load_user_model(path, dataset=ds)


@pytest.mark.parametrize("victim", ["model.safetensors", "vocab.json"])
def test_corrupt_or_missing_files_are_rejected(saved, victim):
    _, ds, path = saved
    data = bytearray((path / victim).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / victim).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{victim}: corrupt"):
        load_user_model(path)
    (path / victim).unlink()
    with pytest.raises(CheckpointError, match=f"{victim}: missing"):
        load_user_model(path)


def test_garbage_config_and_mismatched_weights_are_rejected(saved, tmp_path):
    _, _, path = saved
    with pytest.raises(CheckpointError, match="no config.json"):
        load_user_model(tmp_path / "nowhere")
    config = json.loads((path / "config.json").read_text())
    config["model"]["dim"] = 16  # weights were saved with dim 8
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="weights do not fit the config"):
        load_user_model(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load_user_model(path)
