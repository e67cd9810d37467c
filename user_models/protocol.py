"""The user protocol: what the simulation core asks of a simulated user, whoever implements it.

Three implementations exist: the learned :class:`~user_models.transformer.UserTransformer` (the product),
the synthetic ground-truth world (:mod:`user_models.synthetic`, which made the synthetic logs) and a tiny
hand-written user for tests. The simulation core (``recsim_env``) sees users only through this protocol,
so any policy can run against the learned simulator and against the world that generated its logs.

Conventions shared by every implementation:

- Item ids are ``1..n_items``; 0 is padding (and "no item").
- Behavior ids are ``1..n_behaviors`` (``behaviors[i]`` is id ``i + 1``, lowest engagement first); 0 means
  "no response". :meth:`UserModel.behavior_probs` returns the distribution over ids ``1..n_behaviors``
  in its last dimension (index ``i`` is behavior id ``i + 1``).
- Gaps are seconds since the user's previous event; a negative gap means unknown (or the first event).
- All tensors live on ``model.device``; every method is batched over rows and has no Python loop over
  users. A state is mutable: ``step`` and ``reset_rows`` may update it in place and return it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

import torch

from user_models.errors import InputError


@dataclass(frozen=True)
class History:
    """A batch of right-padded event histories (the oldest event at position 0).

    Attributes:
        items: ``[B, L]`` int64 item ids, 0 after each row's length.
        behaviors: ``[B, L]`` int64 behavior ids, 0 after each row's length.
        gaps: ``[B, L]`` float32 seconds since the previous event, negative when unknown.
        lengths: ``[B]`` int64 number of real events per row (may be 0).
        users: ``[B]`` int64 index of each row's user in the dataset the events were logged in, or None
            when the rows are not logged users (generated warm-ups, hand-made histories). A learned user
            model ignores it: it knows users only by what they did. A ground-truth world reads it to
            continue the very users who wrote the logs instead of look-alikes rebuilt from their events.
    """

    items: torch.Tensor
    behaviors: torch.Tensor
    gaps: torch.Tensor
    lengths: torch.Tensor
    users: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.items.shape[0])

    def user_rows(self, n_known: int, device: torch.device) -> torch.Tensor:
        """``users`` as row indices (on ``device``) into a table of a dataset's ``n_known`` users.

        Raises:
            InputError: ``users`` is None or outside ``0..n_known - 1`` (the history is not from that
                dataset).
        """
        if self.users is None:
            raise InputError("this history names no dataset users (History.users is None)")
        users = self.users.to(device).long()
        if users.numel() and (int(users.min()) < 0 or int(users.max()) >= n_known):
            raise InputError(f"History.users must be dataset user indices in 0..{n_known - 1}, got "
                             f"{int(users.min())}..{int(users.max())}: the history is not from the dataset "
                             "this world was rebuilt from")
        return users

    def to(self, device: torch.device | str) -> History:
        return History(
            self.items.to(device), self.behaviors.to(device), self.gaps.to(device), self.lengths.to(device),
            None if self.users is None else self.users.to(device),
        )


@runtime_checkable
class UserState(Protocol):
    """Per-row user state owned by a model (a key/value cache, latent interest vectors, ...)."""

    @property
    def batch_size(self) -> int: ...


StateT = TypeVar("StateT", bound=UserState)


@runtime_checkable
class UserModel(Protocol[StateT]):
    """A batch of simulated users' preferences and responses, stepped one event at a time.

    Generic in the state type each implementation owns; consumers write plain ``UserModel``
    (any state), implementations accept only their own state.
    """

    @property
    def n_items(self) -> int:
        """Catalogue size; item ids are ``1..n_items``."""
        ...

    @property
    def behaviors(self) -> tuple[str, ...]:
        """Behavior names, lowest engagement first."""
        ...

    @property
    def device(self) -> torch.device: ...

    def encode(self, history: History) -> StateT:
        """Build the state of ``history.batch_size`` users from their histories (a prefill)."""
        ...

    def step(
        self,
        state: StateT,
        items: torch.Tensor,
        behaviors: torch.Tensor,
        gaps: torch.Tensor,
        active: torch.Tensor,
    ) -> StateT:
        """Append one event (``[B]`` item, behavior, gap) to each row where ``active`` (``[B]`` bool)."""
        ...

    def reset_rows(self, state: StateT, rows: torch.Tensor, history: History) -> StateT:
        """Replace the rows where ``rows`` (``[B]`` bool) is set by new users encoded from ``history``.

        ``history`` holds exactly ``rows.sum()`` rows, in row order.
        """
        ...

    def item_logits(self, state: StateT, items: torch.Tensor) -> torch.Tensor:
        """``[B, k]`` preference logits of each row for the ``[B, k]`` items (higher = preferred)."""
        ...

    def behavior_probs(self, state: StateT, items: torch.Tensor) -> torch.Tensor:
        """``[B, k, n_behaviors]`` P(behavior | history, the user picks this item)."""
        ...

    def end_prob(self, state: StateT) -> torch.Tensor:
        """``[B]`` P(the last event was the session's last | history)."""
        ...

    def item_embeddings(self) -> torch.Tensor:
        """``[n_items + 1, d]`` item vectors (row 0 = padding), for retrieval and diversity metrics."""
        ...


@dataclass(frozen=True)
class SlateResponse:
    """How a :class:`SlateResponder`'s users answered one slate (``[B]`` tensors unless noted).

    Attributes:
        choice_probs: ``[B, k + 1]`` P(each position), last column "none" (before the answer).
        position: chosen position, -1 for none.
        item: chosen item, 0 for none.
        behavior: behavior id of the response, 0 for none.
        behavior_probs: ``[B, n_behaviors]`` the chosen item's response distribution (zeros for none).
        leave_prob: the hazard with which each row left at this step.
        left: the user left at this step.
    """

    choice_probs: torch.Tensor
    position: torch.Tensor
    item: torch.Tensor
    behavior: torch.Tensor
    behavior_probs: torch.Tensor
    leave_prob: torch.Tensor
    left: torch.Tensor


@runtime_checkable
class SlateResponder(Protocol):
    """Users who answer a whole slate with mechanics of their own (choice, response, leaving).

    A ground-truth world that must share no code with the simulator's choice and leave models
    implements this beside :class:`UserModel`: the simulation core then only keeps the books (history,
    rewards, steps, truncation, candidates) and takes the world's answer as it is.
    """

    def respond(self, state: UserState, slates: torch.Tensor, active: torch.Tensor,
                generator: torch.Generator) -> SlateResponse:
        """Show ``[B, k]`` slates (0 = empty slot) to the rows where ``active``; update their state.

        Rows not active are left unchanged. Draws a fixed number of random numbers from ``generator``
        per call, whatever the slates (common random numbers across policies).
        """
        ...
