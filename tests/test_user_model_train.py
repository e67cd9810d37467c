"""Training: learns a learnable pattern, is deterministic by seed, resumes exactly, writes a checkpoint."""

import numpy as np
import pytest
import torch
from _user_model_data import cyclic_dataset

import user_models.train as train_module
from user_models.checkpoint import load_user_model
from user_models.evaluate import TransformerScorer, eval_examples, ranking_report
from user_models.sequences import history_from_sequences, training_windows
from user_models.train import TrainConfig, lr_factor, train_user_model
from user_models.transformer import TransformerConfig

MODEL = TransformerConfig(dim=16, layers=1, heads=2, max_len=8, dropout=0.0)


def config(epochs: int, **kw) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=16, lr=5e-3, warmup_steps=2, patience=100, progress=False,
                       **kw)


def test_training_windows_cover_every_target_once():
    ds = cyclic_dataset(n_users=3, length=12)
    train = ds.train_sequences()  # 10 events per user -> 9 targets per user
    w = training_windows(train, np.zeros(len(train.items), dtype=bool), max_len=4)
    assert len(w) == 3 * 3  # chunks of 4 inputs from the end: 4 + 4 + 1
    assert int((w.target_items > 0).sum()) == 3 * 9
    first_user = train.user(0)[0]
    # most recent chunk: inputs events 5..8, targets events 6..9
    assert w.history.items[0].tolist() == first_user[5:9].tolist()
    assert w.target_items[0].tolist() == first_user[6:10].tolist()
    assert w.history.lengths[:3].tolist() == [4, 4, 1]


def test_lr_schedule_warms_up_then_decays():
    assert lr_factor(0, 10, 100) == 0.1 and lr_factor(9, 10, 100) == 1.0
    assert lr_factor(55, 10, 100) == 0.5 * (1 + np.cos(np.pi * 0.5))
    assert lr_factor(100, 10, 100) == 0.0


def test_training_learns_is_deterministic_and_resumes_exactly(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    ds = cyclic_dataset()
    model_a, result = train_user_model(ds, tmp_path / "a", MODEL, config(12))
    report = ranking_report(TransformerScorer(model_a), eval_examples(ds, "test"))
    assert report["hr@5"] > 0.9  # the +1 walk is learnt
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    model_b, _ = train_user_model(ds, tmp_path / "b", MODEL, config(12))
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # interrupted during epoch 6, then resumed: the same weights as the uninterrupted run
    calls = []

    def interrupted_report(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return ranking_report(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "ranking_report", interrupted_report)
        with pytest.raises(KeyboardInterrupt):
            train_user_model(ds, tmp_path / "c", MODEL, config(12))
    model_c, resumed = train_user_model(ds, tmp_path / "c", MODEL, config(12), resume=True)
    assert resumed.epochs_run == 12
    for (name, a), c in zip(model_a.state_dict().items(), model_c.state_dict().values(), strict=True):
        assert torch.equal(a, c), name
    loaded = load_user_model(tmp_path / "a", dataset=ds)
    h = history_from_sequences(eval_examples(ds, "test").history, MODEL.max_len)
    assert torch.equal(loaded.all_item_logits(loaded.encode(h)), model_a.all_item_logits(model_a.encode(h)))
