"""The choice model and categorical sampling, batched and free of global randomness.

Kept apart from the core so tests can check the numbers by hand and so the calibration can evaluate
choice probabilities without stepping users.
"""

from __future__ import annotations

import math

import torch

from recsim_env.config import ChoiceConfig
from user_models.choice_model import LearnedChoice
from user_models.errors import InputError
from user_models.protocol import UserModel, UserState


def choice_utilities(
    item_logits: torch.Tensor,
    repeated: torch.Tensor,
    choice: ChoiceConfig,
    log_normaliser: torch.Tensor | None = None,
    n_items: int = 1,
) -> torch.Tensor:
    """The utility of each item in the multinomial logit, adjusted for repeats.

    ``choice.utility == "log_lift"`` (default): ``u = log(n_items * q)`` with ``q = softmax(logits /
    temperature)`` over the *whole catalogue*: the item's share of this user's (tempered) preference
    mass, relative to a uniform pick. A slate then pulls with the mass it holds (``sum exp(u) = n q(S)``,
    about ``k`` for a random slate of ``k`` items), whatever the level of the model's raw logits (which
    softmax training leaves arbitrary per user), so one no-choice utility means the same for every user.
    ``"logit"``: the raw ``logit / temperature`` (the level differs per user; kept for comparison).

    Args:
        item_logits: ``[B, m]`` the user model's logits of the items.
        repeated: ``[B, m]`` bool, True where the item is a repeat under the repeat policy (in the
            user's last ``choice.repeat_window`` consumptions).
        choice: temperature, utility kind and repeat policy.
        log_normaliser: ``[B, 1]`` ``logsumexp(catalogue_logits / temperature)`` (needed for ``log_lift``).
        n_items: catalogue size (the uniform reference of the lift).

    Returns:
        ``[B, m]`` float utilities; ``-inf`` for items that cannot be chosen (repeats under ``mask``).
    """
    utility = item_logits.float() / choice.temperature
    if choice.utility == "log_lift":
        if log_normaliser is None:
            raise ValueError("log_lift utilities need the catalogue's log normaliser")
        utility = utility - log_normaliser + math.log(n_items)
    return apply_repeat_policy(utility, repeated, choice)


def apply_repeat_policy(utility: torch.Tensor, repeated: torch.Tensor, choice: ChoiceConfig) -> torch.Tensor:
    """``utility`` with repeats penalised (``penalise``) or made unchoosable (``mask``, ``-inf``)."""
    if choice.repeat == "penalise":
        return utility - choice.repeat_penalty * repeated.float()
    if choice.repeat == "mask":
        return utility.masked_fill(repeated, float("-inf"))
    return utility


def learned_choice_of(model: UserModel, choice: ChoiceConfig) -> LearnedChoice | None:
    """The slate choice the simulator uses for ``model`` under ``choice.source``: the model's choice
    learned from impressions (``auto`` when it has one, ``learned`` always), or None for the calibrated
    multinomial logit (``calibrated``, or ``auto`` for a model without one).

    Raises:
        InputError: ``source="learned"`` for a model that has no learned choice.
    """
    learned = getattr(model, "learned_choice", None)
    if choice.source == "calibrated":
        return None
    if choice.source == "learned" and not isinstance(learned, LearnedChoice):
        raise InputError("choice source 'learned' but the user model has no choice learned from impressions; "
                         "run `recsim user-model fit-choice` on it, or use source 'auto' or 'calibrated'")
    return learned if isinstance(learned, LearnedChoice) else None


def learned_utilities(learned: LearnedChoice, item_logits: torch.Tensor, log_normaliser: torch.Tensor,
                      items: torch.Tensor, repeated: torch.Tensor, barred: torch.Tensor, choice: ChoiceConfig,
                      n_items: int) -> torch.Tensor:
    """``[B, m]`` the learned choice's utilities of ``items`` (``[B, m]``, ids >= 1) from their float
    logits ``item_logits`` (``[B, m]``) and the ``[B, 1]`` ``log_normaliser`` of the ``n_items``
    catalogue logits at temperature 1: log-lift, the learned terms (whose repeat flag, ``repeated``, is
    "in the history window", as it was fitted), then the repeat policy on ``barred`` (the repeats within
    ``choice.repeat_window``; the config's temperature and no-choice utility play no part)."""
    log_lift = item_logits - log_normaliser + math.log(n_items)  # log-softmax of the m items only
    return apply_repeat_policy(learned.item_utilities(log_lift, repeated, items), barred, choice)


