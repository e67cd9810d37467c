"""The demo's stages, in order (:data:`STAGES`).

Each stage is a function of the :class:`DemoRun` that calls the same library functions the individual
``recsim`` commands call, writes its files under ``OUT`` and returns a :class:`StageResult`: its report
section (Markdown) and its headline facts (``summary.json``). The stages share only the run: the config,
the paths under ``OUT`` and the dataset and user model the first two stages load; everything later
stages need from earlier ones goes through files there (the calibration, the agent, the benchmark's
trajectories and Greedy recommender).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import load_train_config
from agents.greedy import LogRecommender, save_log_recommender
from agents.train import FINAL
from recsim_env.config import EnvConfig, SimConfig
from recsim_env.demo.config import DemoConfig
from recsim_env.demo.report import DOCS_HINT, demote, plot_learning_curve, ranking_table, write_text
from recsim_env.offline.benchmark import BenchmarkConfig, run_benchmark
from recsim_env.offline.calibrate import CalibrationSettings, calibrate, format_report
from recsim_env.offline.fidelity import data_fidelity, fidelity_markdown, ground_truth_fidelity
from recsim_env.offline.training import train_agent
from recsim_env.registration import env_config_for
from recsim_env.render.player import play
from recsim_env.render.pygame_renderer import RENDER_FPS, SessionRenderer
from recsim_env.render.recording import VideoRecorder
from recsim_env.render.trajectory import read_trajectory
from user_models.baselines import GRUScorer, MarkovScorer, PopularityScorer, train_gru
from user_models.data.movielens import read_ml100k
from user_models.data.prepare import PrepareConfig, prepare
from user_models.data.stats import dataset_stats
from user_models.evaluate import TransformerScorer, eval_examples, heads_report, ranking_report
from user_models.synthetic import SyntheticConfig, synthesize_dataset
from user_models.train import TrainConfig, train_user_model
from user_models.transformer import TransformerConfig

ALGO = "maskable_ppo"
"""The agent the demo trains: PPO that only picks valid (not yet shown) candidates."""
BENCHMARK_POLICIES = ("random", "popular", "greedy", "oracle")
"""Baselines the agent is benchmarked against (and that the ground-truth fidelity ranks)."""
ML100K_CONSUMPTION_RATE = 0.5
"""ml-100k's ratings come in bursts (median within-session gap 0 s), so its consumption rate per step
cannot be reconstructed from time; as ``scripts/offline_eval.py`` does, assume half the slates lead to a
rating."""


@dataclass
class DemoRun:
    """What the stages of one demo share: the config, paths under ``OUT`` and the objects loaded so far."""

    config: DemoConfig
    dataset: Any = None
    """The prepared logs (set by the data stage)."""
    model: Any = None
    """The trained Transformer user model, in eval mode on the run's device (set by the user-model stage)."""

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

    def settings(self, action_mode: str, world: bool = False) -> EnvConfig:
        """``RecSim-v0``'s settings with this run's calibration (the world: without), in ``action_mode``."""
        calibration = None if world else str(self.calibration)
        return env_config_for("RecSim-v0", {"action_mode": action_mode, "calibration": calibration,
                                            "device": self.config.device}, world=world)


@dataclass(frozen=True)
class StageResult:
    """What one stage hands the report: its section and its headline facts.

    Attributes:
        section: the stage's report section (Markdown, without its heading).
        facts: headline numbers by key, merged into ``summary.json`` in stage order.
    """

    section: str
    facts: dict[str, Any] = field(default_factory=dict)


def stage_data(run: DemoRun) -> StageResult:
    """The synthetic world's logs, or MovieLens-100k prepared; saved to ``data/``."""
    config, sizes = run.config, run.config.sizes
    if config.dataset == "synthetic":
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
        assert config.data_dir is not None  # checked by DemoConfig
        log, items = read_ml100k(config.data_dir)
        dataset = prepare(log, PrepareConfig(name="ml-100k"), items, progress=config.progress)
        source = f"MovieLens-100k from `{config.data_dir}` (5-core, ratings mapped to dislike/neutral/like)"
    dataset.save(run.data_dir, overwrite=True)
    run.dataset = dataset
    stats = dataset_stats(dataset)
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
    facts = {"data": {k: stats[k] for k in ("name", "users", "items", "interactions", "sessions")}}
    return StageResult("\n".join(lines), facts)


