"""Distributed training: 2 CPU processes (gloo), launched the way torchrun does (env vars), agree."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _user_model_data import cyclic_dataset
from safetensors.torch import load_file, save_file

from user_models.checkpoint import load_user_model
from user_models.train import TrainConfig, train_user_model
from user_models.transformer import TransformerConfig

pytestmark = pytest.mark.slow  # two processes: the longest tests of the suite


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    model, result = train_user_model(
        cyclic_dataset(), out, TransformerConfig(dim=16, layers=1, heads=2, max_len=8, dropout=0.1),
        TrainConfig(epochs=4, batch_size=16, lr=5e-3, warmup_steps=2, progress=False),
    )
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.safetensors")
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"world": dist.get_world_size(), "losses": [h["loss"] for h in result.history]}, f)
    dist.destroy_process_group()


def test_two_cpu_processes_train_and_agree(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    logs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(log["world"] == 2 for log in logs)
    assert logs[0]["losses"][-1] < logs[0]["losses"][0]  # it trained
    assert logs[0]["losses"] != logs[1]["losses"]  # each rank saw its own share of the batches
    loaded = load_user_model(tmp_path, dataset=cyclic_dataset())  # rank 0 wrote the checkpoint
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, ranks[0][name]), name
