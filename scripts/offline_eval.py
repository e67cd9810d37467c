"""Offline evaluation end to end: benchmark, fidelity, off-policy evaluation and Minari export.

Runs the four ``recsim`` offline commands on the synthetic world and (when present) on ml-100k, then
writes their headline tables into ``BENCHMARKS.md`` between ``<!-- BEGIN offline_eval -->`` and
``<!-- END offline_eval -->``. Missing inputs are made first: the synthetic dataset, the user models
(``recsim user-model train``) and their calibrations (``recsim env calibrate``).

    python scripts/offline_eval.py [--out out/offline_eval] [--quick]

``--quick`` shrinks every run (for a smoke test); the recorded numbers come from the default sizes.
Reports land under ``--out``; nothing generated is committed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks_md import write_section  # scripts/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
MARK = "offline_eval"
TIMES = "wall_times.json"
"""Each dataset's command wall times, kept under ``--out`` so ``--report-only`` can show them."""


@dataclass(frozen=True)
class Sizes:
    """How big each run is."""

    train_epochs: int = 30  # the trainer's default: early stopping on validation NDCG@10 ends it
    episodes: int = 200
    seeds: int = 3
    fidelity_users: int = 500
    fidelity_episodes: int = 200
    fidelity_seeds: int = 2
    ope_logged: int = 2000
    ope_seeds: int = 10
    ope_truth: int = 20000
    minari_episodes: int = 100


QUICK = Sizes(
    train_epochs=1,
    episodes=20,
    seeds=1,
    fidelity_users=50,
    fidelity_episodes=20,
    fidelity_seeds=1,
    ope_logged=200,
    ope_seeds=2,
    ope_truth=1000,
    minari_episodes=5,
)
POLICIES = "random,popular,greedy,oracle,epsilon,mmr"


def recsim(*args: str, log: Path) -> float:
    """Run ``recsim ARGS`` with the repo on the path; returns wall seconds; raises on failure."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    with log.open("w") as out:
        result = subprocess.run(
            [sys.executable, "-m", "recsim_env.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise SystemExit(f"recsim {' '.join(args)} failed (exit {result.returncode}); see {log}")
    return time.perf_counter() - start


def synthesize(out: Path) -> None:
    """The synthetic world's dataset (2,000 users, 1,000 items; the world is rebuilt from it)."""
    sys.path.insert(0, str(ROOT))
    from user_models.synthetic import synthesize_dataset
    from user_models.synthetic.config import SyntheticConfig

    synthesize_dataset(SyntheticConfig(n_users=2000, n_items=1000, seed=0)).save(out, overwrite=True)


def calibrate_world(root: Path) -> Path:
    """Calibrate the ground-truth world like the learned simulator (same procedure, same logs)."""
    sys.path.insert(0, str(ROOT))
    from recsim_env.config import WORLD_LEAVE, WORLD_MODEL, SimConfig
    from recsim_env.factory import load_model
    from recsim_env.offline.calibrate import calibrate
    from user_models.data.artifact import SequenceDataset

    path = root / "world_calibration.json"
    if not path.exists():
        dataset = SequenceDataset.load(root / "data")
        config = SimConfig(leave=WORLD_LEAVE, no_choice_event=True)  # RecSim-World-v0's mechanism
        calibrate(load_model(WORLD_MODEL, dataset), dataset, config, progress=False).save(path)
    env = root / "world_env.yaml"
    env.write_text(f"calibration: {path}\n")
    return env


def prepare(
    root: Path, data_args: list[str] | None, sizes: Sizes, calibrate_args: list[str]
) -> dict[str, Path]:
    """Dataset, model, calibration and env config under ``root``, made when missing.

    ``data_args``: ``recsim data`` arguments making the dataset; None for the synthetic world.
    """
    paths = {
        k: root / v
        for k, v in (
            ("data", "data"),
            ("model", "model"),
            ("calibration", "calibration.json"),
            ("env", "env.yaml"),
        )
    }
    root.mkdir(parents=True, exist_ok=True)
    if not (paths["data"] / "meta.json").exists():
        if data_args is None:
            synthesize(paths["data"])
        else:
            recsim("data", *data_args, "--out", str(paths["data"]), log=root / "data.log")
    if not paths["model"].exists():
        recsim(
            "user-model",
            "train",
            "--data",
            str(paths["data"]),
            "--out",
            str(paths["model"]),
            "--epochs",
            str(sizes.train_epochs),
            "--no-progress",
            log=root / "train.log",
        )
    if not paths["calibration"].exists():
        recsim(
            "env",
            "calibrate",
            "--model",
            str(paths["model"]),
            "--data",
            str(paths["data"]),
            "--out",
            str(paths["calibration"]),
            "--report",
            str(root / "calibration.md"),
            *calibrate_args,
            log=root / "calibrate.log",
        )
    paths["env"].write_text(f"calibration: {paths['calibration']}\n")
    return paths


