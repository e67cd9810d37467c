"""A slate policy for MaskablePPO in the candidates mode: score every candidate, rank without replacement.

SB3's default policy for ``MultiDiscrete([C] * k)`` draws each of the k slots independently from its own
C logits, computed by one MLP over all candidates' features at once. For a recommender that wastes both
data and slots: the network must learn the same "how good is this item for this user" function C times
over (once per input position), and independent slots pick the same candidate twice (the env shows
nothing in a repeated slot; a deterministic policy whose slots agree shows a slate of one item).

:class:`SlateRankingPolicy` instead

- scores each candidate with one small network shared by all candidates (so what it learns about an
  item transfers to every position the item appears in), from the user vector and the candidate's
  embedding made by :class:`~agents.features.HistoryExtractor` and the candidate's list position;
- draws the slate from the Plackett-Luce distribution over those scores (a softmax, then a softmax
  over the rest, k times), i.e. k *distinct* candidates; the deterministic action is the top k.

The critic is SB3's usual MLP on the same features. Only ``maskable_ppo`` uses it (its masks are
applied to the candidates before ranking).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.distributions import MaskableDistribution, MaybeMasks
from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy
from torch import nn

from agents.features import HistoryExtractor

MASKED_LOGIT = -1e8
"""Logit of a masked candidate (as sb3-contrib's masked categorical): never drawn while others remain."""
REMOVED_LOGIT = -1e9
"""Logit of a candidate already in the slate when the next position is drawn (probability exactly 0)."""


class PlackettLuceDistribution(MaskableDistribution):
    """Ordered draws of ``k`` distinct positions out of ``C`` with Plackett-Luce probabilities.

    ``P(a_1..a_k) = prod_j exp(s[a_j]) / sum_{c not in a_<j} exp(s[c])`` for scores ``s`` ([B, C]).
    Sampling uses the Gumbel-top-k trick (the top k of ``s + Gumbel noise``, in order, is exactly such a
    draw). The exact entropy sums over all C!/(C-k)! slates, so :meth:`entropy` returns the sum of the
    per-position entropies along the most likely slate, a standard tractable stand-in (equal to the
    exact entropy for k = 1). Masks use sb3-contrib's MaskablePPO layout (``[B, k * C]``, one identical
    block per slot) or ``[B, C]``.
    """

    def __init__(self, n_candidates: int, slate_size: int) -> None:
        super().__init__()
        self.n_candidates = n_candidates
        self.slate_size = slate_size
        self._scores: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None

    def proba_distribution_net(self, *args: Any, **kwargs: Any) -> nn.Module:
        raise NotImplementedError("SlateRankingPolicy builds its own candidate scorer")

    def proba_distribution(self, action_logits: torch.Tensor) -> PlackettLuceDistribution:
        self._scores = action_logits.reshape(-1, self.n_candidates)
        self.logits = self._scores
        return self

    def apply_masking(self, masks: MaybeMasks) -> None:
        assert self._scores is not None, "proba_distribution first"
        if masks is None:
            self.logits = self._scores
            return
        allowed = torch.as_tensor(masks, dtype=torch.bool, device=self._scores.device)
        allowed = allowed.reshape(len(self._scores), -1)[:, : self.n_candidates]
        self.logits = torch.where(allowed, self._scores, torch.full_like(self._scores, MASKED_LOGIT))

    def _remaining_logits(self, actions: torch.Tensor) -> torch.Tensor:
        """``[B, k, C]``: before draw j, the logits with the candidates of draws ``< j`` removed."""
        assert self.logits is not None
        taken = nn.functional.one_hot(actions, self.n_candidates)
        taken_before = (taken.cumsum(dim=1) - taken) > 0
        # A finite floor, not -inf: p * log p of a removed candidate must have a zero (not NaN) gradient.
        return self.logits.unsqueeze(1).masked_fill(taken_before, REMOVED_LOGIT)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        actions = actions.long().reshape(-1, self.slate_size)
        remaining = self._remaining_logits(actions)
        chosen = remaining.gather(2, actions.unsqueeze(2)).squeeze(2)
        return (chosen - remaining.logsumexp(dim=2)).sum(dim=1)

    def entropy(self) -> torch.Tensor:
        remaining = self._remaining_logits(self.mode())
        log_p = remaining.log_softmax(dim=2)
        return -(log_p.exp() * log_p).sum(dim=(1, 2))

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A Gumbel-top-k draw; ``generator``: the source of the noise (SB3 calls it without: the global
        generator, which SB3 seeds)."""
        assert self.logits is not None
        uniform = torch.rand(self.logits.shape, generator=generator, device=self.logits.device,
                             dtype=self.logits.dtype).clamp_(min=1e-20, max=1.0 - 1e-7)
        gumbel = -torch.log(-torch.log(uniform))
        return (self.logits + gumbel).topk(self.slate_size, dim=1).indices

    def mode(self) -> torch.Tensor:
        assert self.logits is not None
        return self.logits.topk(self.slate_size, dim=1).indices

    def actions_from_params(self, action_logits: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        self.proba_distribution(action_logits)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(self, action_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actions = self.actions_from_params(action_logits)
        return actions, self.log_prob(actions)


class CandidateFeatures(Protocol):
    """A features extractor whose output holds a user vector and one embedding per candidate
    (:class:`~agents.features.HistoryExtractor`, :class:`~agents.torch_ppo.PooledHistoryEncoder`)."""

    user_dim: int
    item_dim: int
    n_candidates: int

    def split(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The user vectors ``[B, user_dim]`` and candidate embeddings ``[B, C, item_dim]``."""
        ...


class CandidateScorer(nn.Module):
    """One score per candidate, by one network shared by all candidates.

    Its input per candidate: the user vector, the candidate's embedding, their elementwise product, and
    an embedding of the candidate's position in the list (the env lists candidates by retrieval source
    and rank, which says how close the item is to the user's recent history). Reads the feature layout
    of a :class:`CandidateFeatures` extractor (``extractor.split``).
    """

    def __init__(self, extractor: CandidateFeatures, hidden: int = 64, position_dim: int = 8) -> None:
        super().__init__()
        self.extractor_split = extractor.split
        self.user_to_item = nn.Linear(extractor.user_dim, extractor.item_dim)
        self.position = nn.Parameter(torch.zeros(extractor.n_candidates, position_dim))
        nn.init.normal_(self.position, std=0.1)
        width = extractor.user_dim + 2 * extractor.item_dim + position_dim
        self.hidden = nn.Sequential(nn.Linear(width, hidden), nn.Tanh())
        self.out = nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        user, candidates = self.extractor_split(features)
        # The hidden layer of cat([user, candidate, interaction, position]), computed by parts: the user's
        # part once per row and the position's once per slot, not once per candidate (the same function
        # and parameters; about half the multiply-adds of the candidate scores).
        layer = self.hidden[0]
        assert isinstance(layer, nn.Linear)
        u, d = user.shape[1], candidates.shape[2]
        # tanh(z) = 2 sigmoid(2z) - 1: the same function (the hidden layer's nn.Tanh), but torch's CPU
        # sigmoid (and its backward) costs a sixth of its tanh on the [B * C, hidden] layer. The factors go
        # into the (small) weights, not onto that layer, so they cost no pass over it, forward or backward.
        weight, bias = 2.0 * layer.weight, 2.0 * layer.bias
        out_weight, out_bias = 2.0 * self.out.weight, self.out.bias - self.out.weight.sum(dim=1)
        w_user, w_items, w_position = weight.split([u, 2 * d, self.position.shape[1]], dim=1)
        interaction = self.user_to_item(user).unsqueeze(1) * candidates
        per_row = nn.functional.linear(user, w_user, bias).unsqueeze(1)
        per_slot = nn.functional.linear(self.position, w_position).unsqueeze(0)
        # The [B * C, hidden] layer is the biggest tensor of a PPO update: one broadcast add for the row and
        # slot parts, the candidates' part added inside the matrix product (addmm), not two more passes.
        n, c = candidates.shape[:2]
        hidden = torch.sigmoid(torch.addmm((per_row + per_slot).flatten(0, 1),
                                           torch.cat([candidates, interaction], dim=2).flatten(0, 1),
                                           w_items.t()))
        return nn.functional.linear(hidden, out_weight, out_bias).view(n, c)


class SlateRankingPolicy(MaskableMultiInputActorCriticPolicy):
    """MaskablePPO policy: a shared candidate scorer and a Plackett-Luce slate (see the module docstring).

    Takes MaskablePPO's usual ``policy_kwargs``; ``net_arch`` sizes the critic only (a list, or a dict
    whose ``vf`` entry is used), because the actor is the candidate scorer. The features extractor must be
    a :class:`~agents.features.HistoryExtractor` and the action space ``MultiDiscrete([C] * k)`` or
    ``Discrete(C)`` (the candidates mode).
    """

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Space[Any], lr_schedule: Any,
                 net_arch: list[int] | dict[str, list[int]] | None = None, **kwargs: Any) -> None:
        if isinstance(action_space, spaces.Discrete):
            self._slate = (int(action_space.n), 1)
        elif isinstance(action_space, spaces.MultiDiscrete) and len(set(action_space.nvec.tolist())) == 1:
            self._slate = (int(action_space.nvec[0]), len(action_space.nvec))
        else:
            raise ValueError(f"SlateRankingPolicy needs the candidates action mode, got {action_space}")
        critic = net_arch.get("vf", [64, 64]) if isinstance(net_arch, dict) else (net_arch or [64, 64])
        actor_critic = {"pi": [], "vf": list(critic)}
        super().__init__(observation_space, action_space, lr_schedule, net_arch=actor_critic, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        extractor = self.pi_features_extractor
        if not isinstance(extractor, HistoryExtractor) or extractor.n_candidates != self._slate[0]:
            raise ValueError("SlateRankingPolicy needs HistoryExtractor features of the candidates mode")
        self.action_dist = PlackettLuceDistribution(*self._slate)
        scorer = CandidateScorer(extractor)
        if self.ortho_init:
            # Small output gain, as SB3 does for its action layer: the first slates are near uniform.
            nn.init.orthogonal_(scorer.out.weight, gain=0.01)
            nn.init.zeros_(scorer.out.bias)
        self.action_net = scorer
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )
