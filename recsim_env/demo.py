"""The main job end to end: ``recsim demo``.

One call of :func:`run_demo` goes from logs to a report, calling the same library functions the
individual ``recsim`` commands call:

1. **data**: the synthetic world's logs (:func:`user_models.synthetic.synthesize_dataset`) or MovieLens-100k
   (:func:`user_models.data.movielens.read_ml100k` + :func:`user_models.data.prepare.prepare`);
2. **user model**: train the Transformer user model (:func:`user_models.train.train_user_model`);
3. **calibration**: fit choice temperature, no-choice logit and session ends
   (:func:`recsim_env.offline.calibrate.calibrate`);
4. **user-model evaluation**: next-item metrics against Pop, Markov and GRU4Rec on the test split, plus the
   behavior and session-end heads (:mod:`user_models.evaluate`); the GRU4Rec trained here is also the
   Greedy policy's recommender later on, so it is trained once;
5. **agent**: train MaskablePPO briefly on the calibrated simulator (:func:`agents.train.train`);
6. **benchmark**: the agent against Random, MostPopular, Greedy and the Oracle with common random numbers
   (:func:`recsim_env.offline.benchmark.run_benchmark`);
7. **fidelity**: simulated vs held-out sessions, and (synthetic data) the world vs the learned simulator
   (:mod:`recsim_env.offline.fidelity`);
8. **session GIF**: one benchmarked session of the agent, replayed through the visualizer;
9. **report**: ``OUT/report.md`` with the tables, PNG plots, the GIF and the time of every stage.

Everything is written under ``OUT``; a new run replaces the previous one's files there.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from user_models.errors import InputError

DATASETS = ("synthetic", "ml-100k")
DOCS = Path(__file__).resolve().parents[1] / "docs"
ALGO = "maskable_ppo"
"""The agent the demo trains: PPO that only picks valid (not yet shown) candidates."""
BENCHMARK_POLICIES = ("random", "popular", "greedy", "oracle")
"""Baselines the agent is benchmarked against (and that the ground-truth fidelity ranks)."""
ML100K_CONSUMPTION_RATE = 0.5
"""ml-100k's ratings come in bursts (median within-session gap 0 s), so its consumption rate per step
cannot be reconstructed from time; as ``scripts/offline_eval.py`` does, assume half the slates lead to a
rating."""


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


@dataclass(frozen=True)
class DemoConfig:
    """What :func:`run_demo` does.

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


@dataclass(frozen=True)
class StageTime:
    """One finished stage and its wall time."""

    name: str
    seconds: float


@dataclass
class _Run:
    """State shared by the stages of one demo: paths, loaded objects and what the report needs."""

    config: DemoConfig
    sections: dict[str, str] = field(default_factory=dict)
    """Report sections (Markdown) by stage name, in stage order."""
    facts: dict[str, Any] = field(default_factory=dict)
    """Headline numbers, also written to ``summary.json``."""
    dataset: Any = None
    model: Any = None
    recommender: Any = None

    @property
    def out(self) -> Path:
        return self.config.out

    @property
    def data_dir(self) -> Path:
        return self.out / "data"

    @property
    def model_dir(self) -> Path:
        return self.out / "user_model"

    @property
    def calibration(self) -> Path:
        return self.out / "calibration.json"

    @property
    def agent_dir(self) -> Path:
        """The trained agent, under the name the benchmark reports it by."""
        return self.out / "ppo"

    @property
    def benchmark_dir(self) -> Path:
        return self.out / "benchmark"

    def settings(self, action_mode: str, world: bool = False) -> Any:
        """``RecSim-v0``'s settings with this run's calibration (the world: without), in ``action_mode``."""
        from recsim_env.registration import env_config_for

        calibration = None if world else str(self.calibration)
        return env_config_for("RecSim-v0", {"action_mode": action_mode, "calibration": calibration,
                                            "device": self.config.device}, world=world)


