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
5. **agent**: train MaskablePPO briefly on the calibrated simulator
   (:func:`recsim_env.offline.training.train_agent`);
6. **benchmark**: the agent against Random, MostPopular, Greedy and the Oracle with common random numbers
   (:func:`recsim_env.offline.benchmark.run_benchmark`);
7. **fidelity**: simulated vs held-out sessions, and (synthetic data) the world vs the learned simulator
   (:mod:`recsim_env.offline.fidelity`);
8. **session GIF**: one benchmarked session of the agent, replayed through the visualizer;
9. **report**: ``OUT/report.md`` with the tables, PNG plots, the GIF and the time of every stage.

Everything is written under ``OUT``; a new run replaces the previous one's files there.

Layout: :mod:`~recsim_env.demo.config` (what a run does: :class:`DemoConfig`, the :class:`DemoSizes`
presets), :mod:`~recsim_env.demo.stages` (one function per stage, each returning its report section and
facts), :mod:`~recsim_env.demo.report` (``report.md``, ``summary.json``, tables and plots) and
:mod:`~recsim_env.demo.runner` (:func:`run_demo`: the stages in order, timed, then the report).
"""

from recsim_env.demo.config import (
    DATASETS,
    DEFAULT,
    QUICK,
    STAGE_SECONDS,
    TINY,
    DemoConfig,
    DemoSizes,
    expected_seconds,
)
from recsim_env.demo.report import StageTime
from recsim_env.demo.runner import demo_plan, run_demo
from recsim_env.demo.stages import (
    ALGO,
    BENCHMARK_POLICIES,
    ML100K_CONSUMPTION_RATE,
    STAGE_WRITES,
    STAGES,
    DemoRun,
    StageResult,
)

__all__ = [
    "ALGO",
    "BENCHMARK_POLICIES",
    "DATASETS",
    "DEFAULT",
    "ML100K_CONSUMPTION_RATE",
    "QUICK",
    "STAGES",
    "STAGE_SECONDS",
    "STAGE_WRITES",
    "TINY",
    "DemoConfig",
    "DemoRun",
    "DemoSizes",
    "StageResult",
    "StageTime",
    "demo_plan",
    "expected_seconds",
    "run_demo",
]
