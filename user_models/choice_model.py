"""A slate choice model learned from impression logs: P(each shown slot) and P(no choice).

Consumption logs only show what was picked; impression logs also show what was shown and ignored, so
the no-choice rate, the position effects and the pull of each item given that it was shown can be
*fitted* instead of calibrated. The model is a multinomial logit over the shown slots plus "no choice",
on top of the user model's normalised preferences (the design of the simulator's calibrated choice,
:mod:`recsim_env.choice`, with its hand-set parts made free parameters):

``u(slot s, item j) = pref_weight * log_lift_j + repeat_weight * [j repeated] + item_bias_j +
position_bias_s`` and, in one of two forms,

- ``form="mnl"``, a multinomial logit: ``P(slot s) = exp(u_s) / (sum_t exp(u_t) + exp(no_choice))``;
- ``form="cascade"``, the cascade click model of web search (Craswell et al., 2008): the user scans the
  slate top-down and takes slot ``s`` with probability ``a_s = sigmoid(u_s - no_choice)`` if nothing above
  was taken, so ``P(slot s) = a_s prod_{t < s} (1 - a_t)`` and ``P(no choice) = prod_t (1 - a_t)``,

where ``log_lift_j = log(n_items * softmax(logits)_j)`` is the item's share of the user model's
next-item distribution over the whole catalogue (temperature 1: ``pref_weight`` plays the inverse
temperature) and ``position_bias_0 = 0`` (the utilities are shift-invariant together with
``no_choice``). ``item_bias`` corrects what next-item training cannot tell apart: an item consumed often
because a logging policy showed it often, from an item picked whenever it is shown; it is L2-penalised
toward 0, so rarely shown items keep the user model's view.

Why a layer over the preferences rather than a new head on the Transformer's state: it keeps the
simulator's choice semantics (one normalised utility per item, whatever the user model), needs no
retraining of the Transformer, has a few hundred parameters to fit from a few thousand slates, and its
baseline (the calibrated multinomial logit) is the special case ``item_bias = 0``, ``position_bias =
s log(position_decay)``, ``repeat_weight = 0`` of the ``mnl`` form. Why two forms: they differ in what
a slate's other items do to a slot. In the logit every shown item competes with every other; in the
cascade only the items above a slot matter, and a slot's pull does not shrink as the slate grows. A logit
fitted on one logger's slates of 10 learns steep position terms that stand in for "the good items above
were not taken", and carries them to slates the logger never showed (random ones, a greedy ranking, 5
slots). ``recsim user-model fit-choice --form`` picks one (default ``mnl``; ``auto``: the one with the
higher log-likelihood on fit users held out of the fit; see
:class:`~recsim_env.offline.choice_eval.ChoiceFitSettings` for why that is not the default).
``recsim user-model eval-choice`` measures it against that baseline on held-out users' impressions
(log-likelihood, AUC of click vs no click, reliability).

Saved next to the user-model checkpoint as ``choice.safetensors`` and ``choice.json`` (format version,
the sha256 of the ``model.safetensors`` it was fitted on, and the fit report;
:func:`user_models.checkpoint.save_learned_choice`). A checkpoint without them has no learned choice and
the simulator uses the calibrated one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from user_models.data.artifact import IMPRESSIONS_SCHEMA
from user_models.errors import DatasetError, InputError
from user_models.protocol import History

CHOICE_FORMS = ("mnl", "cascade")
"""The learned choice's forms: multinomial logit, cascade (see the module docstring)."""