def log_normaliser(catalogue: torch.Tensor, temperature: float) -> torch.Tensor:
    """``[B, 1]`` ``logsumexp`` of ``[B, n_items]`` catalogue logits divided by ``temperature``."""
    return torch.logsumexp(catalogue.float() / temperature, dim=1, keepdim=True)


def item_logits_and_log_normaliser(model: UserModel, state: UserState, items: torch.Tensor,
                                   temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, m]`` the float catalogue logits of ``items`` (``[B, m]``, ids >= 1) and the ``[B, 1]``
    :func:`log_normaliser` of the whole catalogue at ``temperature``: what a choice over the catalogue
    needs from the user model.

    Uses the model's ``item_logits_and_log_normaliser`` when it has one (a fast path outside the
    protocol, like ``all_item_logits``: the learned user model computes both in cache-sized row blocks,
    without a ``[B, n_items]`` tensor); otherwise reduces :func:`catalogue_logits`.
    """
    fast = getattr(model, "item_logits_and_log_normaliser", None)
    if fast is not None:
        picked, normaliser = fast(state, items, temperature)
        return picked, normaliser
    catalogue = catalogue_logits(model, state)
    return catalogue.gather(1, items - 1), log_normaliser(catalogue, temperature)


def choice_probabilities(utility: torch.Tensor, shown: torch.Tensor, no_choice_logit: float,
                         position_decay: float = 1.0) -> torch.Tensor:
    """Multinomial-logit choice over the shown slots plus "no choice", with examination by position.

    ``P(slot i) = e_i exp(u_i) / (sum_j e_j exp(u_j) + exp(no_choice_logit))`` over the shown slots,
    where ``e_i = position_decay ** i`` (slot 0 first) is the probability that slot ``i`` is examined
    relative to the top slot (1.0: every slot is seen alike).

    Args:
        utility: ``[B, k]`` from :func:`choice_utilities`.
        shown: ``[B, k]`` bool, False for empty slots (they can never be chosen).
        no_choice_logit: Utility of choosing nothing.
        position_decay: Examination decay per slot, in (0, 1].

    Returns:
        ``[B, k + 1]`` probabilities; column ``k`` is "no choice". Rows sum to 1.
    """
    if position_decay != 1.0:
        slots = torch.arange(utility.shape[1], device=utility.device, dtype=utility.dtype)
        utility = utility + slots * math.log(position_decay)
    utility = utility.masked_fill(~shown, float("-inf"))
    none = torch.full_like(utility[:, :1], no_choice_logit)
    return torch.softmax(torch.cat([utility, none], dim=1), dim=1)


def sample_categorical(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of ``probs`` (``[B, n]``, rows summing to 1) by inverse-CDF sampling.

    Draws exactly ``B`` uniforms from ``generator`` (never the global RNG), so a batch of one and a row
    of a larger batch consume randomness alike, and the same seed gives the same draws on CPU.
    """
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device, dtype=probs.dtype)
    return categorical_from_uniform(probs, u)


def categorical_from_uniform(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """:func:`sample_categorical` with its ``[B, 1]`` uniforms ``u`` drawn beforehand (a step that takes
    its random numbers as inputs compiles as one graph: ``torch.compile`` cannot trace a generator)."""
    cdf = probs.cumsum(dim=1)
    index = (cdf <= u * cdf[:, -1:]).sum(dim=1)
    # Guard against rounding past the last category, and never pick a zero-probability category.
    index = index.clamp_(max=probs.shape[1] - 1)
    return torch.where(probs.gather(1, index[:, None])[:, 0] > 0, index, probs.argmax(dim=1))


def catalogue_logits(model: UserModel, state: UserState) -> torch.Tensor:
    """``[B, n_items]`` the model's logits for every item ``1..n_items``.

    Uses the model's ``all_item_logits`` (``[B, n_items + 1]``, column 0 = padding) when it has one, a
    full-catalogue fast path outside the protocol; otherwise asks :meth:`UserModel.item_logits`.
    """
    fast = getattr(model, "all_item_logits", None)
    if fast is not None:
        return fast(state)[:, 1:].float()
    items = torch.arange(1, model.n_items + 1, device=model.device).expand(state.batch_size, -1)
    return model.item_logits(state, items).float()