def stage_user_model(run: DemoRun) -> StageResult:
    """Train the Transformer user model; checkpoint in ``user_model/``."""
    config = run.config
    train_config = TrainConfig(
        epochs=config.sizes.user_model_epochs,
        seed=config.seed,
        device=config.device,
        progress=config.progress,
    )
    model, result = train_user_model(run.dataset, run.model_dir, TransformerConfig(), train_config)
    run.model = model.to(config.device).eval()
    facts = {"user_model": {
        "parameters": model.n_parameters(),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "train_seconds": round(result.seconds, 1),
        "valid_ndcg@10": result.best_valid.get("ndcg@10"),
    }}
    section = (
        f"A causal Transformer ({model.n_parameters():,} parameters) with three heads: next item, behavior "
        f"given the item, session end. Trained {result.epochs_run} epoch(s) (best epoch {result.best_epoch}, "
        f"{result.seconds:.0f} s); validation NDCG@10 {result.best_valid.get('ndcg@10', float('nan')):.4f}. "
        "Checkpoint: `user_model/`."
    )
    return StageResult(section, facts)


def stage_calibrate(run: DemoRun) -> StageResult:
    """Fit choice temperature, no-choice logit and session ends; ``calibration.json``."""
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
    facts = {"calibration": {
        k: after[k] for k in ("temperature", "no_choice_logit", "end_logit_offset", "drain_scale")
    }}
    note = (
        f" The log has no usable within-session time, so the target consumption rate is assumed "
        f"({ML100K_CONSUMPTION_RATE} events per step)."
        if config.dataset == "ml-100k"
        else ""
    )
    section = (
        "The learned model says *what* a user picks; calibration fits *how often* they pick nothing and "
        "*when* they leave, so simulated sessions under a logging-like policy match the logged ones "
        f"(`calibration.json`).{note}\n\n" + format_report(calibration)
    )
    return StageResult(section, facts)


def stage_evaluate(run: DemoRun) -> StageResult:
    """The user model against Pop, Markov and GRU4Rec on the test split, and its two other heads.

    The GRU4Rec trained here is also the Greedy policy's recommender in the benchmark, saved where it
    looks first, so it is trained once.
    """
    config, dataset = run.config, run.dataset
    examples = eval_examples(dataset, "test")
    train = dataset.train_sequences()
    gru_config = TrainConfig(
        epochs=config.sizes.gru_epochs, seed=config.seed, device=config.device, progress=config.progress
    )
    gru, _ = train_gru(dataset, train_config=gru_config)
    save_log_recommender(LogRecommender(gru), run.benchmark_dir / "greedy_recommender", dataset)
    reports = [
        ranking_report(TransformerScorer(run.model), examples, config.device),
        ranking_report(PopularityScorer(train, dataset.n_items), examples),
        ranking_report(MarkovScorer(train, dataset.n_items), examples),
        ranking_report(GRUScorer(gru.to(config.device)), examples, config.device),
    ]
    gru.cpu()
    heads = heads_report(run.model, examples, config.device, reliability_png=run.out / "reliability.png")
    b, e = heads["behavior"], heads["session_end"]
    facts = {"user_model_eval": {
        r["model"]: {k: r[k] for k in ("hr@10", "ndcg@10", "mrr")} for r in reports
    } | {"behavior_accuracy": b["accuracy"], "session_end_auc": e["auc"]}}
    section = "\n".join(
        [
            f"Test split ({len(examples.target_items):,} next events, leave-last-out), full ranking over "
            "the catalogue, seen items not masked:",
            "",
            ranking_table(reports),
            "",
            f"Behavior given the item ({', '.join(run.model.behaviors)}): accuracy {b['accuracy']:.3f} "
            f"(majority class {b['majority_accuracy']:.3f}), macro-F1 {b['macro_f1']:.3f}. "
            f"Session end: AUC {e['auc']:.3f}, ECE {e['ece']:.3f} (base rate {e['base_rate']:.3f}).",
            "",
            "![session-end reliability](reliability.png)",
        ]
    )
    return StageResult(section, facts)