@dataclass(frozen=True)
class LearnedChoice:
    """The fitted parameters (tensors on one device); see the module docstring for the utility.

    Attributes:
        pref_weight: ``[]`` weight of the log-lift (an inverse temperature).
        repeat_weight: ``[]`` utility change of an item already in the user's recent history.
        item_bias: ``[n_items + 1]`` per-item utility correction (index 0: padding, 0).
        position_bias: ``[n_slots]`` utility of being shown in slot ``s`` (slot 0: 0). Slates longer than
            ``n_slots`` reuse the last slot's bias (the logs never showed those slots).
        no_choice: ``[]`` utility of choosing nothing (``cascade``: the threshold a slot's utility is
            measured against).
        form: ``"mnl"`` (multinomial logit) or ``"cascade"`` (top-down scan); see the module docstring.
        report: how it was fitted (free-form, for people).
    """

    pref_weight: torch.Tensor
    repeat_weight: torch.Tensor
    item_bias: torch.Tensor
    position_bias: torch.Tensor
    no_choice: torch.Tensor
    form: str = "mnl"
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.form not in CHOICE_FORMS:
            raise InputError(f"learned choice form must be one of {CHOICE_FORMS}, got {self.form!r}")

    @property
    def n_items(self) -> int:
        return int(self.item_bias.shape[0]) - 1

    @property
    def n_slots(self) -> int:
        return int(self.position_bias.shape[0])

    @property
    def device(self) -> torch.device:
        return self.item_bias.device

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], form: str = "mnl",
                     report: dict[str, Any] | None = None) -> LearnedChoice:
        """The choice of :meth:`tensors`' names (what ``choice.safetensors`` holds)."""
        return cls(tensors["pref_weight"], tensors["repeat_weight"], tensors["item_bias"],
                   tensors["position_bias"], tensors["no_choice"], form, dict(report or {}))

    def to(self, device: torch.device | str) -> LearnedChoice:
        return LearnedChoice.from_tensors({k: t.to(device) for k, t in self.tensors().items()}, self.form,
                                          self.report)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"pref_weight": self.pref_weight, "repeat_weight": self.repeat_weight,
                "item_bias": self.item_bias, "position_bias": self.position_bias, "no_choice": self.no_choice}

    def item_utilities(self, log_lift: torch.Tensor, repeated: torch.Tensor, items: torch.Tensor
                       ) -> torch.Tensor:
        """``[B, m]`` slot-free utilities of ``items`` (``[B, m]``, ids >= 1) from their log-lifts."""
        return (self.pref_weight * log_lift.float() + self.repeat_weight * repeated.float()
                + self.item_bias[items])

    def slot_bias(self, k: int) -> torch.Tensor:
        """``[k]`` position bias of slots ``0..k-1`` (the last learned slot's beyond ``n_slots``)."""
        index = torch.arange(k, device=self.device).clamp(max=self.n_slots - 1)
        return self.position_bias[index]

    def probabilities(self, utility: torch.Tensor, shown: torch.Tensor) -> torch.Tensor:
        """``[B, k + 1]`` choice probabilities of the ``[B, k]`` slot-free ``utility`` (from
        :meth:`item_utilities`) over the shown slots (``shown`` False: empty, never chosen); the last
        column is "no choice"."""
        u = (utility + self.slot_bias(utility.shape[1])[None, :]).masked_fill(~shown, float("-inf"))
        none = self.no_choice.expand(u.shape[0], 1).to(u.dtype)
        if self.form == "mnl":
            return torch.softmax(torch.cat([u, none], dim=1), dim=1)
        margin = u - none  # -inf on empty slots: never taken, and the scan passes them by
        passed = torch.cumsum(F.logsigmoid(-margin), dim=1)  # log P(slots 0..s all passed by)
        before = torch.cat([torch.zeros_like(passed[:, :1]), passed[:, :-1]], dim=1)
        return torch.cat([torch.exp(F.logsigmoid(margin) + before), torch.exp(passed[:, -1:])], dim=1)


# --- impressions as model inputs ---------------------------------------------------------------------
@dataclass(frozen=True)
class ImpressionFeatures:
    """Every kept impression as fixed-width slates, with the user model's view of each shown item.

    Attributes:
        user: ``[I]`` user index of each impression.
        items: ``[I, K]`` item shown in each slot (0: nothing shown there, or an item outside the
            catalogue: counted in ``dropped``).
        log_lift: ``{temperature: [I, K]}`` ``log(n_items * softmax(logits / t))`` of the shown items at
            the user's state just before the impression.
        repeat_lag: ``[I, K]`` int64, how many consumptions back the user last had the shown item (1: the
            latest one), 0 when not among their last ``history_len`` consumptions.
        choice: ``[I]`` the clicked slot, ``K`` for none.
        dropped: what was left out and why (counts).
        behavior: ``[I]`` behavior id of the click (0: none, or not logged).
        propensity: ``[I, K]`` the logging policy's probability of each shown slot (NaN: not logged or
            nothing shown).
    """

    user: np.ndarray
    items: torch.Tensor
    log_lift: dict[float, torch.Tensor]
    repeat_lag: torch.Tensor
    choice: torch.Tensor
    dropped: dict[str, int]
    behavior: np.ndarray | None = None
    propensity: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.items.shape[0])

    @property
    def shown(self) -> torch.Tensor:
        return self.items > 0

    @property
    def repeated(self) -> torch.Tensor:
        """``[I, K]`` bool, the shown item is among the user's last ``history_len`` consumptions."""
        return self.repeat_lag > 0

    def repeated_within(self, window: int | None) -> torch.Tensor:
        """``[I, K]`` bool, the shown item is among the user's last ``window`` consumptions (None: the
        whole ``history_len``): what a repeat rule with that window sees."""
        return self.repeated if window is None else self.repeated & (self.repeat_lag <= window)

    def subset(self, keep: np.ndarray) -> ImpressionFeatures:
        index = torch.as_tensor(np.flatnonzero(keep), device=self.items.device)
        return ImpressionFeatures(self.user[keep], self.items[index],
                                  {t: v[index] for t, v in self.log_lift.items()}, self.repeat_lag[index],
                                  self.choice[index], self.dropped,
                                  None if self.behavior is None else self.behavior[keep],
                                  None if self.propensity is None else self.propensity[keep])


def check_impressions(impressions: pl.DataFrame, n_users: int, n_items: int, source: str) -> None:
    """Raise :class:`DatasetError` unless ``impressions`` follows :data:`IMPRESSIONS_SCHEMA` with ids in
    range and at most one click per impression (naming the column, row and value)."""
    for name, dtype in IMPRESSIONS_SCHEMA.items():
        if name not in impressions.columns:
            raise DatasetError(f"{source}: impressions have no column {name!r}")
        if impressions[name].dtype != dtype:
            raise DatasetError(f"{source}: impressions column {name!r} is {impressions[name].dtype}, "
                               f"expected {dtype}")
    ranges = (("user", 0, n_users - 1), ("item", 1, n_items), ("clicked", 0, 1), ("slot", 0, 10**4))
    for name, lo, hi in ranges:
        col = impressions[name]
        bad = ((col < lo) | (col > hi) | col.is_null()).arg_true()
        if len(bad):
            row = int(bad[0])
            raise DatasetError(f"{source}: impressions row {row} column {name!r} value {col[row]!r} is "
                               f"outside [{lo}, {hi}]")
    clicks = (impressions.group_by("impression").agg(pl.col("clicked").sum().alias("n"))
              .filter(pl.col("n") > 1))
    if clicks.height:
        raise DatasetError(f"{source}: impression {clicks['impression'][0]} has {clicks['n'][0]} clicked "
                           "slots; a slate has at most one click")


