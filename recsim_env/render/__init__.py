"""Visualizing simulated sessions: frames (plain data), trajectory files, the pygame renderer, videos.

Importing this package never imports pygame; only building a renderer or a window does.
"""

from recsim_env.render.frame import HistoryEvent, Interest, ItemView, SessionFrame, SlateSlot
from recsim_env.render.trajectory import Trajectory, TrajectoryWriter, read_trajectory, write_trajectory

__all__ = [
    "HistoryEvent",
    "Interest",
    "ItemView",
    "SessionFrame",
    "SlateSlot",
    "Trajectory",
    "TrajectoryWriter",
    "read_trajectory",
    "write_trajectory",
]