def evaluate(
    name: str, paths: dict[str, Path], root: Path, sizes: Sizes, synthetic: bool
) -> dict[str, float]:
    """The four commands on one dataset; returns their wall times."""
    common = ["--data", str(paths["data"]), "--env-config", str(paths["env"])]
    times = {}
    times["benchmark"] = recsim(
        "benchmark",
        "--model",
        str(paths["model"]),
        *common,
        "--policies",
        POLICIES,
        "--episodes",
        str(sizes.episodes),
        "--seeds",
        str(sizes.seeds),
        "--out",
        str(root / "benchmark"),
        log=root / "benchmark.log",
    )
    if synthetic:
        times["benchmark (world)"] = recsim(
            "benchmark",
            "--model",
            "world",
            "--data",
            str(paths["data"]),
            "--policies",
            POLICIES,
            "--episodes",
            str(sizes.episodes),
            "--seeds",
            str(sizes.seeds),
            "--out",
            str(root / "benchmark_world"),
            log=root / "benchmark_world.log",
        )
    fidelity_sizes = [
        "--users", str(sizes.fidelity_users),
        "--episodes", str(sizes.fidelity_episodes),
        "--seeds", str(sizes.fidelity_seeds),
    ]
    times["fidelity"] = recsim(
        "fidelity",
        "--model",
        str(paths["model"]),
        *common,
        *fidelity_sizes,
        "--out",
        str(root / "fidelity"),
        log=root / "fidelity.log",
    )
    if synthetic:
        times["fidelity (calibrated world)"] = recsim(
            "fidelity",
            "--model",
            str(paths["model"]),
            *common,
            "--world-env-config",
            str(calibrate_world(root)),
            *fidelity_sizes,
            "--out",
            str(root / "fidelity_calibrated_world"),
            log=root / "fidelity_cw.log",
        )
    times["ope"] = recsim(
        "ope",
        "--model",
        str(paths["model"]),
        *common,
        "--logged",
        str(sizes.ope_logged),
        "--seeds",
        str(sizes.ope_seeds),
        "--truth-users",
        str(sizes.ope_truth),
        "--out",
        str(root / "ope"),
        log=root / "ope.log",
    )
    os.environ.setdefault("MINARI_DATASETS_PATH", str(root / "minari"))
    times["export-minari"] = recsim(
        "export-minari",
        "--model",
        str(paths["model"]),
        *common,
        "--policy",
        "popular",
        "--episodes",
        str(sizes.minari_episodes),
        "--dataset-id",
        f"recsim/{name}-popular-v0",
        "--overwrite",
        log=root / "minari.log",
    )
    return times


def section(results: dict[str, Path], times: dict[str, dict[str, float]], command: str) -> str:
    """The BENCHMARKS.md section's body: each dataset's benchmark table, fidelity verdict and OPE table."""
    lines = [
        "## Offline evaluation: benchmark, fidelity, off-policy evaluation",
        "",
        f"Command: `{command}`. Machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()} (shared with other jobs; wall times are indicative).",
        "",
    ]
    for name, root in results.items():
        lines += [f"### {name}", ""]
        root_has_world = (root / "benchmark_world").exists()
        for sub, title in (
            ("benchmark", "Benchmark (learned simulator)"),
            ("benchmark_world", "Benchmark (ground-truth world)"),
        ):
            md = root / sub / "results.md"
            if md.exists():
                text = md.read_text()
                body = text[text.index("| policy |") :]  # the metrics table, then the paired differences
                lines += [f"{title}:", "", re.sub(r"^## ", "#### ", body, flags=re.M), ""]
        for sub, title in (
            ("fidelity", "Fidelity (world with RecSim-World-v0 defaults)" if root_has_world else "Fidelity"),
            ("fidelity_calibrated_world", "Fidelity (world calibrated like the learned simulator)"),
        ):
            fid = root / sub / "fidelity.md"
            if fid.exists():
                body = fid.read_text().split("\n", 3)[-1]
                lines += [f"{title}:", "", re.sub(r"^## ", "#### ", body, flags=re.M), ""]
        ope = root / "ope" / "ope.md"
        if ope.exists():
            body = ope.read_text().split("\n", 2)[-1]  # the table and its notes, without the title
            lines += ["Off-policy evaluation (first-step value; bias and RMSE over seeds):", "", body, ""]
        if name in times:
            lines += ["Wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times[name].items()), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "offline_eval")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (smoke test); BENCHMARKS.md untouched"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: collect the reports under --out into BENCHMARKS.md",
    )
    args = parser.parse_args()
    if args.report_only:
        roots = {name: args.out / name for name in ("synthetic", "ml-100k") if (args.out / name).exists()}
        recorded = {name: json.loads((root / TIMES).read_text()) for name, root in roots.items()
                    if (root / TIMES).exists()}
        text = section(roots, recorded, "python scripts/offline_eval.py")
        write_section(ROOT / "BENCHMARKS.md", MARK, text)
        return
    sizes = QUICK if args.quick else Sizes()
    roots, times = {}, {}
    synth_root = args.out / "synthetic"
    paths = prepare(synth_root, None, sizes, [])
    times["synthetic"] = evaluate("synthetic", paths, synth_root, sizes, synthetic=True)
    (synth_root / TIMES).write_text(json.dumps(times["synthetic"]) + "\n")
    roots["synthetic"] = synth_root
    ml100k = Path(os.environ.get("RECSIM_ML100K", ROOT.parent / "shared" / "data" / "ml-100k"))
    if ml100k.exists():
        ml_root = args.out / "ml-100k"
        data_args = ["prepare", "--dataset", "ml-100k", "--data-dir", str(ml100k), "--no-progress"]
        # ml-100k's ratings come in bursts (median within-session gap 0 s), so the consumption rate per
        # step cannot be reconstructed from time: assume half the slates lead to a rating.
        paths = prepare(ml_root, data_args, sizes, ["--consumption-rate", "0.5"])
        times["ml-100k"] = evaluate("ml-100k", paths, ml_root, sizes, synthetic=False)
        (ml_root / TIMES).write_text(json.dumps(times["ml-100k"]) + "\n")
        roots["ml-100k"] = ml_root
    else:
        print(f"ml-100k not found at {ml100k} (set RECSIM_ML100K); synthetic world only")
    text = section(roots, times, "python scripts/offline_eval.py" + (" --quick" if args.quick else ""))
    print(text)
    if not args.quick:
        write_section(ROOT / "BENCHMARKS.md", MARK, text)


if __name__ == "__main__":
    main()