# --- stages ----------------------------------------------------------------------------------------------
def _stage_data(run: _Run) -> None:
    from user_models.data.stats import dataset_stats

    config, sizes = run.config, run.config.sizes
    if config.dataset == "synthetic":
        from user_models.synthetic import SyntheticConfig, synthesize_dataset

        synth = SyntheticConfig(
            n_users=sizes.synthetic_users,
            n_items=sizes.synthetic_items,
            mean_events_per_user=sizes.events_per_user,
            seed=config.seed,
        )
        dataset = synthesize_dataset(synth, progress=config.progress)
        source = (
            f"the built-in synthetic world ({synth.n_users:,} users, {synth.n_items:,} items, "
            f"seed {synth.seed}); "
            "its ground truth is rebuilt from the dataset for the fidelity check"
        )
    else:
        from user_models.data.movielens import read_ml100k
        from user_models.data.prepare import PrepareConfig, prepare

        assert config.data_dir is not None  # checked by DemoConfig
        log, items = read_ml100k(config.data_dir)
        dataset = prepare(log, PrepareConfig(name="ml-100k"), items, progress=config.progress)
        source = f"MovieLens-100k from `{config.data_dir}` (5-core, ratings mapped to dislike/neutral/like)"
    dataset.save(run.data_dir, overwrite=True)
    run.dataset = dataset
    stats = dataset_stats(dataset)
    run.facts["data"] = {k: stats[k] for k in ("name", "users", "items", "interactions", "sessions")}
    lines = [
        f"Source: {source}. Saved to `data/` (`recsim data stats {run.data_dir}` prints more).",
        "",
        "| users | items | interactions | sessions | events per user (mean) | events per session (mean) |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {stats['users']:,} | {stats['items']:,} | {stats['interactions']:,} | {stats['sessions']:,} "
        f"| {stats['sequence_length']['mean']:.1f} | {stats['session_length']['mean']:.1f} |",
        "",
        "Behaviors: " + ", ".join(f"{b['name']} {b['share']:.1%}" for b in stats["behaviors"]) + ".",
    ]
    run.sections["data"] = "\n".join(lines)


def _stage_user_model(run: _Run) -> None:
    from user_models.train import TrainConfig, train_user_model
    from user_models.transformer import TransformerConfig

    config = run.config
    train_config = TrainConfig(
        epochs=config.sizes.user_model_epochs,
        seed=config.seed,
        device=config.device,
        progress=config.progress,
    )
    model, result = train_user_model(run.dataset, run.model_dir, TransformerConfig(), train_config)
    run.model = model.to(config.device).eval()
    run.facts["user_model"] = {
        "parameters": model.n_parameters(),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "train_seconds": round(result.seconds, 1),
        "valid_ndcg@10": result.best_valid.get("ndcg@10"),
    }
    run.sections["user_model"] = (
        f"A causal Transformer ({model.n_parameters():,} parameters) with three heads: next item, behavior "
        f"given the item, session end. Trained {result.epochs_run} epoch(s) (best epoch {result.best_epoch}, "
        f"{result.seconds:.0f} s); validation NDCG@10 {result.best_valid.get('ndcg@10', float('nan')):.4f}. "
        "Checkpoint: `user_model/`."
    )


def _stage_calibrate(run: _Run) -> None:
    from recsim_env.config import SimConfig
    from recsim_env.offline.calibrate import CalibrationSettings, calibrate, format_report

    config, sizes = run.config, run.config.sizes
    settings = CalibrationSettings(
        n_users=sizes.calibration_users,
        rounds=sizes.calibration_rounds,
        target_consumption_rate=ML100K_CONSUMPTION_RATE if config.dataset == "ml-100k" else None,
        seed=config.seed,
    )
    calibration = calibrate(run.model, run.dataset, SimConfig(), settings, progress=config.progress)
    calibration.save(run.calibration)
    after = calibration.report["after"]
    run.facts["calibration"] = {
        k: after[k] for k in ("temperature", "no_choice_logit", "end_logit_offset", "drain_scale")
    }
    note = (
        f" The log has no usable within-session time, so the target consumption rate is assumed "
        f"({ML100K_CONSUMPTION_RATE} events per step)."
        if config.dataset == "ml-100k"
        else ""
    )
    run.sections["calibrate"] = (
        "The learned model says *what* a user picks; calibration fits *how often* they pick nothing and "
        "*when* they leave, so simulated sessions under a logging-like policy match the logged ones "
        f"(`calibration.json`).{note}\n\n" + format_report(calibration)
    )