def stage_agent(run: DemoRun) -> StageResult:
    """Train MaskablePPO briefly on the calibrated simulator; the agent is ``ppo/``."""
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
    env_config = env_config_for(train_config.env_id, {**train_config.env_kwargs, "device": config.device})
    result = train_agent(
        train_config, run.model, run.data_dir, env_config, train_dir, seed=config.seed,
        progress=config.progress,
    )
    if run.agent_dir.is_symlink() or run.agent_dir.exists():
        run.agent_dir.unlink()
    run.agent_dir.symlink_to(Path(train_dir.name) / FINAL, target_is_directory=True)
    ret = result.final_eval["return"]
    facts = {"agent": {
        "algo": ALGO,
        "timesteps": train_config.n_timesteps,
        "steps_per_second": round(result.steps_per_second, 1),
        "final_return": ret["mean"],
    }}
    evaluations = np.load(train_dir / "evaluations.npz")
    plot_learning_curve(evaluations["timesteps"], evaluations["results"], run.out / "learning_curve.png")
    section = "\n".join(
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
    return StageResult(section, facts)


def stage_benchmark(run: DemoRun) -> StageResult:
    """The agent against Random, MostPopular, Greedy and the Oracle with common random numbers."""
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
    facts = {"benchmark_return": {
        m["policy"]: [m["estimate"], m["low"], m["high"]]
        for m in results["metrics"]
        if m["metric"] == "return"
    }}
    text = (run.benchmark_dir / "results.md").read_text()
    body = demote(text[text.index("| policy |") :], by=2)
    section = "\n".join(
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
    return StageResult(section, facts)


def stage_fidelity(run: DemoRun) -> StageResult:
    """Simulated vs held-out sessions and (synthetic data) the world vs the simulator; ``fidelity.md``."""
    config, sizes = run.config, run.config.sizes
    settings = run.settings("slate")
    data_result = data_fidelity(
        run.model_dir, run.data_dir, settings, n_users=sizes.fidelity_users, seed=config.seed
    )
    truth_result = None
    facts: dict[str, Any] = {}
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
        facts["fidelity"] = {"kendall_tau": truth_result.kendall_tau,
                             "max_relative_error": truth_result.max_relative_error}
    markdown = fidelity_markdown(data_result, truth_result, {"model": "user_model", "data": "data"})
    write_text(run.out / "fidelity.md", markdown)
    body = markdown.split("\n", 3)[-1]  # drop the title and the settings line
    return StageResult(demote(body, by=1).strip(), facts)


def stage_gif(run: DemoRun) -> StageResult:
    """The agent's first benchmarked session, replayed through the visualizer into ``session.gif``."""
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
    section = (
        f"The agent's first benchmarked user ({result.frames} steps, return {result.total_reward:.2f}): the "
        "slate, what the user chose and how, their recent history and what the model thinks they like. "
        f"Replay it in a window with `recsim visualize --replay {run.benchmark_dir}/trajectories/"
        f"{run.agent_dir.name}.jsonl`; see `docs/visualizer.md` {DOCS_HINT}.\n\n"
        "![one session](session.gif)"
    )
    return StageResult(section, {"gif": {"frames": result.frames, "return": result.total_reward}})


Stage = Callable[[DemoRun], StageResult]

STAGES: tuple[tuple[str, str, Stage], ...] = (
    ("data", "Data", stage_data),
    ("user_model", "User model: training", stage_user_model),
    ("calibrate", "Calibration", stage_calibrate),
    ("evaluate", "User model vs next-item baselines", stage_evaluate),
    ("agent", "Agent: MaskablePPO", stage_agent),
    ("benchmark", "Offline benchmark: agent vs baselines", stage_benchmark),
    ("fidelity", "Simulator fidelity", stage_fidelity),
    ("gif", "One session", stage_gif),
)
"""(key, title, function) of every stage, in order."""

STAGE_WRITES: dict[str, tuple[str, ...]] = {
    "data": ("data/",),
    "user_model": ("user_model/",),
    "calibrate": ("calibration.json",),
    "evaluate": ("reliability.png", "benchmark/greedy_recommender/"),
    "agent": ("agent_training/", "ppo/", "learning_curve.png"),
    "benchmark": ("benchmark/results.md", "benchmark/metrics.png", "benchmark/trajectories/"),
    "fidelity": ("fidelity.md",),
    "gif": ("session.gif",),
}
"""What each stage writes under ``OUT`` (a trailing ``/`` is a directory), as ``recsim demo`` announces
it before starting; ``tests/test_demo.py`` checks that a run writes every one."""
