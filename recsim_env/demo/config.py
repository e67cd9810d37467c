"""What one ``recsim demo`` run does: how big every stage is (:class:`DemoSizes` and its three presets)
and the run's dataset, seed, device and output directory (:class:`DemoConfig`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from user_models.errors import InputError

DATASETS = ("synthetic", "ml-100k")


@dataclass(frozen=True)
class DemoSizes:
    """How big every stage is; :data:`DEFAULT`, :data:`QUICK` and :data:`TINY` are the presets.

    Attributes:
        name: the preset's name, shown in the report.
        synthetic_users: users of the synthetic world (ignored for ml-100k).
        synthetic_items: catalogue size of the synthetic world.
        events_per_user: mean logged events per synthetic user.
        user_model_epochs: maximum Transformer epochs (early stopping may end sooner).
        gru_epochs: maximum GRU4Rec epochs (the next-item baseline and the Greedy policy's recommender).
        calibration_users: simulated users per calibration round.
        calibration_rounds: calibration rounds
            (:class:`~recsim_env.offline.calibrate.CalibrationSettings`; its four root-finding phases
            take at least two simulations each).
        ppo_timesteps: environment steps of agent training.
        ppo_envs: parallel simulated users during training.
        ppo_evaluations: evaluations during training (the learning curve's points).
        ppo_eval_episodes: users per evaluation (a fixed population, the same every time).
        benchmark_episodes: users per seed in the benchmark.
        benchmark_seeds: benchmark seeds.
        resamples: bootstrap resamples of every confidence interval.
        fidelity_users: held-out users of the data-fidelity check.
        fidelity_episodes: users per seed of the ground-truth comparison.
        gif_frames: frames of the session GIF (at most).
    """

    name: str
    synthetic_users: int
    synthetic_items: int
    events_per_user: float
    user_model_epochs: int
    gru_epochs: int
    calibration_users: int
    calibration_rounds: int
    ppo_timesteps: int
    ppo_envs: int
    ppo_evaluations: int
    ppo_eval_episodes: int
    benchmark_episodes: int
    benchmark_seeds: int
    resamples: int
    fidelity_users: int
    fidelity_episodes: int
    gif_frames: int


DEFAULT = DemoSizes(
    name="default",
    synthetic_users=2500,
    synthetic_items=1200,
    events_per_user=100.0,
    user_model_epochs=12,
    gru_epochs=8,
    calibration_users=512,
    calibration_rounds=24,
    ppo_timesteps=98_304,
    ppo_envs=16,
    ppo_evaluations=6,
    ppo_eval_episodes=64,
    benchmark_episodes=200,
    benchmark_seeds=3,
    resamples=2000,
    fidelity_users=500,
    fidelity_episodes=200,
    gif_frames=40,
)
QUICK = DemoSizes(
    name="quick",
    synthetic_users=1000,
    synthetic_items=500,
    events_per_user=80.0,
    user_model_epochs=6,
    gru_epochs=6,
    calibration_users=256,
    calibration_rounds=12,
    ppo_timesteps=24_576,
    ppo_envs=16,
    ppo_evaluations=4,
    ppo_eval_episodes=32,
    benchmark_episodes=100,
    benchmark_seeds=2,
    resamples=1000,
    fidelity_users=200,
    fidelity_episodes=100,
    gif_frames=24,
)
TINY = DemoSizes(
    name="tiny (tests)",
    synthetic_users=120,
    synthetic_items=80,
    events_per_user=25.0,
    user_model_epochs=1,
    gru_epochs=1,
    calibration_users=32,
    calibration_rounds=2,
    ppo_timesteps=256,
    ppo_envs=4,
    ppo_evaluations=2,
    ppo_eval_episodes=4,
    benchmark_episodes=8,
    benchmark_seeds=1,
    resamples=100,
    fidelity_users=20,
    fidelity_episodes=8,
    gif_frames=4,
)
"""For tests only: every stage runs, the numbers mean little."""


MEASURED_CORES = 2
"""The core count :data:`STAGE_SECONDS` was measured on."""
STAGE_SECONDS: dict[str, dict[str, float]] = {
    "default": {"data": 6.6, "user_model": 206.6, "calibrate": 357.6, "evaluate": 43.4, "agent": 181.8,
                "benchmark": 41.6, "fidelity": 20.5, "gif": 2.3},
    "quick": {"data": 0.3, "user_model": 79.1, "calibrate": 51.8, "evaluate": 7.4, "agent": 121.3,
              "benchmark": 13.4, "fidelity": 10.3, "gif": 0.2},
}
"""Seconds of every stage (by stage key) of a synthetic-world run of each preset, from ``summary.json`` of
``recsim demo [--quick] --out DIR`` on this project's 2-core CPU machine while other jobs ran beside it
(so on the slow side: 14 and 5 minutes in all). What :func:`~recsim_env.demo.runner.demo_plan` scales to
announce a run."""


def expected_seconds(sizes: DemoSizes, stage: str, cores: int) -> float | None:
    """The time ``stage`` of a run of ``sizes`` is expected to take on ``cores`` CPU cores, or None (no
    measurement of that preset). Fewer cores than :data:`MEASURED_CORES` scale the time up in
    proportion (the stages are CPU-bound and threaded); more cores are not assumed to help (at these
    model sizes the threads do not scale far, and it was not measured)."""
    measured = STAGE_SECONDS.get(sizes.name, {}).get(stage)
    if measured is None:
        return None
    return measured * MEASURED_CORES / min(max(cores, 1), MEASURED_CORES)


@dataclass(frozen=True)
class DemoConfig:
    """What :func:`~recsim_env.demo.run_demo` does.

    Attributes:
        out: output directory (created; files of a previous run are replaced).
        dataset: ``synthetic`` (the built-in world; default) or ``ml-100k``.
        data_dir: the local MovieLens-100k copy (RecBole atomic files or u.data/u.item); ml-100k only.
        sizes: a :class:`DemoSizes` preset.
        seed: seed of every stage.
        device: torch device of training and simulation.
        progress: show progress bars.
    """

    out: Path
    dataset: str = "synthetic"
    data_dir: Path | None = None
    sizes: DemoSizes = DEFAULT
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise InputError(f"--dataset {self.dataset!r}: choose one of {', '.join(DATASETS)}")
        if self.dataset == "ml-100k":
            if self.data_dir is None:
                raise InputError("--dataset ml-100k needs --data-dir PATH (the local MovieLens-100k copy)")
            if not Path(self.data_dir).is_dir():
                raise InputError(f"--data-dir {self.data_dir}: no such directory")
        elif self.data_dir is not None:
            raise InputError("--data-dir goes with --dataset ml-100k (the synthetic world needs no files)")
        if self.out.exists() and not self.out.is_dir():
            raise InputError(f"--out {self.out}: exists and is not a directory")

    def as_json(self) -> dict[str, Any]:
        """The config as ``summary.json`` records it (paths as strings; ``progress`` left out)."""
        return {
            "dataset": self.dataset,
            "data_dir": None if self.data_dir is None else str(self.data_dir),
            "out": str(self.out),
            "sizes": asdict(self.sizes),
            "seed": self.seed,
            "device": self.device,
        }
