"""Fit the learned choice on impression logs and score it against the calibrated multinomial logit.

Both models answer the same question for every held-out impression: given the user's history and the
slate shown, P(each slot) and P(no choice). The calibrated baseline is the simulator's choice without
impressions (:func:`recsim_env.choice.choice_probabilities` with the temperature and no-choice utility
of ``recsim env calibrate``, fitted to consumption logs); the learned one is
:class:`user_models.choice_model.LearnedChoice`, fitted on the impressions of the other users.

Scores, per held-out impression: log-likelihood of what happened (which slot, or nothing), AUC of
"clicked something" against "clicked nothing" (score: ``1 - P(no choice)``), calibration of that
probability (expected calibration error and a reliability PNG), and the clicked-slot accuracy.
Users are split into fit and held-out by a fixed seed; the L2 strength (and, with ``form="auto"``, the
choice's form) is chosen on a further split of the fit users, never on the held-out ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsim_env.choice import choice_probabilities, choice_utilities
from recsim_env.config import Calibration, ChoiceConfig
from recsim_env.population import data_repeat_rule
from user_models.choice_model import (
    CHOICE_FORMS,
    ImpressionFeatures,
    LearnedChoice,
    fit_learned_choice,
    held_out_users,
    impression_features,
    impression_nll,
)
from user_models.data.artifact import SequenceDataset
from user_models.errors import InputError
from user_models.evaluate import calibration_bins, expected_calibration_error, roc_auc

L2_GRID = (0.05, 0.5, 5.0)
"""Item-bias L2 strengths tried (chosen on an inner split of the fit users)."""


@dataclass(frozen=True)
class ChoiceFitSettings:
    """How to fit and hold out.

    Attributes:
        holdout: Share of users whose impressions are held out for evaluation.
        seed: Seed of the user split.
        history_len: Window of the repeat flag (the simulator's ``history_len``).
        form: The choice's form (:data:`~user_models.choice_model.CHOICE_FORMS`), or ``"auto"``: the
            one with the higher log-likelihood on an inner split of the fit users. The default is the
            multinomial logit: on the cascade world, whose users do scan top-down, the cascade form has
            the higher held-out log-likelihood (-1.207 against -1.226 per impression, and on another
            logging policy's impressions -1.210 against -1.221) yet makes a worse simulator: it
            over-estimates the good policies' returns by 39-55% where the logit does by 29-38%
            (``docs/concepts.md``). Likelihood on one logger's slates does not rank simulators.
    """

    holdout: float = 0.2
    seed: int = 0
    history_len: int = 50
    form: str = "mnl"

    def __post_init__(self) -> None:
        if self.form not in ("auto", *CHOICE_FORMS):
            raise InputError(f"choice form must be 'auto' or one of {CHOICE_FORMS}, got {self.form!r}")


def load_features(model: Any, dataset: SequenceDataset, temperatures: tuple[float, ...],
                  settings: ChoiceFitSettings) -> tuple[ImpressionFeatures, dict[str, int]]:
    """The dataset's impressions as choice inputs; :class:`InputError` when it has none."""
    impressions, dropped = dataset.impressions, dict[str, int]()
    if impressions is None:
        raise InputError(f"dataset {dataset.meta.name!r} has no impression log; a learned choice needs the "
                         "slates users were shown (`recsim data prepare --impressions`, or "
                         "`recsim data synth --impressions`)")
    features = impression_features(model, dataset, impressions, temperatures, settings.history_len)
    return features, {**dropped, **features.dropped}


def fit_choice(model: Any, dataset: SequenceDataset, settings: ChoiceFitSettings | None = None,
               calibration: Calibration | None = None, plot: str | Path | None = None
               ) -> tuple[LearnedChoice, dict[str, Any]]:
    """Fit the learned choice on the fit users' impressions; returns it (with its report) and the
    held-out comparison against the calibrated baseline (:func:`score_choice`; a reliability PNG at
    ``plot``)."""
    settings = settings or ChoiceFitSettings()
    base = baseline_choice(calibration, dataset, settings.history_len)
    features, dropped = load_features(model, dataset, (1.0, base.temperature), settings)
    held = held_out_users(dataset.n_users, settings.holdout, settings.seed)
    fit = features.subset(~held[features.user])
    if fit.n == 0:
        raise InputError(f"dataset {dataset.meta.name!r}: no impression left to fit on")
    inner = held_out_users(dataset.n_users, 0.25, settings.seed + 1)[fit.user]
    forms = CHOICE_FORMS if settings.form == "auto" else (settings.form,)
    trials = {(form, l2): impression_nll(fit_learned_choice(fit.subset(~inner), dataset.n_items, l2,
                                                            form=form), fit.subset(inner))
              for form in forms for l2 in L2_GRID}
    form, l2 = min(trials, key=lambda x: trials[x])
    choice = fit_learned_choice(fit, dataset.n_items, l2, form=form)
    test = features.subset(held[features.user])
    scores = score_choice(choice, test, base, plot)
    # ablations: the same layer without item biases (fitted temperature, positions, repeat and no-choice
    # terms: how much of the gain the item terms bring), and the form not chosen (how much the form does)
    plain = fit_learned_choice(fit, dataset.n_items, item_bias=False, form=form)
    scores["learned, no item bias"] = outcome_scores(learned_probabilities(plain, test), test.choice)
    for other in CHOICE_FORMS:
        if other != form:
            rival = fit_learned_choice(fit, dataset.n_items, l2, form=other)
            scores[f"learned, {other} form"] = outcome_scores(learned_probabilities(rival, test), test.choice)
    report = {"dataset": dataset.meta.name, "fingerprint": dataset.fingerprint,
              "settings": {"holdout": settings.holdout, "seed": settings.seed,
                           "history_len": settings.history_len, "form": settings.form},
              "fit_impressions": fit.n, "n_slots": choice.n_slots, "form": form, "item_l2": l2,
              "form_trials": {f: min(trials[f, x] for x in L2_GRID) for f in forms},
              "item_l2_trials": {str(x): trials[form, x] for x in L2_GRID},
              "dropped": dropped, "held_out": scores,
              "baseline": {"temperature": base.temperature, "no_choice_logit": base.no_choice_logit,
                           "position_decay": base.position_decay}}
    return replace(choice, report=report), scores


def on_catalogue_of(dataset: SequenceDataset, other: SequenceDataset
                    ) -> tuple[SequenceDataset, pl.DataFrame, dict[str, int]]:
    """``other``'s consumptions and impressions on ``dataset``'s item ids (matched by raw id; its own
    users), so a model trained on ``dataset`` can be scored on another log of the same catalogue (another
    logging policy's: a held-out policy). Events and shown slots of items ``dataset`` lacks are dropped
    and counted, and so are impressions whose click is one of them."""
    ids = dict(zip(dataset.items["raw_id"].to_list(), dataset.items["item"].to_list(), strict=True))
    theirs = other.items.sort("item")["raw_id"].to_list()
    mapping = np.array([0] + [ids.get(raw, 0) for raw in theirs], dtype=np.int32)

    def mapped(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(pl.Series("item", mapping[frame["item"].to_numpy()], dtype=pl.Int32))

    impressions, dropped = other.impressions, dict[str, int]()
    if impressions is None:
        raise InputError(f"dataset {other.meta.name!r} has no impression log")
    inter = mapped(other.interactions)
    dropped = {**dropped, "events of items not in the model's catalogue": int((inter["item"] == 0).sum())}
    inter = (inter.filter(pl.col("item") > 0).sort(["user", "position"])
             .with_columns(pl.int_range(pl.len()).over("user").cast(pl.Int32).alias("position")))
    moved = SequenceDataset.from_frames(inter, dataset.items, other.users, replace(
        other.meta, name=f"{other.meta.name} on {dataset.meta.name}'s catalogue"))
    imp = mapped(impressions)
    lost_click = imp.filter((pl.col("item") == 0) & (pl.col("clicked") == 1))["impression"]
    dropped["impressions whose click is not in the model's catalogue"] = lost_click.len()
    dropped["shown slots of items not in the model's catalogue"] = int((imp["item"] == 0).sum())
    before = imp["impression"].n_unique()
    imp = imp.filter(~pl.col("impression").is_in(lost_click.implode()), pl.col("item") > 0)
    dropped["impressions with no shown item in the model's catalogue"] = \
        before - lost_click.len() - imp["impression"].n_unique()
    return moved, imp, dropped


def score_other_log(model: Any, dataset: SequenceDataset, other: SequenceDataset,
                    calibration: Calibration | None, history_len: int = 50) -> dict[str, Any]:
    """The learned choice (fitted on ``dataset``'s impressions) and the calibrated baseline on *every*
    impression of ``other`` (another logging policy's log of the same catalogue, never fitted on)."""
    moved, impressions, dropped = on_catalogue_of(dataset, other)
    base = baseline_choice(calibration, dataset, history_len)
    features = impression_features(model, moved, impressions, (1.0, base.temperature), history_len)
    return {"dataset": other.meta.name, "dropped": {**dropped, **features.dropped},
            **score_choice(getattr(model, "learned_choice", None), features, base)}


def baseline_choice(calibration: Calibration | None, dataset: SequenceDataset, history_len: int = 50
                    ) -> ChoiceConfig:
    """The calibrated multinomial logit (the default choice when no calibration is given), with the
    repeat policy the simulator takes from the data."""
    repeat, window = data_repeat_rule(dataset, history_len)
    config = ChoiceConfig(repeat=repeat, repeat_window=window)
    if calibration is None:
        return config
    return replace(config, temperature=calibration.temperature, no_choice_logit=calibration.no_choice_logit)


def baseline_probabilities(features: ImpressionFeatures, base: ChoiceConfig) -> torch.Tensor:
    """``[I, K + 1]`` the calibrated multinomial logit's choice probabilities (the simulator's own
    formula: tempered log-lift utilities, the repeat policy, the no-choice utility, the position decay)."""
    lift = features.log_lift[base.temperature]
    # choice_utilities with "logit" utility and temperature 1 returns the given log-lift as it is, then
    # applies the repeat policy exactly as the simulator does.
    utility = choice_utilities(lift, features.repeated_within(base.repeat_window),
                               replace(base, utility="logit", temperature=1.0))
    return choice_probabilities(utility, features.shown, base.no_choice_logit, base.position_decay)


def learned_probabilities(choice: LearnedChoice, features: ImpressionFeatures) -> torch.Tensor:
    """``[I, K + 1]`` the learned choice's probabilities."""
    utility = choice.item_utilities(features.log_lift[1.0], features.repeated, features.items.clamp(min=1))
    return choice.probabilities(utility, features.shown)


def outcome_scores(probs: torch.Tensor, choice: torch.Tensor) -> dict[str, float]:
    """Log-likelihood per impression, click AUC, ECE of P(click), slot accuracy and rates."""
    p = probs.double()
    k = p.shape[1] - 1
    log_lik = torch.log(p.gather(1, choice[:, None])[:, 0].clamp(min=1e-30))
    click = (1.0 - p[:, k]).cpu().numpy()
    clicked = (choice < k).cpu().numpy()
    return {
        "impressions": int(p.shape[0]),
        "log_likelihood": float(log_lik.mean()),
        "click_auc": roc_auc(click, clicked),
        "click_ece": expected_calibration_error(click, clicked),
        "predicted_click_rate": float(click.mean()),
        "logged_click_rate": float(clicked.mean()),
        "slot_accuracy": float((p.argmax(1) == choice).double().mean()),
    }


def score_choice(choice: LearnedChoice | None, features: ImpressionFeatures, base: ChoiceConfig,
                 plot: str | Path | None = None) -> dict[str, Any]:
    """Both models (the learned one when given) on ``features``; a reliability PNG when ``plot``."""
    if features.n == 0:
        raise InputError("no held-out impression to score")
    probs = {"calibrated MNL": baseline_probabilities(features, base)}
    if choice is not None:
        probs["learned choice"] = learned_probabilities(choice, features)
    out: dict[str, Any] = {name: outcome_scores(p, features.choice) for name, p in probs.items()}
    if plot is not None:
        out["reliability_png"] = str(reliability_plot(probs, features.choice, plot))
    return out


def reliability_plot(probs: dict[str, torch.Tensor], choice: torch.Tensor, path: str | Path) -> Path:
    """Observed click frequency against predicted P(click) per bin, one curve per model (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    for name, p in probs.items():
        k = p.shape[1] - 1
        click = (1.0 - p[:, k]).double().cpu().numpy()
        mean_p, freq, counts = calibration_bins(click, (choice < k).cpu().numpy())
        used = counts > 0
        ece = expected_calibration_error(click, (choice < k).cpu().numpy())
        ax.plot(mean_p[used], freq[used], "o-", label=f"{name} (ECE {ece:.3f})")
    ax.set(xlabel="predicted P(a slot is clicked)", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1),
           title="held-out impressions")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=120)
    plt.close(fig)
    return target


def choice_table(scores: dict[str, Any]) -> str:
    """The held-out comparison as a Markdown table."""
    lines = ["| choice model | impressions | log-likelihood / impression | click AUC | click ECE | "
             "P(click) predicted / logged | slot accuracy |", "|---|---|---|---|---|---|---|"]
    for name, s in scores.items():
        if not isinstance(s, dict) or "log_likelihood" not in s:
            continue
        lines.append(f"| {name} | {s['impressions']} | {s['log_likelihood']:.4f} | {s['click_auc']:.3f} | "
                     f"{s['click_ece']:.3f} | {s['predicted_click_rate']:.3f} / "
                     f"{s['logged_click_rate']:.3f} | "
                     f"{s['slot_accuracy']:.3f} |")
    return "\n".join(lines)


def learned_beats_baseline(scores: dict[str, Any]) -> bool:
    """Whether the learned choice's held-out log-likelihood is above the calibrated baseline's."""
    learned, base = scores.get("learned choice"), scores.get("calibrated MNL")
    return bool(learned and base and learned["log_likelihood"] > base["log_likelihood"]
                and math.isfinite(learned["log_likelihood"]))
