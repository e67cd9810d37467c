"""Does the simulator behave like the world that wrote its logs? Both synthetic worlds, and ml-100k.

For each ground-truth world (the organic world of ``recsim data synth``, the cascade world of
``recsim data synth --world cascade``, written first and frozen), the script:

1. writes the world's logs (the cascade world under two logging policies, A and B);
2. trains the Transformer user model on the logs (A), calibrates the simulator on them
   (``recsim env calibrate``) and evaluates its heads (``recsim user-model eval``);
3. trains MaskablePPO *only in the learned simulator* (``recsim agent train``, a time budget);
4. runs random, popular, greedy, epsilon, mmr, linucb, oracle and the agent in the world and in the
   simulator (``recsim fidelity``): returns with 95% bootstrap CIs, Kendall's tau, relative errors,
   session-length KS, the random-slate pick rate, and (cascade) the held-out policy B's statistics
   predicted from the simulator fitted to A's logs.

**With impressions** (issue 15): where the world's data carries an impression log (the cascade world
writes one; the organic world when ``recsim data synth --impressions`` exists), the same model also
gets a choice learned from the impressions (``recsim user-model fit-choice``, scored on held-out users
against the calibrated multinomial logit), its leave parameters are calibrated again with that choice,
and the same policies run in that simulator (the agent trained in the calibrated simulator among them:
the comparison is of simulators, one policy set), joined by a second MaskablePPO trained only in the
learned-choice simulator, whose return in the world is that simulator's sim-to-real test. Targets:
returns within 15%, Kendall's tau >= 0.95, random-slate pick rate within 10%, learned choice above the
calibrated one on held-out log-likelihood.

On ml-100k (when ``--ml100k`` exists) it measures data fidelity (repeat rate, popularity JS, session KS)
and the ordering of Random, MostPopular and Greedy in the simulator. Everything goes through the
``recsim`` CLI, so each number can be reproduced by the command in its run's log. The section written
into ``BENCHMARKS.md`` (between ``<!-- BEGIN fidelity_eval -->`` and ``<!-- END fidelity_eval -->``)
holds every table with the machine and the wall time.

    python scripts/fidelity_eval.py [--out out/fidelity_eval] [--quick] [--ml100k PATH]
                                    [--only organic,cascade,ml-100k]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks_md import write_section  # scripts/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
MARK = "fidelity_eval"
ML100K = ROOT.parent / "shared" / "data" / "ml-100k"
BASELINES = ("random", "popular", "greedy", "epsilon", "mmr", "linucb", "oracle")


@dataclass(frozen=True)
class Sizes:
    """How big each run is (the defaults: about 30 minutes on 2 cores)."""

    users: int = 2000
    items: int = 1000
    train_epochs: int = 20
    calibration_users: int = 512
    agent_minutes: float = 4.0
    episodes: int = 200
    seeds: int = 2
    fidelity_users: int = 500


QUICK = Sizes(users=300, items=200, train_epochs=2, calibration_users=128, agent_minutes=0.3, episodes=20,
              seeds=1, fidelity_users=50)


def recsim(*args: str, log: Path) -> float:
    """Run ``recsim ARGS`` with the repo on the path, its output in ``log``; returns wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    with log.open("w") as out:
        out.write("$ recsim " + " ".join(args) + "\n")
        out.flush()
        result = subprocess.run([sys.executable, "-m", "recsim_env.cli", *args], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise SystemExit(f"recsim {' '.join(args)} failed (exit {result.returncode}); see {log}")
    print(f"  recsim {args[0]} {args[1] if len(args) > 1 and not args[1].startswith('-') else ''}"
          f" ({time.perf_counter() - start:.0f} s)", flush=True)
    return time.perf_counter() - start


def world_run(name: str, root: Path, sizes: Sizes, cascade: bool) -> dict[str, Any]:
    """One world end to end; returns what the report needs (fidelity, calibration, heads, times)."""
    print(f"[{name}]", flush=True)
    root.mkdir(parents=True, exist_ok=True)
    data, model, calibration = root / "data", root / "model", root / "calibration.json"
    times: dict[str, float] = {}
    synth = ["data", "synth", "--users", str(sizes.users), "--items", str(sizes.items), "--seed", "0",
             "--impressions", "--overwrite"]
    if cascade:
        synth += ["--world", "cascade", "--logging-policy", "A"]
    times["data"] = recsim(*synth, "--out", str(data), log=root / "data.log")
    if cascade:
        recsim("data", "synth", "--users", str(sizes.users), "--items", str(sizes.items), "--seed", "0",
               "--world", "cascade", "--logging-policy", "B", "--impressions", "--overwrite",
               "--out", str(root / "data_B"),
               log=root / "data_B.log")
    times.update(learn_and_calibrate(root, sizes))
    env_yaml = root / "env.yaml"
    env_yaml.write_text(f"action_mode: candidates\ncalibration: {calibration}\n")
    times["agent"] = train_agent(root / "agent", model, data, calibration, sizes, log=root / "agent.log")
    best = best_checkpoint(root / "agent")
    fidelity = ["fidelity", "--model", str(model), "--data", str(data), "--env-config", str(env_yaml),
                "--policies", ",".join((*BASELINES, str(best))), "--episodes", str(sizes.episodes),
                "--seeds", str(sizes.seeds), "--users", str(sizes.fidelity_users), "--ground-truth", "yes",
                "--overwrite", "--out", str(root / "fidelity")]
    if cascade:
        fidelity += ["--heldout-logs", str(root / "data_B")]
    times["fidelity"] = recsim(*fidelity, log=root / "fidelity.log")
    if has_impressions(data):
        times.update(impressions_run(root, sizes, fidelity))
    (root / "times.json").write_text(json.dumps(times) + "\n")
    return collect_world(name, root)


def choice_gap(data: Path, model: Path, n: int = 3000, k: int = 5) -> dict[str, float] | None:
    """P(a click) on identical slates at identical logged contexts, three ways: what the logged users did,
    what the world does as ground truth (each logged user continued from their true initial state, as
    in the fidelity runs), and what the learned choice predicts; on the logged slates' top
    ``k`` and on uniformly random ``k``-slates. None when the world cannot be rebuilt (ml-100k)."""
    sys.path.insert(0, str(ROOT))
    import math

    import numpy as np
    import polars as pl
    import torch

    from recsim_env.factory import load_model
    from user_models.checkpoint import load_user_model
    from user_models.data.artifact import SequenceDataset
    from user_models.protocol import History, SlateResponder

    ds = SequenceDataset.load(data)
    learned = load_user_model(model, dataset=ds)
    table = ds.impressions
    if learned.learned_choice is None or table is None or "world" not in ds.meta.extra:
        return None
    world = load_model("world", ds)
    slates = (table.group_by("impression", maintain_order=True)
              .agg(pl.col("user").first(), pl.col("timestamp").first(), pl.col("item"), pl.col("clicked"),
                   pl.col("slot"))
              .filter(pl.col("slot").list.head(k).list.sum() == k * (k - 1) // 2,
                      pl.col("slot").list.len() >= k))  # the top k slots all shown
    slates = slates.sample(min(n, slates.height), seed=0)
    seqs, offsets, times = ds.sequences, ds.sequences.offsets, ds.sequences.timestamps
    assert times is not None and isinstance(world, SlateResponder)
    users, stamps = slates["user"].to_numpy(), slates["timestamp"].to_numpy()
    before = np.array([np.searchsorted(times[offsets[u]:offsets[u + 1]], t) for u, t in
                       zip(users, stamps, strict=True)])
    keep = before > 0
    users, before = users[keep], before[keep]
    shown = torch.as_tensor(np.stack([np.asarray(x)[:k] for x in slates["item"].to_list()])[keep])
    clicked = np.stack([np.asarray(x)[:k] for x in slates["clicked"].to_list()])[keep].max(1)

    def history(width: int) -> History:
        rows = len(users)
        items, behaviors = np.zeros((rows, width), np.int64), np.zeros((rows, width), np.int64)
        gaps, lengths = np.full((rows, width), -1.0, np.float32), np.minimum(before, width)
        for r, (u, b) in enumerate(zip(users, before, strict=True)):
            lo, hi = offsets[u] + b - lengths[r], offsets[u] + b
            items[r, :lengths[r]], behaviors[r, :lengths[r]] = seqs.items[lo:hi], seqs.behaviors[lo:hi]
            gaps[r, 1:lengths[r]] = np.diff(times[lo:hi])
        return History(torch.as_tensor(items), torch.as_tensor(behaviors), torch.as_tensor(gaps),
                       torch.as_tensor(lengths), torch.as_tensor(users.astype(np.int64)))

    full, window = history(int(before.max())), history(learned.config.max_len)
    rng = torch.Generator().manual_seed(0)
    random = torch.stack([torch.randperm(ds.n_items, generator=rng)[:k] for _ in range(len(users))]) + 1
    choice = learned.learned_choice
    logits = learned.all_item_logits(learned.encode(window))[:, 1:].float()
    out = {"logged_users_on_logged_slates": float(clicked.mean()), "contexts": float(len(users))}
    everyone = torch.ones(len(users), dtype=torch.bool)
    for name, slate in (("logged_slates", shown), ("random_slates", random)):
        answer = world.respond(world.encode(full), slate, everyone, torch.Generator().manual_seed(1))
        lift = torch.log_softmax(logits, 1).gather(1, slate - 1) + math.log(ds.n_items)
        probs = choice.probabilities(choice.item_utilities(lift, torch.zeros_like(slate, dtype=torch.bool),
                                                           slate), torch.ones_like(slate, dtype=torch.bool))
        out[f"world_on_{name}"] = float(1 - answer.choice_probs[:, -1].double().mean())
        out[f"learned_on_{name}"] = float(1 - probs[:, -1].double().mean())
    # Repeats: how often the logs show an item the user consumed within the world's memory (which it
    # penalises), and within the simulator's history window, and how often such slots are clicked.
    from user_models.choice_model import impression_features

    memory = int(ds.meta.extra.get("cascade_config", {}).get("memory_size", 20))
    sample = table.filter(pl.col("user") < 400)
    for recency in (memory, 50):
        f = impression_features(learned, ds, sample, (1.0,), history_len=recency)
        hit = f.choice[:, None] == torch.arange(f.items.shape[1])[None, :]
        out[f"repeat_share_{recency}"] = float(f.repeated[f.shown].float().mean())
        out[f"repeat_click_{recency}"] = float(hit[f.repeated].float().mean()) if f.repeated.any() else 0.0
        out[f"other_click_{recency}"] = float(hit[f.shown & ~f.repeated].float().mean())
    out["memory"] = float(memory)
    out["repeat_weight"] = float(choice.repeat_weight)
    return out


def train_agent(out: Path, model: Path, data: Path, calibration: Path, sizes: Sizes, log: Path) -> float:
    """MaskablePPO trained only in the simulator of ``model`` and ``calibration`` for the time budget."""
    return recsim("agent", "train", "--algo", "maskable_ppo", "--model", str(model), "--data", str(data),
                  "--out", str(out), "--overwrite", "--max-minutes", str(sizes.agent_minutes), "--timesteps",
                  "2000000", "--hyperparams", f"env_kwargs.calibration={calibration}", "eval_freq=20000",
                  "checkpoint_freq=0", "--no-progress", log=log)


def best_checkpoint(agent: Path) -> Path:
    """The evaluation callback's best checkpoint of a training run, its final one without it."""
    return agent / "best" if (agent / "best" / "agent.json").exists() else agent / "final"


def has_impressions(data: Path) -> bool:
    """Whether the dataset at ``data`` carries an impression log (ingested, or the cascade world's raw)."""
    sys.path.insert(0, str(ROOT))
    from user_models.data.artifact import SequenceDataset

    return SequenceDataset.load(data).impressions is not None


def impressions_run(root: Path, sizes: Sizes, fidelity: list[str]) -> dict[str, float]:
    """The simulator with a choice learned from the impressions: fit it on a copy of the model, score it
    against the calibrated choice on held-out users, calibrate the leave again, run the same fidelity."""
    import shutil

    model, learned = root / "model", root / "model_impressions"
    if learned.exists():
        shutil.rmtree(learned)
    shutil.copytree(model, learned, ignore=shutil.ignore_patterns("resume"))
    times = {"fit choice": recsim("user-model", "fit-choice", "--model", str(learned), "--data",
                                  str(root / "data"), "--calibration", str(root / "calibration.json"),
                                  "--plot", str(root / "choice_reliability.png"), "--json",
                                  log=root / "choice.log")}
    if (root / "data_B").exists():
        recsim("user-model", "eval-choice", "--model", str(learned), "--data", str(root / "data"),
               "--calibration", str(root / "calibration.json"), "--heldout-data", str(root / "data_B"),
               "--json", log=root / "choice_B.log")
    calibration = root / "calibration_impressions.json"
    times["calibrate (impressions)"] = recsim(
        "env", "calibrate", "--model", str(learned), "--data", str(root / "data"), "--out", str(calibration),
        "--n-users", str(sizes.calibration_users), "--json", log=root / "calibrate_impressions.log")
    env_yaml = root / "env_impressions.yaml"
    env_yaml.write_text(f"action_mode: candidates\ncalibration: {calibration}\n")
    times["agent (impressions)"] = train_agent(root / "agent_impressions", learned, root / "data",
                                               calibration, sizes, log=root / "agent_impressions.log")
    agent = root / IMPRESSIONS_AGENT
    if agent.exists():
        shutil.rmtree(agent)
    shutil.copytree(best_checkpoint(root / "agent_impressions"), agent)
    args = list(fidelity)
    args[args.index("--policies") + 1] += f",{agent}"
    args[args.index("--model") + 1] = str(learned)
    args[args.index("--env-config") + 1] = str(env_yaml)
    args[args.index("--out") + 1] = str(root / "fidelity_impressions")
    times["fidelity (impressions)"] = recsim(*args, log=root / "fidelity_impressions.log")
    return times


def collect_world(name: str, root: Path) -> dict[str, Any]:
    """A world's results from the files its run left under ``root`` (what ``--report-only`` reads)."""
    agent = root / "agent"
    best = best_checkpoint(agent)
    times = root / "times.json"
    impressions = None
    if (root / "fidelity_impressions" / "fidelity.json").exists():
        impressions = {
            "fidelity": json.loads((root / "fidelity_impressions" / "fidelity.json").read_text()),
            "calibration": json.loads((root / "calibration_impressions.json").read_text()),
            "choice": _last_json(root / "choice.log"),
            "gap": choice_gap(root / "data", root / "model_impressions"),
            "choice_B": _last_json(root / "choice_B.log") if (root / "choice_B.log").exists() else None,
            "agent": (json.loads((root / "agent_impressions" / "train.json").read_text())
                      if (root / IMPRESSIONS_AGENT).exists() else None),
        }
    return {
        "name": name,
        "root": str(root),
        "impressions": impressions,
        "fidelity": json.loads((root / "fidelity" / "fidelity.json").read_text()),
        "calibration": json.loads((root / "calibration.json").read_text()),
        "heads": _last_json(root / "heads.log"),
        "agent": json.loads((agent / "train.json").read_text()),
        "agent_label": best.name,
        "ceilings": head_ceilings(root / "data"),
        "times": json.loads(times.read_text()) if times.exists() else {},
    }


def learn_and_calibrate(root: Path, sizes: Sizes) -> dict[str, float]:
    """Train the user model on ``root/data``, evaluate its heads and calibrate the simulator; wall times."""
    data, model, calibration = root / "data", root / "model", root / "calibration.json"
    times = {"user model": recsim("user-model", "train", "--data", str(data), "--out", str(model),
                                  "--overwrite", "--epochs", str(sizes.train_epochs), "--no-progress",
                                  log=root / "train.log")}
    recsim("user-model", "eval", "--model", str(model), "--data", str(data), "--split", "test", "--json",
           log=root / "heads.log")
    times["calibrate"] = recsim("env", "calibrate", "--model", str(model), "--data", str(data), "--out",
                                str(calibration), "--n-users", str(sizes.calibration_users), "--json",
                                log=root / "calibrate.log")
    return times


def ml100k_run(root: Path, source: Path, sizes: Sizes) -> dict[str, Any]:
    """ml-100k: data fidelity and the baselines' order in the simulator."""
    print("[ml-100k]", flush=True)
    root.mkdir(parents=True, exist_ok=True)
    data, model, calibration = root / "data", root / "model", root / "calibration.json"
    times = {"data": recsim("data", "prepare", "--input", str(source / "ml-100k.inter"), "--overwrite",
                            "--out", str(data), log=root / "data.log")}
    times.update(learn_and_calibrate(root, sizes))
    env_yaml = root / "env.yaml"
    env_yaml.write_text(f"calibration: {calibration}\n")
    common = ["--model", str(model), "--data", str(data), "--env-config", str(env_yaml)]
    times["fidelity"] = recsim("fidelity", *common, "--ground-truth", "no", "--users",
                               str(sizes.fidelity_users), "--overwrite", "--out", str(root / "fidelity"),
                               log=root / "fidelity.log")
    times["benchmark"] = recsim("benchmark", *common, "--policies", "random,popular,greedy", "--episodes",
                                str(sizes.episodes), "--seeds", str(sizes.seeds), "--save-trajectories", "0",
                                "--overwrite", "--out", str(root / "benchmark"), log=root / "benchmark.log")
    (root / "times.json").write_text(json.dumps(times) + "\n")
    return collect_ml100k(root)


def collect_ml100k(root: Path) -> dict[str, Any]:
    """ml-100k's results from the files its run left under ``root``."""
    results = json.loads((root / "benchmark" / "results.json").read_text())
    times = root / "times.json"
    return {
        "fidelity": json.loads((root / "fidelity" / "fidelity.json").read_text()),
        "calibration": json.loads((root / "calibration.json").read_text()),
        "heads": _last_json(root / "heads.log"),
        "returns": {m["policy"]: m for m in results["metrics"] if m["metric"] == "return"},
        "times": json.loads(times.read_text()) if times.exists() else {},
    }


def head_ceilings(data: Path) -> dict[str, Any]:
    """What the world's own mechanics let a perfect model reach on the heads' own test examples: the
    world's true behavior distribution and session-end probability, each logged user continued from
    their true state, scored exactly like the learned heads (``heads_report``)."""
    sys.path.insert(0, str(ROOT))
    from recsim_env.factory import load_model
    from user_models.data.artifact import SequenceDataset
    from user_models.evaluate import eval_examples, heads_report

    ds = SequenceDataset.load(data)
    ceilings = heads_report(load_model("world", ds), eval_examples(ds, "test"))
    if ds.impressions is not None and "synthetic_config" in ds.meta.extra:
        # The organic world's impression logs continue each user's organic logs (their own random
        # stream: the organic events are the same without them); the organic events alone are scored
        # too, for the labels the event budget's cut gives.
        from user_models.synthetic import SyntheticConfig, synthesize_dataset

        organic = synthesize_dataset(SyntheticConfig.from_dict(ds.meta.extra["synthetic_config"]))
        ceilings["organic_only"] = heads_report(load_model("world", organic), eval_examples(organic, "test"))
    return ceilings


def _last_json(log: Path) -> dict[str, Any]:
    """The JSON object a ``--json`` command printed (after the command line the log starts with)."""
    text = log.read_text()
    return dict(json.loads(text[text.index("{"):]))


# --- the report ------------------------------------------------------------------------------------------
def _first_pick(row: dict[str, Any], side: str) -> str:
    """A policy's first-slate pick rate on one side (``world`` or ``learned``); ``-`` in reports written
    before it was measured."""
    value = row.get(f"{side}_first_pick")
    return "-" if value is None or value != value else f"{value:.2f}"


def world_section(run: dict[str, Any]) -> list[str]:
    truth = run["fidelity"]["ground_truth_fidelity"]
    cal = run["calibration"]
    agent_label = run["agent_label"]
    lines = [f"### {run['name']}", "",
             "| policy | world return [95% CI] | simulator return [95% CI] | relative error | "
             "length world / sim | length KS | consumption world / sim | first-slate pick world / sim |",
             "|---|---|---|---|---|---|---|---|"]
    for r in truth["returns"]:
        name = f"MaskablePPO ({agent_label}, trained in the simulator)" if r["policy"] == agent_label \
            else r["policy"]
        lines.append(
            f"| {name} | {r['world']:.3f} [{r['world_low']:.3f}, {r['world_high']:.3f}] | {r['learned']:.3f} "
            f"[{r['learned_low']:.3f}, {r['learned_high']:.3f}] | {r['relative_error']:+.1%} | "
            f"{r['world_length']:.1f} / {r['learned_length']:.1f} | {r['length_ks']:.2f} | "
            f"{r['world_consumption']:.2f} / {r['learned_consumption']:.2f} | "
            f"{_first_pick(r, 'world')} / {_first_pick(r, 'learned')} |")
    lines += group_lines(truth["returns"], {agent_label: "MaskablePPO"})
    pick = truth["random_pick_rate"]
    agent = next(r for r in truth["returns"] if r["policy"] == agent_label)
    baselines = [r for r in truth["returns"] if r["policy"] in BASELINES and r["policy"] != "oracle"]
    best = max(baselines, key=lambda r: r["world"])
    sim_to_real = agent["world_low"] > best["world_high"]
    lines += [
        "",
        f"- Kendall's tau **{truth['kendall_tau']:.3f}** (target >= 0.9); largest relative error "
        f"**{truth['max_relative_error']:.1%}** (target <= 25%), median "
        f"**{truth['median_abs_relative_error']:.1%}** (target <= 10%).",
        f"- Random-slate pick rate: world {pick[0]:.3f}, simulator {pick[1]:.3f} "
        f"(**{truth['pick_rate_error']:+.1%}**, target within 20%).",
        f"- Sim-to-real: MaskablePPO trained only in the simulator earns {agent['world']:.3f} "
        f"[{agent['world_low']:.3f}, {agent['world_high']:.3f}] in the world; the best non-oracle baseline "
        f"there, `{best['policy']}`, {best['world']:.3f} "
        f"[{best['world_low']:.3f}, {best['world_high']:.3f}]: "
        f"**{'beats it, CIs apart' if sim_to_real else 'does not beat it with separated CIs'}**.",
        f"- Calibration: temperature {cal['temperature']:.3f}, no-choice utility "
        f"{cal['no_choice_logit']:.3f}, "
        f"end-logit offset {cal['end_logit_offset']:.3f}, idle hazard {cal.get('idle_hazard', 0.0):.3f}, "
        "hazard scale "
        f"{cal['report'].get('hazard_scale', float('nan')):.3f}, repeats `{cal['report'].get('repeat')}`"
        + (f" within the last {w} consumptions" if (w := cal['report'].get('repeat_window')) else "") + "; "
        + (f"**at a bound**: {bounds}" if (bounds := _bounds(cal)) else
           "every fitted parameter strictly inside its bounds") + ".",
        *([_leave_line(cal, {})] if "steps" in cal["report"].get("leave", {}) else []),
        *([_gap_line(cal)] if cal["report"].get("gap_reading") else []),
        _heads_line(run["heads"]),
        "- What the logs allow (the world's own behavior distribution and end probability on the same "
        "test examples, each logged user continued from their true state): " + _heads_text(run["ceilings"])
        + ".",
    ]
    organic_only = run["ceilings"].get("organic_only")
    if organic_only:
        lines.append(
            "- The organic events alone (the logs of `recsim data synth` without `--impressions`, whose "
            "last session the event budget cuts): the world's own " + _heads_text(organic_only) + ". With "
            "impressions each user's logs end with the slate session and one closing organic session "
            "that only the world's end probability ends, so the test position (the last event but one) "
            "ended its session only where the closing session holds one event: a rarer, harder label "
            "than the budget-cut one.")
    heldout = run["fidelity"].get("heldout_policy_fidelity")
    if heldout:
        e = heldout["errors"]
        lines.append(
            f"- Held-out logging policy B (the simulator fitted to A's logs predicts B's): events per "
            f"session {heldout['logged']['events_per_session']:.2f} logged vs "
            f"{heldout['simulated']['events_per_session']:.2f} simulated "
            f"(**{e['events_per_session']:+.1%}**), "
            f"consumption rate {heldout['logged']['consumption_rate']:.3f} vs "
            f"{heldout['simulated']['consumption_rate']:.3f} (**{e['consumption_rate']:+.1%}**), return per "
            f"session {e['return_per_session']:+.1%}, behavior mix JS {e['behavior_mix_js']:.3f} (target: "
            "length and consumption within 20%).")
    lines += impressions_section(run)
    times = ", ".join(f"{k} {v:.0f} s" for k, v in run["times"].items())
    lines += [f"- Wall time: {times}.", ""]
    return lines


def group_lines(returns: list[dict[str, Any]], names: dict[str, str], simulator: str = "simulator"
                ) -> list[str]:
    """The world's hidden item groups (the cascade world's bait) per policy, world / ``simulator``
    (:func:`recsim_env.offline.fidelity.item_group_table`), and the largest return gap's groups in one
    sentence each. ``names``: display names of policies (the agents' checkpoint labels)."""
    sys.path.insert(0, str(ROOT))
    from recsim_env.offline.fidelity import ItemGroupFidelity, group_gap, item_group_table

    def groups(row: dict[str, Any]) -> tuple[ItemGroupFidelity, ...]:
        return tuple(ItemGroupFidelity(**g) for g in row.get("item_groups", ()))

    lines = item_group_table([(names.get(r["policy"], r["policy"]), groups(r)) for r in returns], simulator)
    if lines:
        worst = max(returns, key=lambda r: abs(r["relative_error"]))
        name = names.get(worst["policy"], worst["policy"])
        lines += ["", *(f"- The hidden groups under the largest gap ({worst['relative_error']:+.0%}): "
                        f"{group_gap(name, g)}." for g in groups(worst))]
    return lines


IMPRESSIONS_AGENT = "ppo_impressions"
"""Directory (and report label) of the agent trained in the learned-choice simulator."""
IMPRESSION_TARGETS = {"relative_error": 0.15, "kendall_tau": 0.95, "pick_rate_error": 0.10}
"""Issue 15's targets for the simulator with a choice learned from impressions."""


def impressions_section(run: dict[str, Any]) -> list[str]:
    """The world's simulator with and without the choice learned from its impression log."""
    imp = run.get("impressions")
    if imp is None:
        return ["", "**With impressions:** none: this world's data has no impression log; only the "
                "calibrated simulator above.", ""]
    before, after = run["fidelity"]["ground_truth_fidelity"], imp["fidelity"]["ground_truth_fidelity"]
    choice = imp["choice"]
    held = choice["held_out"]
    share = 1 - choice["settings"]["holdout"]
    lines = ["", f"**With impressions** (the choice learned from {choice['fit_impressions']} impressions of "
             f"{share:.0%} of the users; scored on the other users' impressions):", "",
             "| choice model | held-out impressions | log-likelihood / impression | click AUC | click ECE | "
             "P(click) predicted / logged |", "|---|---|---|---|---|---|"]
    for name in ("calibrated MNL", "learned, no item bias", "learned choice"):
        if name in held:
            s = held[name]
            lines.append(f"| {name} | {s['impressions']} | {s['log_likelihood']:.4f} | "
                         f"{s['click_auc']:.3f} | {s['click_ece']:.3f} | "
                         f"{s['predicted_click_rate']:.3f} / {s['logged_click_rate']:.3f} |")
    beats = held["learned choice"]["log_likelihood"] > held["calibrated MNL"]["log_likelihood"]
    plot = f"{Path(run.get('root', '.')).name}/choice_reliability.png"
    lines += ["", f"Learned choice above the calibrated MNL on held-out log-likelihood: "
              f"**{_met(beats)}** (reliability diagram: `{plot}` under `--out`). The calibrated MNL was "
              "fitted on "
              "consumption logs for the simulator's slates of 5; the impressions show slates of "
              f"{choice.get('n_slots', 10)}.", "",
              "| policy | world return | simulator, calibrated choice | error | simulator, learned choice | "
              "error | consumption world / calibrated / learned | first-slate pick world / calibrated / "
              "learned | length world / calibrated / learned |",
              "|---|---|---|---|---|---|---|---|---|"]
    learned = {r["policy"]: r for r in after["returns"]}
    for r in before["returns"]:
        a = learned.get(r["policy"])
        if a is not None:
            lines.append(f"| {r['policy']} | {r['world']:.3f} | {r['learned']:.3f} | "
                         f"{r['relative_error']:+.1%} | {a['learned']:.3f} | {a['relative_error']:+.1%} | "
                         f"{r['world_consumption']:.2f} / {r['learned_consumption']:.2f} / "
                         f"{a['learned_consumption']:.2f} | {_first_pick(r, 'world')} / "
                         f"{_first_pick(r, 'learned')} / {_first_pick(a, 'learned')} | "
                         f"{r['world_length']:.1f} / {r['learned_length']:.1f} / {a['learned_length']:.1f} |")
    calibrated = {r["policy"] for r in before["returns"]}
    for a in after["returns"]:
        if a["policy"] not in calibrated:
            name = ("MaskablePPO (trained in the learned-choice simulator)"
                    if a["policy"] == IMPRESSIONS_AGENT else a["policy"])
            lines.append(f"| {name} | {a['world']:.3f} | - | - | {a['learned']:.3f} | "
                         f"{a['relative_error']:+.1%} | {a['world_consumption']:.2f} / - / "
                         f"{a['learned_consumption']:.2f} | {_first_pick(a, 'world')} / - / "
                         f"{_first_pick(a, 'learned')} | {a['world_length']:.1f} / - / "
                         f"{a['learned_length']:.1f} |")
    lines += group_lines(after["returns"], {run["agent_label"]: "MaskablePPO (calibrated simulator)",
                                            IMPRESSIONS_AGENT: "MaskablePPO (learned-choice simulator)"},
                         "learned-choice simulator")
    t = IMPRESSION_TARGETS
    worst = max(abs(r["relative_error"]) for r in after["returns"])
    tau, pick, pick_error = after["kendall_tau"], after["random_pick_rate"], after["pick_rate_error"]
    cal = imp["calibration"]
    bounds = _bounds(cal)
    lines += [
        "",
        f"- Learned choice: Kendall's tau **{tau:.3f}** (calibrated {before['kendall_tau']:.3f}; target >= "
        f"{t['kendall_tau']}): **{_met(tau >= t['kendall_tau'])}**; largest relative error "
        f"**{worst:.1%}** (calibrated {before['max_relative_error']:.1%}; target <= "
        f"{t['relative_error']:.0%}): **{_met(worst <= t['relative_error'])}**; median "
        f"{after['median_abs_relative_error']:.1%}.",
        f"- Random-slate pick rate: world {pick[0]:.3f}, learned-choice simulator {pick[1]:.3f} "
        f"(**{pick_error:+.1%}**, calibrated {before['pick_rate_error']:+.1%}; target within "
        f"{t['pick_rate_error']:.0%}): **{_met(abs(pick_error) <= t['pick_rate_error'])}**.",
        _leave_line(cal, bounds),
    ]
    agent = learned.get(IMPRESSIONS_AGENT)
    if agent is not None:
        baselines = [r for r in after["returns"] if r["policy"] in BASELINES and r["policy"] != "oracle"]
        best = max(baselines, key=lambda r: r["world"])
        apart = agent["world_low"] > best["world_high"]
        lines.append(
            f"- Sim-to-real with impressions: MaskablePPO trained only in the learned-choice simulator "
            f"earns {agent['world']:.3f} [{agent['world_low']:.3f}, {agent['world_high']:.3f}] in the world "
            f"(the simulator predicted {agent['learned']:.3f}); the best non-oracle baseline there, "
            f"`{best['policy']}`, {best['world']:.3f} [{best['world_low']:.3f}, {best['world_high']:.3f}]: "
            f"**{'beats it, CIs apart' if apart else 'does not beat it with separated CIs'}**.")
    other = imp.get("choice_B")
    if other:
        a, b = other["learned choice"], other["calibrated MNL"]
        lines.append(
            f"- Held-out logging policy B's impressions ({a['impressions']}, never fitted on; B shows 30% "
            f"random slots): log-likelihood learned {a['log_likelihood']:.4f} vs calibrated "
            f"{b['log_likelihood']:.4f}, click AUC {a['click_auc']:.3f} vs {b['click_auc']:.3f}, P(click) "
            f"predicted {a['predicted_click_rate']:.3f} (calibrated {b['predicted_click_rate']:.3f}) vs "
            f"logged {a['logged_click_rate']:.3f}.")
    gap = imp.get("gap")
    if gap:
        logged, world_logged = gap["logged_users_on_logged_slates"], gap["world_on_logged_slates"]
        lines.append(
            f"- Measured cause (P(a click) at {gap['contexts']:.0f} logged contexts, the logged slates' "
            f"top 5 and random 5-slates): the logged users clicked **{logged:.3f}** of the logged slates, "
            f"the learned choice predicts {gap['learned_on_logged_slates']:.3f}, the world as ground "
            f"truth (the same logged users, continued from their true state) **{world_logged:.3f}**; "
            f"on random slates the world {gap['world_on_random_slates']:.3f}, the learned choice "
            f"{gap['learned_on_random_slates']:.3f}. The first gap is sampling noise of the world's own "
            "clicks; the second shows how far the choice, fitted on slates of one logging policy, "
            "extrapolates to slates that policy never shows.")
        m = int(gap.get("memory", 20))
        if f"repeat_share_{m}" in gap:
            window = cal["report"].get("repeat_window")
            rule = (f"the consumption logs (almost: under 1%) never re-consume within the last {window} "
                    "events, so the "
                    f"simulator masks repeats within the last {window} consumptions (`repeat_window` from "
                    "the data; the action masks follow that rule in the world too), and the learned weight "
                    "applies to older repeats only" if window else
                    f"repeats `{cal['report'].get('repeat')}` by the data")
            lines.append(
                f"- Repeats by recency: of the shown slots, {gap[f'repeat_share_{m}']:.2%} hold an item of "
                f"the user's last {m} consumptions (the world's memory, which it penalises; the loggers "
                f"never re-show them) and {gap['repeat_share_50']:.1%} one of the last 50, clicked "
                f"{gap['repeat_click_50']:.3f} vs {gap['other_click_50']:.3f} for other slots; so the "
                f"impressions cannot show recent repeats, the learned repeat weight is "
                f"**{gap['repeat_weight']:+.2f}** (older repeats attract); {rule}.")
    heldout = imp["fidelity"].get("heldout_policy_fidelity")
    if heldout:
        e = heldout["errors"]
        lines.append(f"- Held-out logging policy B with the learned choice: events per session "
                     f"**{e['events_per_session']:+.1%}**, consumption rate "
                     f"**{e['consumption_rate']:+.1%}**, return per session {e['return_per_session']:+.1%}.")
    return lines


def _leave_line(cal: dict, bounds: dict) -> str:
    """How the leave was fitted: by maximum likelihood on the logged steps, or again by simulation."""
    from recsim_env.offline.leave_impressions import describe

    leave = cal.get("report", {}).get("leave", {})
    if "steps" in leave:
        return f"- {describe(leave)} (maximum likelihood)" + (
            f"; **at a bound**: {bounds}" if bounds else "") + "."
    return (f"- Leave fitted again by simulation: end-logit offset {cal['end_logit_offset']:.3f}, idle "
            f"hazard {cal.get('idle_hazard', 0.0):.3f}" + (f"; **at a bound**: {bounds}" if bounds else "")
            + ".")


def _gap_line(cal: dict) -> str:
    """The time gaps read in one unit (what the calibration uses) and as dwell plus passed-over slates."""
    from recsim_env.gap_reading import describe

    return f"- {describe(cal['report']['gap_reading'], tuple(cal['report'].get('behaviors', ())))}"


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def _bounds(calibration: dict[str, Any]) -> dict[str, str]:
    """The calibration's parameters at a bound of their search, as ``recsim env calibrate`` reported them."""
    return calibration["report"].get("at_bound", {})


def _heads_text(heads: dict[str, Any]) -> str:
    """Behavior and session-end metrics of a ``heads_report`` (``user-model eval``'s or the world's)."""
    behavior = heads.get("behavior", {})
    end = heads.get("session_end", {})
    parts = []
    if behavior:
        parts.append(f"behavior accuracy {behavior['accuracy']:.3f} vs majority class "
                     f"{behavior['majority_accuracy']:.3f}, macro-F1 {behavior['macro_f1']:.3f}, "
                     f"one-vs-rest AUC {behavior['auc_ovr']:.3f}")
    if end:
        parts.append(f"session-end AUC {end['auc']:.3f}")
    return "; ".join(parts) if parts else f"{heads}"


def _heads_line(heads: dict[str, Any]) -> str:
    """The learned heads against the majority class and chance, from ``user-model eval``."""
    return f"- Heads (test split): {_heads_text(heads)} (session-end target >= 0.7)."


def ml100k_section(run: dict[str, Any]) -> list[str]:
    data = run["fidelity"]["data_fidelity"]
    stats, floor = data["statistics"], data["noise_floor"]
    returns = run["returns"]
    order = sorted(returns, key=lambda p: -returns[p]["estimate"])
    lines = ["### ml-100k (data fidelity; no ground truth)", "",
             "| statistic | simulated vs real | real vs real (noise floor) |", "|---|---|---|"]
    lines += [f"| {k} | {v:.4f} | {floor[k]:.4f} |" for k, v in stats.items()]
    lines += [
        "",
        f"- Repeat rate: real {data['real']['repeat_rate']:.3f}, simulated "
        f"**{data['simulated']['repeat_rate']:.3f}** "
        f"(target <= 1%; repeats `{run['calibration']['report'].get('repeat')}` by the data).",
        "- Returns in the simulator: " + ", ".join(
            f"`{p}` {returns[p]['estimate']:.3f} [{returns[p]['low']:.3f}, {returns[p]['high']:.3f}]"
            for p in order)
        + f" (target: greedy and popular above random: **{'met' if order[-1] == 'random' else 'missed'}**).",
        _heads_line(run["heads"]),
        f"- Wall time: {', '.join(f'{k} {v:.0f} s' for k, v in run['times'].items())}.",
        "",
    ]
    return lines


def report(runs: list[dict[str, Any]], ml: dict[str, Any] | None, sizes: Sizes, seconds: float) -> str:
    lines = [
        "## Fidelity: the learned simulator against the worlds that wrote its logs "
        "(`scripts/fidelity_eval.py`)",
        "",
        f"Command: `python scripts/fidelity_eval.py` (sizes: {sizes}). Machine: {machine()}. "
        f"Total wall time {seconds / 60:.1f} min. Both worlds were written first and frozen; the simulator "
        "is fitted to their logs only. Every row runs the same users and random streams in the world and in "
        "the simulator (common random numbers within each side).",
        "",
    ]
    for run in runs:
        lines += world_section(run)
    if ml is not None:
        lines += ml100k_section(ml)
    return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0]
    return f"{platform.system()} {cpu}, {os.cpu_count()} CPUs, load average {load:.1f} at the end"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "fidelity_eval", help="work directory")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run of a few minutes)")
    parser.add_argument("--ml100k", type=Path, default=ML100K, help="MovieLens-100K (RecBole atomic files)")
    parser.add_argument("--no-benchmarks-md", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--only", default="organic,cascade,ml-100k",
                        help="comma-separated parts to run: organic, cascade, ml-100k (default: all)")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild the report from the files of an earlier run under --out (no runs)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    start = time.perf_counter()
    only = set(args.only.split(","))
    unknown = only - {"organic", "cascade", "ml-100k"}
    if unknown:
        parser.error(f"--only: unknown part(s) {sorted(unknown)}")
    worlds = tuple(w for w in (("Organic world (`recsim data synth`)", "organic", False),
                               ("Cascade world (`recsim data synth --world cascade`)", "cascade", True))
                   if w[1] in only)
    if args.report_only:
        missing = [folder for _, folder, _ in worlds
                   if not (args.out / folder / "fidelity" / "fidelity.json").exists()]
        if missing:
            parser.error(f"--report-only: no finished run of {', '.join(missing)} under {args.out} "
                         "(give --only the parts that ran)")
        runs = [collect_world(name, args.out / folder) for name, folder, _ in worlds]
    else:
        runs = [world_run(name, args.out / folder, sizes, cascade) for name, folder, cascade in worlds]
    ml = None
    if args.report_only and (args.out / "ml-100k" / "benchmark" / "results.json").exists():
        ml = collect_ml100k(args.out / "ml-100k")
    elif not args.report_only and "ml-100k" in only and (args.ml100k / "ml-100k.inter").exists():
        ml = ml100k_run(args.out / "ml-100k", args.ml100k, sizes)
    elif not args.report_only and "ml-100k" in only:
        print(f"ml-100k not found at {args.ml100k}: skipped", flush=True)
    seconds = sum(sum(run["times"].values()) for run in [*runs, *([ml] if ml else [])])
    text = report(runs, ml, sizes, seconds if args.report_only else time.perf_counter() - start)
    (args.out / "fidelity_eval.md").write_text(text)
    print(text)
    if not args.no_benchmarks_md and not args.quick and only == {"organic", "cascade", "ml-100k"}:
        write_section(ROOT / "BENCHMARKS.md", MARK, text)


if __name__ == "__main__":
    main()