def _stage_evaluate(run: _Run) -> None:
    from agents.greedy import LogRecommender, save_log_recommender
    from user_models.baselines import GRUScorer, MarkovScorer, PopularityScorer, train_gru
    from user_models.evaluate import TransformerScorer, eval_examples, heads_report, ranking_report
    from user_models.train import TrainConfig

    config, dataset = run.config, run.dataset
    examples = eval_examples(dataset, "test")
    train = dataset.train_sequences()
    gru_config = TrainConfig(
        epochs=config.sizes.gru_epochs, seed=config.seed, device=config.device, progress=config.progress
    )
    gru, _ = train_gru(dataset, train_config=gru_config)
    # The same GRU4Rec is the Greedy policy's recommender in the benchmark (saved where it looks first).
    run.recommender = LogRecommender(gru)
    save_log_recommender(run.recommender, run.benchmark_dir / "greedy_recommender", dataset)
    reports = [
        ranking_report(TransformerScorer(run.model), examples, config.device),
        ranking_report(PopularityScorer(train, dataset.n_items), examples),
        ranking_report(MarkovScorer(train, dataset.n_items), examples),
        ranking_report(GRUScorer(gru.to(config.device)), examples, config.device),
    ]
    gru.cpu()
    heads = heads_report(run.model, examples, config.device, reliability_png=run.out / "reliability.png")
    b, e = heads["behavior"], heads["session_end"]
    run.facts["user_model_eval"] = {
        r["model"]: {k: r[k] for k in ("hr@10", "ndcg@10", "mrr")} for r in reports
    } | {"behavior_accuracy": b["accuracy"], "session_end_auc": e["auc"]}
    run.sections["evaluate"] = "\n".join(
        [
            f"Test split ({len(examples.target_items):,} next events, leave-last-out), full ranking over "
            "the catalogue, seen items not masked:",
            "",
            _ranking_table(reports),
            "",
            f"Behavior given the item ({', '.join(run.model.behaviors)}): accuracy {b['accuracy']:.3f} "
            f"(majority class {b['majority_accuracy']:.3f}), macro-F1 {b['macro_f1']:.3f}. "
            f"Session end: AUC {e['auc']:.3f}, ECE {e['ece']:.3f} (base rate {e['base_rate']:.3f}).",
            "",
            "![session-end reliability](reliability.png)",
        ]
    )


def _ranking_table(reports: list[dict[str, Any]]) -> str:
    keys = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr")
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += [f"| {r['model']} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |" for r in reports]
    return "\n".join(lines)


