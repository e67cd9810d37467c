"""The choice model and categorical sampling, batched and free of global randomness.

Kept apart from the core so tests can check the numbers by hand and so the calibration can evaluate
choice probabilities without stepping users.
"""

from __future__ import annotations

import torch


def choice_utilities(
    logits: torch.Tensor,
    repeated: torch.Tensor,
    temperature: float,
    repeat: str,
    repeat_penalty: float,
) -> torch.Tensor:
    """The utility of each item in the multinomial logit: ``logit / temperature`` adjusted for repeats.

    Args:
        logits: ``[B, m]`` the user model's item logits.
        repeated: ``[B, m]`` bool, True where the item is already in the user's recent history.
        temperature: Divides the logits.
        repeat: ``allow``, ``penalise`` or ``mask`` (see :class:`~recsim_env.config.ChoiceConfig`).
        repeat_penalty: Subtracted from a repeat's utility under ``penalise``.

    Returns:
        ``[B, m]`` float utilities; ``-inf`` for items that cannot be chosen (repeats under ``mask``).
    """
    utility = logits.float() / temperature
    if repeat == "penalise":
        utility = utility - repeat_penalty * repeated.float()
    elif repeat == "mask":
        utility = utility.masked_fill(repeated, float("-inf"))
    return utility


def choice_probabilities(utility: torch.Tensor, shown: torch.Tensor, no_choice_logit: float) -> torch.Tensor:
    """Multinomial-logit choice over the shown slots plus "no choice".

    ``P(slot i) = exp(u_i) / (sum_j exp(u_j) + exp(no_choice_logit))`` over the shown slots.

    Args:
        utility: ``[B, k]`` from :func:`choice_utilities`.
        shown: ``[B, k]`` bool, False for empty slots (they can never be chosen).
        no_choice_logit: Utility of choosing nothing.

    Returns:
        ``[B, k + 1]`` probabilities; column ``k`` is "no choice". Rows sum to 1.
    """
    utility = utility.masked_fill(~shown, float("-inf"))
    none = torch.full_like(utility[:, :1], no_choice_logit)
    return torch.softmax(torch.cat([utility, none], dim=1), dim=1)


def sample_categorical(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of ``probs`` (``[B, n]``, rows summing to 1) by inverse-CDF sampling.

    Draws exactly ``B`` uniforms from ``generator`` (never the global RNG), so a batch of one and a row
    of a larger batch consume randomness alike, and the same seed gives the same draws on CPU.
    """
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device, dtype=probs.dtype)
    cdf = probs.cumsum(dim=1)
    index = (cdf <= u * cdf[:, -1:]).sum(dim=1)
    # Guard against rounding past the last category, and never pick a zero-probability category.
    index = index.clamp_(max=probs.shape[1] - 1)
    return torch.where(probs.gather(1, index[:, None])[:, 0] > 0, index, probs.argmax(dim=1))