def impression_features(
    model: Any, dataset: Any, impressions: pl.DataFrame, temperatures: tuple[float, ...] = (1.0,),
    history_len: int = 50, batch_size: int = 512,
    on_batch: Callable[[np.ndarray, torch.Tensor, torch.Tensor, Any, torch.Tensor], None] | None = None,
) -> ImpressionFeatures:
    """The inputs of the choice model for every impression of ``impressions`` (the contract's table).

    The user's state before an impression is the user model's encoding of the user's consumptions with
    an earlier timestamp (the last ``model.config.max_len`` of them, as the simulator holds them).
    Impressions are left out, and counted, when they cannot be placed in the history (no timestamp)
    or come before the user's first consumption (the simulator never starts a user from nothing).

    Args:
        model: a :class:`~user_models.transformer.UserTransformer` (its ``encode`` and
            ``all_item_logits``).
        dataset: the :class:`~user_models.data.artifact.SequenceDataset` it was trained on.
        impressions: one row per (impression, slot), :data:`IMPRESSIONS_SCHEMA`.
        temperatures: the temperatures to compute log-lifts at (1.0 for the learned choice; the
            calibrated one's for the baseline).
        history_len: window of the repeat flag (the simulator's ``history_len``).
        batch_size: users' states encoded per batch.
        on_batch: called per batch with the kept impressions' row indices ``[b]``, the index of each
            one's state in the batch (``[b]`` tensor), the states' ``[s, n_items]`` catalogue logits,
            the model's state of those ``s`` users and the impressions' ``[b, K]`` shown items, for
            callers that need more than the shown items' features (off-policy evaluation).
    """
    check_impressions(impressions, dataset.n_users, dataset.n_items, dataset.meta.name)
    dropped: dict[str, int] = {}
    slates = (impressions.sort(["impression", "slot"])
              .group_by("impression", maintain_order=True)
              .agg(pl.col("user").first(), pl.col("timestamp").first(), pl.col("slot"), pl.col("item"),
                   pl.col("clicked"), pl.col("behavior"), pl.col("propensity")))
    no_time = slates["timestamp"].is_null()
    dropped["no timestamp"] = int(no_time.sum())
    slates = slates.filter(~no_time)
    width = int(impressions["slot"].to_numpy().max()) + 1 if impressions.height else 1
    seqs = dataset.sequences
    if seqs.timestamps is None:
        raise DatasetError(f"{dataset.meta.name}: interactions have no timestamps; impressions cannot be "
                           "placed in the users' histories")
    offsets = seqs.offsets.astype(np.int64)
    user = slates["user"].to_numpy().astype(np.int64)
    before = consumptions_before(seqs, user, slates["timestamp"].to_numpy().astype(np.int64))
    cold = before <= 0
    dropped["before the first consumption"] = int(cold.sum())
    keep = ~cold
    user, before, slates = user[keep], before[keep], slates.filter(pl.Series(keep))
    n = len(user)
    items = np.zeros((n, width), dtype=np.int64)
    choice = np.full(n, width, dtype=np.int64)
    behavior = np.zeros(n, dtype=np.int64)
    propensity = np.full((n, width), np.nan)
    if n:
        row = np.repeat(np.arange(n), slates["slot"].list.len().to_numpy())
        slot = slates["slot"].explode().to_numpy().astype(np.int64)
        items[row, slot] = slates["item"].explode().to_numpy()
        clicked = slates["clicked"].explode().to_numpy().astype(bool)
        choice[row[clicked]] = slot[clicked]
        logged = slates["behavior"].explode().fill_null(0).to_numpy().astype(np.int64)
        behavior[row[clicked]] = logged[clicked]
        propensity[row, slot] = slates["propensity"].explode().fill_null(np.nan).to_numpy()
    dev = model.device
    max_len = int(model.config.max_len)
    pairs, inverse = np.unique(np.stack([user, before], 1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    lifts = {t: torch.zeros(n, width, device=dev) for t in temperatures}
    repeat_lag = torch.zeros(n, width, dtype=torch.int64, device=dev)
    log_n = math.log(dataset.n_items)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(pairs) + 1))
    for lo in range(0, len(pairs), batch_size):
        chunk = pairs[lo:lo + batch_size]
        hist = context_histories(seqs, chunk[:, 0], chunk[:, 1], max_len)
        rep_len = np.minimum(chunk[:, 1], history_len)
        rep_start = offsets[chunk[:, 0]] + chunk[:, 1] - rep_len
        rep_pos = np.arange(max(history_len, 1))[None, :]
        rep_valid = rep_pos < rep_len[:, None]
        recent = np.where(rep_valid, seqs.items[np.where(rep_valid, rep_start[:, None] + rep_pos, 0)], 0)
        with torch.no_grad():
            state = model.encode(hist.to(dev))
            logits = model.all_item_logits(state)[:, 1:].float()
        rows = order[bounds[lo]:bounds[min(lo + batch_size, len(pairs))]]
        local = torch.as_tensor(inverse[rows] - lo, device=dev)
        shown = torch.as_tensor(items[rows], device=dev)
        safe = shown.clamp(min=1) - 1
        for t in temperatures:
            log_q = torch.log_softmax(logits / t, dim=1)
            lifts[t][torch.as_tensor(rows, device=dev)] = log_q[local[:, None], safe] + log_n
        recent_t = torch.as_tensor(recent.astype(np.int64), device=dev)[local]
        lag_of = torch.as_tensor(rep_len[:, None] - rep_pos, device=dev)[local]  # [b, H]; <= 0: padding
        hit = ((shown[:, :, None] == recent_t[:, None, :]) & (recent_t[:, None, :] > 0)
               & (shown[:, :, None] > 0))
        nearest = torch.where(hit, lag_of[:, None, :], history_len + 1).amin(-1)
        repeat_lag[torch.as_tensor(rows, device=dev)] = torch.where(hit.any(-1), nearest, 0)
        if on_batch is not None:
            on_batch(rows, local, logits, state, shown)
    return ImpressionFeatures(user, torch.as_tensor(items, device=dev), lifts, repeat_lag,
                              torch.as_tensor(choice, device=dev), dropped, behavior, propensity)