def _stage_agent(run: _Run) -> None:
    import numpy as np

    from agents.config import load_train_config
    from agents.train import FINAL
    from recsim_env.cli.settings import env_settings
    from recsim_env.offline.training import train_agent

    config, sizes = run.config, run.config.sizes
    eval_freq = max(sizes.ppo_timesteps // sizes.ppo_evaluations, 1)
    overrides = {
        "n_timesteps": sizes.ppo_timesteps,
        "n_envs": sizes.ppo_envs,
        "n_eval_episodes": sizes.ppo_eval_episodes,
        "eval_freq": eval_freq,
        "checkpoint_freq": 0,
        "env_kwargs": {"calibration": str(run.calibration)},
    }
    train_config = load_train_config(ALGO, None, "RecSim-v0", overrides)
    train_dir = run.out / "agent_training"
    env_config = env_settings(run.model, train_config.env_id, train_config.env_kwargs, config.device)
    result = train_agent(
        train_config, run.model, run.data_dir, env_config, train_dir, seed=config.seed,
        progress=config.progress,
    )
    if run.agent_dir.is_symlink() or run.agent_dir.exists():
        run.agent_dir.unlink()
    run.agent_dir.symlink_to(Path(train_dir.name) / FINAL, target_is_directory=True)
    ret = result.final_eval["return"]
    run.facts["agent"] = {
        "algo": ALGO,
        "timesteps": train_config.n_timesteps,
        "steps_per_second": round(result.steps_per_second, 1),
        "final_return": ret["mean"],
    }
    curve = run.out / "learning_curve.png"
    evaluations = np.load(train_dir / "evaluations.npz")
    _plot_learning_curve(evaluations["timesteps"], evaluations["results"], curve)
    run.sections["agent"] = "\n".join(
        [
            f"MaskablePPO on `RecSim-v0` (candidates action mode: a slate of 5 among the retrieved "
            f"candidates; history observation), {train_config.n_timesteps:,} steps on "
            f"{train_config.n_envs} parallel simulated users ({result.steps_per_second:.0f} steps/s). "
            f"Final evaluation on a held-apart population: return {ret['mean']:.3f} "
            f"[{ret['ci95_low']:.3f}, {ret['ci95_high']:.3f}] over {ret['n']} users. Agent: `ppo/` "
            f"(`recsim agent eval --policy {run.agent_dir} ...`); TensorBoard logs in `agent_training/`.",
            "",
            "![learning curve](learning_curve.png)",
        ]
    )


def _plot_learning_curve(timesteps: Any, results: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean, std = results.mean(axis=1), results.std(axis=1)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(timesteps, mean, marker="o")
    ax.fill_between(timesteps, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.set_title("MaskablePPO on the learned simulator")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _stage_benchmark(run: _Run) -> None:
    from recsim_env.offline.benchmark import BenchmarkConfig, run_benchmark

    config, sizes = run.config, run.config.sizes
    bench = BenchmarkConfig(
        policies=(*BENCHMARK_POLICIES, str(run.agent_dir)),
        episodes=sizes.benchmark_episodes,
        seeds=sizes.benchmark_seeds,
        base_seed=config.seed,
        save_trajectories=1,
        n_resamples=sizes.resamples,
    )
    # Candidates mode: the agent's action space; every baseline acts in it too.
    run_benchmark(
        run.model_dir, run.data_dir, bench, run.settings("candidates"), run.benchmark_dir,
        progress=config.progress,
    )
    results = json.loads((run.benchmark_dir / "results.json").read_text())
    run.facts["benchmark_return"] = {
        m["policy"]: [m["estimate"], m["low"], m["high"]]
        for m in results["metrics"]
        if m["metric"] == "return"
    }
    text = (run.benchmark_dir / "results.md").read_text()
    body = _demote(text[text.index("| policy |") :], by=2)
    run.sections["benchmark"] = "\n".join(
        [
            f"Every policy meets the same {sizes.benchmark_episodes} users x {sizes.benchmark_seeds} seed(s) "
            "with the same random streams (common random numbers), so paired differences are tight. "
            "`popular` shows the most popular items, `greedy` ranks by a GRU4Rec trained on the logs, "
            "`oracle` by the simulator's own next-item model (a myopic reference), `ppo` is the agent. "
            "Means with 95% bootstrap intervals; full results in `benchmark/`.",
            "",
            body.strip(),
            "",
            "![metrics](benchmark/metrics.png)",
            "",
            "![returns](benchmark/returns.png)",
        ]
    )


def _stage_fidelity(run: _Run) -> None:
    from recsim_env.offline.benchmark import BenchmarkConfig
    from recsim_env.offline.fidelity import data_fidelity, fidelity_markdown, ground_truth_fidelity

    config, sizes = run.config, run.config.sizes
    settings = run.settings("slate")
    data_result = data_fidelity(
        run.model_dir, run.data_dir, settings, n_users=sizes.fidelity_users, seed=config.seed
    )
    truth_result = None
    if config.dataset == "synthetic":
        truth_config = BenchmarkConfig(
            policies=BENCHMARK_POLICIES,
            episodes=sizes.fidelity_episodes,
            seeds=1,
            base_seed=config.seed,
            save_trajectories=0,
            n_resamples=sizes.resamples,
        )
        truth_result = ground_truth_fidelity(
            run.model_dir,
            run.data_dir,
            truth_config,
            settings,
            run.settings("slate", world=True),
            run.benchmark_dir,  # reuses the Greedy recommender saved there
            progress=config.progress,
        )
        run.facts["fidelity"] = {"kendall_tau": truth_result.kendall_tau,
                                 "max_relative_error": truth_result.max_relative_error}
    markdown = fidelity_markdown(data_result, truth_result, {"model": "user_model", "data": "data"})
    _write(run.out / "fidelity.md", markdown)
    body = markdown.split("\n", 3)[-1]  # drop the title and the settings line
    run.sections["fidelity"] = _demote(body, by=1).strip()


def _stage_gif(run: _Run) -> None:
    from recsim_env.render.player import play
    from recsim_env.render.pygame_renderer import RENDER_FPS, SessionRenderer
    from recsim_env.render.recording import VideoRecorder
    from recsim_env.render.trajectory import read_trajectory

    trajectory = read_trajectory(run.benchmark_dir / "trajectories" / f"{run.agent_dir.name}.jsonl")
    recorder = VideoRecorder(run.out / "session.gif", RENDER_FPS)
    try:
        result = play(
            (iter(episode) for episode in trajectory.episodes()),
            max_frames=run.config.sizes.gif_frames,
            recorder=recorder,
            renderer=SessionRenderer(),
        )
    except BaseException:
        recorder.abort()
        raise
    recorder.close()
    run.facts["gif"] = {"frames": result.frames, "return": result.total_reward}
    run.sections["gif"] = (
        f"The agent's first benchmarked user ({result.frames} steps, return {result.total_reward:.2f}): the "
        "slate, what the user chose and how, their recent history and what the model thinks they like. "
        f"Replay it in a window with `recsim visualize --replay {run.benchmark_dir}/trajectories/"
        f"{run.agent_dir.name}.jsonl`; see [docs/visualizer.md]({_docs_link(run.out, 'visualizer.md')}).\n\n"
        "![one session](session.gif)"
    )


STAGES: tuple[tuple[str, str, Callable[[_Run], None]], ...] = (
    ("data", "Data", _stage_data),
    ("user_model", "User model: training", _stage_user_model),
    ("calibrate", "Calibration", _stage_calibrate),
    ("evaluate", "User model vs next-item baselines", _stage_evaluate),
    ("agent", "Agent: MaskablePPO", _stage_agent),
    ("benchmark", "Offline benchmark: agent vs baselines", _stage_benchmark),
    ("fidelity", "Simulator fidelity", _stage_fidelity),
    ("gif", "One session", _stage_gif),
)
"""(key, title, function) of every stage, in order."""


# --- the run -----------------------------------------------------------------------------------------------
def run_demo(config: DemoConfig, console: Any = None) -> Path:
    """Run every stage, write ``OUT/report.md`` (and ``OUT/summary.json``); returns the report's path.

    Args:
        config: dataset, sizes, seed and output directory.
        console: a ``rich.console.Console`` for stage headers and timings (default: a new one on stdout).
    """
    import torch
    from rich.console import Console

    console = console or Console()
    config.out.mkdir(parents=True, exist_ok=True)
    run = _Run(config)
    times: list[StageTime] = []
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    for i, (_, title, stage) in enumerate(STAGES, 1):
        console.rule(f"[bold]stage {i}/{len(STAGES)}: {title}")
        began = time.perf_counter()
        stage(run)
        times.append(StageTime(title, time.perf_counter() - began))
        console.print(f"[green]done[/green] {title} in {times[-1].seconds:.1f} s "
                      f"(total {time.perf_counter() - start:.0f} s)")
    report = run.out / "report.md"
    _write(report, _report_markdown(run, times))
    summary = {"config": _config_json(config), "stages": [asdict(t) for t in times], **run.facts}
    _write(run.out / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    console.print(_timing_table(times))
    console.print(f"[bold]report:[/bold] {report}")
    return report


def _config_json(config: DemoConfig) -> dict[str, Any]:
    return {
        "dataset": config.dataset,
        "data_dir": None if config.data_dir is None else str(config.data_dir),
        "out": str(config.out),
        "sizes": asdict(config.sizes),
        "seed": config.seed,
        "device": config.device,
    }


def _timing_table(times: list[StageTime]) -> Any:
    from rich.table import Table

    table = Table(title="stage times")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for t in times:
        table.add_row(t.name, f"{t.seconds:.1f}")
    table.add_row("[bold]total", f"[bold]{sum(t.seconds for t in times):.1f}")
    return table


SECTION_TITLES = {key: title for key, title, _ in STAGES}


def _report_markdown(run: _Run, times: list[StageTime]) -> str:
    config, sizes = run.config, run.config.sizes
    total = sum(t.seconds for t in times)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"# recsim demo: {config.dataset}",
        "",
    ]
    if sizes is not DEFAULT:
        lines += [
            f"> **This is a {sizes.name} run**: a smaller world and fewer epochs, steps and users than the "
            "default `recsim demo`, so intervals are wider and the agent is barely trained. Run without "
            "`--quick` for the full-size numbers.",
            "",
        ]
    lines += [
        f"Command: `recsim demo --dataset {config.dataset}"
        + (f" --data-dir {config.data_dir}" if config.data_dir else "")
        + f" --out {config.out}" + (" --quick" if sizes is QUICK else "") + "`. "
        f"Sizes: `{sizes.name}`, seed {config.seed}, device {config.device}. Total time {total:.0f} s on "
        f"{platform.machine()} with {os.cpu_count()} CPU cores (load average {load:.1f} at the end).",
        "",
        "From behavior logs to a trained recommendation agent: learn a user model from the logs, calibrate "
        "it into a simulator, train an RL agent in it, and compare the agent with classic recommenders "
        "on the same simulated users. See [concepts]("
        f"{_docs_link(config.out, 'concepts.md')}) for what is learned and what is configured.",
        "",
        "Contents: " + ", ".join(f"[{SECTION_TITLES[k]}](#{i}-{_anchor(SECTION_TITLES[k])})"
                                 for i, k in enumerate(run.sections, 1)) + ", [Stage times](#stage-times).",
        "",
    ]
    for i, (key, text) in enumerate(run.sections.items(), 1):
        lines += [f"## {i}. {SECTION_TITLES[key]}", "", text, ""]
    lines += ["## Stage times", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {t.name} | {t.seconds:.1f} |" for t in times]
    lines += [f"| **total** | **{total:.1f}** |", ""]
    return "\n".join(lines)


def _docs_link(out: Path, name: str) -> str:
    """A link from a report in ``out`` to ``docs/name`` of this repository."""
    return os.path.relpath(DOCS / name, out.resolve())


def _anchor(title: str) -> str:
    """GitHub's heading anchor (lower case, punctuation dropped, spaces to dashes)."""
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def _demote(markdown: str, by: int) -> str:
    """Push every heading of ``markdown`` ``by`` levels down (to nest it in the report)."""
    return re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + by) + " ", markdown, flags=re.M)


def _write(path: Path, text: str) -> None:
    """Write through a temporary sibling renamed into place (no half-written reports)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
