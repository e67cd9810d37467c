"""The pygame render modes of the envs: frames of one core row, drawn or shown in a window.

The env classes hold one :class:`CoreRenderer` and call :meth:`CoreRenderer.frame` and
:meth:`CoreRenderer.render`; every drawing call lives in :mod:`recsim_env.render.pygame_renderer`, never
in an env. pygame is imported on the first ``render()``, so an env with ``render_mode="rgb_array"``
builds (and passes Gymnasium's checker up to rendering) without a display.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recsim_env.render.frame import SessionFrame
from recsim_env.render.pygame_renderer import RENDER_FPS, HumanViewer, SessionRenderer
from recsim_env.render.snapshot import FrameBuilder, ItemCatalogue
from user_models.data.artifact import SequenceDataset

if TYPE_CHECKING:
    from recsim_env.core import SimulationCore

PYGAME_RENDER_MODES = ("human", "rgb_array")


class CoreRenderer:
    """Frames of a simulation core's rows and their ``human`` / ``rgb_array`` rendering.

    Args:
        core: The simulation core the env drives.
        dataset: The env's dataset (item titles and categories).
        render_mode: ``"human"``, ``"rgb_array"`` or None (frames only, e.g. for ``recsim visualize``).
        fps: Frames per second of the ``human`` window.
        autoreset: The env resets finished rows inside ``step`` (see :class:`FrameBuilder`).
    """

    def __init__(self, core: SimulationCore, dataset: SequenceDataset, render_mode: str | None,
                 fps: float = RENDER_FPS, autoreset: bool = False) -> None:
        if render_mode is not None and render_mode not in PYGAME_RENDER_MODES:
            raise ValueError(f"CoreRenderer draws {PYGAME_RENDER_MODES}, not {render_mode!r}")
        self.render_mode = render_mode
        self.fps = fps
        self._core = core
        self._dataset = dataset
        self._autoreset = autoreset
        self._builder: FrameBuilder | None = None  # built on the first frame: reading titles costs a pass
        self._renderer: SessionRenderer | None = None
        self._viewer: HumanViewer | None = None

    def frame(self, row: int, *, after_step: bool, user_id: int, episode: int, policy: str = ""
              ) -> SessionFrame:
        """The snapshot of ``row``: after its last step, or just after its reset."""
        if self._builder is None:
            self._builder = FrameBuilder(self._core, ItemCatalogue.from_dataset(self._dataset),
                                         autoreset=self._autoreset)
        return self._builder.frame(row, policy=policy, user_id=user_id, episode=episode,
                                   after_step=after_step)

    def render(self, frame: SessionFrame) -> np.ndarray | None:
        """``rgb_array``: the frame as ``H x W x 3`` uint8. ``human``: show it (None); see HumanViewer."""
        if self.render_mode == "rgb_array":
            if self._renderer is None:
                self._renderer = SessionRenderer()
            return self._renderer.rgb_array(frame)
        if self.render_mode == "human":
            if self._viewer is None:
                self._viewer = HumanViewer(self.fps)
            self._viewer.show(frame)  # "next user" is the player's to act on; an env cannot reset itself
        return None

    def close(self) -> None:
        """Close the window, if one is open."""
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