def consumptions_before(seqs: Any, users: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """``[n]`` how many of each user's consumptions (``seqs``: the dataset's sequences, with timestamps)
    have a timestamp strictly before ``timestamps`` (``users``, ``timestamps``: ``[n]`` int64)."""
    offsets = seqs.offsets.astype(np.int64)
    owner = np.repeat(np.arange(seqs.n_users, dtype=np.int64), np.diff(offsets))
    shift = np.int64(1) << 33
    first = int(seqs.timestamps.min()) if len(seqs.timestamps) else 0
    keys = owner * shift + (seqs.timestamps.astype(np.int64) - first)
    query = users * shift + (timestamps - first)
    return np.searchsorted(keys, query, side="left") - offsets[users]


def context_histories(seqs: Any, users: np.ndarray, counts: np.ndarray, max_len: int) -> History:
    """The last ``max_len`` of each user's first ``counts`` consumptions (``[n]`` each; ``seqs``: the
    dataset's :class:`~user_models.data.artifact.Sequences` with timestamps), as the simulator holds
    them: gaps in seconds, -1 before each user's first event."""
    offsets = seqs.offsets.astype(np.int64)
    length = np.minimum(counts, max_len)
    start = offsets[users] + counts - length
    pos = np.arange(max(max_len, 1))[None, :]
    valid = pos < length[:, None]
    index = np.where(valid, start[:, None] + pos, 0)
    previous = np.where(index > offsets[users][:, None], index - 1, index)
    stamps = seqs.timestamps
    gaps = np.where(index > offsets[users][:, None], (stamps[index] - stamps[previous]), -1.0)
    return History(torch.as_tensor(np.where(valid, seqs.items[index], 0).astype(np.int64)),
                   torch.as_tensor(np.where(valid, seqs.behaviors[index], 0).astype(np.int64)),
                   torch.as_tensor(np.where(valid, gaps, -1.0).astype(np.float32)),
                   torch.as_tensor(length.astype(np.int64)), torch.as_tensor(users.astype(np.int64)))


def end_probs_after(model: Any, dataset: Any, users: np.ndarray, counts: np.ndarray,
                    batch_size: int = 512) -> np.ndarray:
    """``[n]`` the user model's session-end probability after each user's first ``counts`` consumptions
    (``users``, ``counts``: ``[n]``; a count of 0 is the state of a user with no history)."""
    seqs = dataset.sequences
    pairs, inverse = np.unique(np.stack([users, counts], 1), axis=0, return_inverse=True)
    out = np.empty(len(pairs), dtype=np.float64)
    # the consumptions the model reads: a Transformer's context length, else the whole history
    context = int(getattr(getattr(model, "config", None), "max_len", 0) or max(int(seqs.lengths.max()), 1))
    for lo in range(0, len(pairs), batch_size):
        chunk = pairs[lo:lo + batch_size]
        hist = context_histories(seqs, chunk[:, 0], chunk[:, 1], context)
        with torch.no_grad():
            state = model.encode(hist.to(model.device))
            out[lo:lo + len(chunk)] = model.end_prob(state).double().cpu().numpy()
    return out[inverse.reshape(-1)]


def held_out_users(n_users: int, fraction: float, seed: int) -> np.ndarray:
    """``[n_users]`` bool: a fixed random ``fraction`` of users whose impressions are held out."""
    if not 0 < fraction < 1:
        raise InputError(f"held-out fraction must be in (0, 1), got {fraction}")
    return np.random.default_rng([seed, 0xC401CE]).random(n_users) < fraction


# --- fitting ---------------------------------------------------------------------------------------
def _nll(choice: LearnedChoice, f: ImpressionFeatures) -> torch.Tensor:
    """``[I]`` negative log-likelihood of each impression's logged outcome."""
    utility = choice.item_utilities(f.log_lift[1.0], f.repeated, f.items.clamp(min=1))
    log_p = torch.log(choice.probabilities(utility, f.shown).clamp(min=1e-30))
    return -log_p.gather(1, f.choice[:, None])[:, 0]


def impression_nll(choice: LearnedChoice, features: ImpressionFeatures) -> float:
    """Mean negative log-likelihood per impression (nats)."""
    with torch.no_grad():
        return float(_nll(choice, features).mean())


def fit_learned_choice(features: ImpressionFeatures, n_items: int, item_l2: float = 0.5,
                       item_bias: bool = True, iterations: int = 200, form: str = "mnl") -> LearnedChoice:
    """Maximum-likelihood fit (L-BFGS, full batch) of the choice of ``form`` on ``features``.

    The loss is the mean NLL per impression plus ``item_l2 * sum(item_bias ** 2) / I`` (a Gaussian prior
    of variance ``1 / (2 item_l2)`` on each item bias: items seldom shown keep the user model's view);
    ``item_bias=False`` fits the position, preference, repeat and no-choice terms only.
    """
    dev = features.items.device
    k = int(features.items.shape[1])
    params = {"pref_weight": torch.ones((), device=dev), "repeat_weight": torch.zeros((), device=dev),
              "item_bias": torch.zeros(n_items + 1, device=dev),
              "position_free": torch.zeros(k - 1, device=dev),
              "no_choice": torch.zeros((), device=dev)}
    trainable = [v.requires_grad_() for name, v in params.items() if item_bias or name != "item_bias"]
    mask = torch.ones(n_items + 1, device=dev)
    mask[0] = 0.0
    optimizer = torch.optim.LBFGS(trainable, lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-7, tolerance_change=1e-10)

    def build() -> LearnedChoice:
        return LearnedChoice(params["pref_weight"], params["repeat_weight"], params["item_bias"] * mask,
                             torch.cat([torch.zeros(1, device=dev), params["position_free"]]),
                             params["no_choice"], form)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _nll(build(), features).mean()
        if item_bias:
            loss = loss + item_l2 * (params["item_bias"] * mask).pow(2).sum() / max(features.n, 1)
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = build()
    return LearnedChoice.from_tensors({k: t.detach().clone() for k, t in fitted.tensors().items()}, form)
