"""The cascade world as simulated users: :class:`CascadeWorld` behind the user protocol.

:class:`CascadeUsers` is a :class:`~user_models.protocol.UserModel` (an event of a history is the
world's own consumption update) and a :class:`~user_models.protocol.SlateResponder`: the simulation core
hands it whole slates and takes the world's answer (its cascade scan, funnel and satisfaction-driven
leaving), so the env runs the world through the same spaces and policies as the learned simulator while
no line of the simulator's choice or leave model is involved.
"""

from __future__ import annotations

import torch

from user_models.data.artifact import SequenceDataset
from user_models.protocol import History, SlateResponse
from user_models.synthetic.cascade import CascadeState, CascadeWorld


class CascadeUsers:
    """Users of a :class:`CascadeWorld` for the simulation core (see the module docstring).

    Args:
        world: the world (e.g. :meth:`CascadeWorld.from_dataset` of a cascade dataset).
    """

    def __init__(self, world: CascadeWorld) -> None:
        self.world = world

    @classmethod
    def from_dataset(cls, ds: SequenceDataset, device: torch.device | str = "cpu") -> CascadeUsers:
        return cls(CascadeWorld.from_dataset(ds, device))

    @property
    def n_items(self) -> int:
        return self.world.n_items

    def hidden_item_groups(self) -> dict[str, torch.Tensor]:
        """``{"bait": [n_items + 1] bool}``: the world's hidden item type, which the fidelity report
        follows through the world and the learned simulator (which never sees it)."""
        return {"bait": self.world.item_bait}

    @property
    def behaviors(self) -> tuple[str, ...]:
        return self.world.behaviors

    @property
    def device(self) -> torch.device:
        return self.world.device

    def encode(self, history: History) -> CascadeState:
        return self.world.encode(history)

    def reset_rows(self, state: CascadeState, rows: torch.Tensor, history: History) -> CascadeState:
        return self.world.reset_rows(state, rows, history=history)

    def step(self, state: CascadeState, items: torch.Tensor, behaviors: torch.Tensor, gaps: torch.Tensor,
             active: torch.Tensor) -> CascadeState:
        """One logged event per active row, as the world replays histories (gaps start sessions)."""
        return self.world.apply_event(state, items, behaviors.long(), gaps, active)

    def item_logits(self, state: CascadeState, items: torch.Tensor) -> torch.Tensor:
        """The world's attractiveness (what its users click by)."""
        return self.world.attractiveness(state, items)

    def all_item_logits(self, state: CascadeState) -> torch.Tensor:
        return self.world.all_attractiveness(state)

    def behavior_probs(self, state: CascadeState, items: torch.Tensor) -> torch.Tensor:
        return self.world.behavior_probs(state, items)

    def end_prob(self, state: CascadeState) -> torch.Tensor:
        """The world's leave probability at the current satisfaction."""
        return self.world.leave_prob(state)

    def item_embeddings(self) -> torch.Tensor:
        return self.world.item_embeddings()

    def respond(self, state: CascadeState, slates: torch.Tensor, active: torch.Tensor,
                generator: torch.Generator) -> SlateResponse:
        """The world's step for the active rows; the others are marked as gone for its duration, so the
        world leaves them untouched."""
        was_left = state.left.clone()
        state.left |= ~active
        choice_probs = self.world.choice_probs(state, slates)
        slate_behaviors = self.world.behavior_probs(state, slates.clamp(min=0))
        out = self.world.step(state, slates, generator)
        state.left.copy_(torch.where(active, state.left, was_left))
        chose = out.position >= 0
        picked = slate_behaviors.gather(1, out.position.clamp(min=0)[:, None, None].expand(-1, 1, 4))[:, 0]
        return SlateResponse(
            choice_probs=choice_probs,
            position=out.position,
            item=out.item,
            behavior=out.behavior,
            behavior_probs=picked * chose[:, None],
            leave_prob=out.leave_prob,
            left=out.active & out.left,
        )
