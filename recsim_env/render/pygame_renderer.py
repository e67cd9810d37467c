"""Draw :class:`~recsim_env.render.frame.SessionFrame` snapshots with pygame-ce.

:class:`SessionRenderer` paints a frame onto an offscreen surface and returns it as an ``H x W x 3``
uint8 array (the ``rgb_array`` render mode); :class:`HumanViewer` shows frames in a window at a given
frame rate and handles the keyboard (the ``human`` render mode and ``recsim visualize``). Both draw from
the frame alone, so a live session and a replayed trajectory look the same.

pygame is imported lazily: importing this module never needs it, and the first renderer built without
it raises :class:`VizDependencyError` with the install hint.
"""

from __future__ import annotations

import enum
import os
import time
import zlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from recsim_env.render.frame import ItemView, SessionFrame
from user_models.errors import InputError

INSTALL_HINT = "install the visualizer extra: pip install 'recsim-env[viz]'"


RENDER_FPS = 4
"""Default frames per second of the window and of recordings (the env's ``metadata["render_fps"]``)."""


class VizDependencyError(InputError, ImportError):
    """pygame-ce (or another optional visualizer dependency) is not installed."""


class DisplayError(InputError):
    """No window can be opened (no display); render headless instead."""


def import_pygame() -> ModuleType:
    """Import pygame-ce, or raise :class:`VizDependencyError` saying how to install it."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError as exc:
        raise VizDependencyError(f"the visualizer needs pygame-ce, which is not installed; {INSTALL_HINT}") \
            from exc
    return pygame


Color = tuple[int, int, int]


def _hex(code: str) -> Color:
    return int(code[1:3], 16), int(code[3:5], 16), int(code[5:7], 16)


BACKGROUND = _hex("#12141a")
PANEL = _hex("#1d2029")
PANEL_EDGE = _hex("#2b2f3b")
TEXT = _hex("#e8eaf0")
MUTED = _hex("#8e95a5")
BAR = _hex("#4fb3bf")
BAR_TRACK = _hex("#2b2f3b")
CHOSEN = _hex("#f5c542")
NO_CHOICE = _hex("#e5534b")
GOOD = _hex("#3ddc84")
BAD = _hex("#e5534b")
ATTENTION = _hex("#ff8c42")
UNKNOWN_CATEGORY = _hex("#5c6370")
CATEGORY_PALETTE: tuple[Color, ...] = tuple(
    _hex(c)
    for c in (
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
        "#9c755f", "#bab0ac", "#86bcb6", "#f1ce63", "#d37295", "#a0cbe8", "#ffbe7d", "#8cd17d",
        "#b6992d", "#499894", "#fabfd2", "#d4a6c8",
    )
)


def category_color(category: str | None) -> Color:
    """A stable colour per category name (the same on every run and machine; crc32, not ``hash``)."""
    if not category:
        return UNKNOWN_CATEGORY
    return CATEGORY_PALETTE[zlib.crc32(category.encode("utf-8")) % len(CATEGORY_PALETTE)]


def _mix(a: Color, b: Color, t: float) -> Color:
    t = min(max(t, 0.0), 1.0)
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


@dataclass(frozen=True)
class RenderConfig:
    """Size and content limits of a rendered frame."""

    width: int = 960
    """Frame width in pixels."""
    height: int = 600
    """Frame height in pixels."""
    history_rows: int = 10
    """Most recent history events shown (newest first)."""
    interest_rows: int = 5
    """Top interest categories shown."""

    def __post_init__(self) -> None:
        if self.width < 640 or self.height < 400:
            raise ValueError(f"render size {self.width}x{self.height} is too small (minimum 640x400)")
        if self.history_rows < 1 or self.interest_rows < 1:
            raise ValueError("history_rows and interest_rows must be at least 1")


class SessionRenderer:
    """Paints session frames onto an offscreen pygame surface.

    Args:
        config: Frame size and how many history rows and interests to show.
    """

    def __init__(self, config: RenderConfig | None = None) -> None:
        self.config = config or RenderConfig()
        self._pg = import_pygame()
        self._pg.font.init()
        self.surface = self._pg.Surface((self.config.width, self.config.height))
        scale = self.config.height / 600
        self._fonts = {
            name: self._pg.font.Font(None, max(10, round(size * scale)))
            for name, size in (("small", 17), ("body", 20), ("title", 22), ("big", 40))
        }
        # Where the attention view's curves start (weighted history cells) and end (the chosen slot);
        # filled while a frame is drawn.
        self._links: list[tuple[float, tuple[int, int]]] = []
        self._chosen_anchor: tuple[int, int] | None = None

    # --- public -----------------------------------------------------------------------------------
    @property
    def regions(self) -> dict[str, tuple[int, int, int, int]]:
        """Where each part is drawn, as ``(x, y, width, height)``: header, history, slate, gauges, footer."""
        cfg = self.config
        header_h = round(cfg.height * 0.08)
        footer_h = round(cfg.height * 0.045)
        gap = 12
        top, bottom = header_h + 4, cfg.height - footer_h
        inner_w = cfg.width - 4 * gap
        left_w, mid_w = round(inner_w * 0.34), round(inner_w * 0.40)
        right_w = inner_w - left_w - mid_w
        return {
            "header": (0, 0, cfg.width, header_h),
            "history": (gap, top, left_w, bottom - top),
            "slate": (2 * gap + left_w, top, mid_w, bottom - top),
            "gauges": (3 * gap + left_w + mid_w, top, right_w, bottom - top),
            "footer": (gap, bottom, cfg.width - 2 * gap, footer_h),
        }

    def draw(self, frame: SessionFrame, status: str = "") -> Any:
        """Paint ``frame`` (plus an optional footer ``status`` line) and return the pygame surface."""
        self.surface.fill(BACKGROUND)
        rect = {name: self._pg.Rect(box) for name, box in self.regions.items()}
        self._header(frame, rect["header"])
        self._links, self._chosen_anchor = [], None
        self._history(frame, rect["history"])
        self._slate(frame, rect["slate"])
        self._draw_links()
        self._gauges(frame, rect["gauges"])
        self._footer(frame, status, rect["footer"])
        return self.surface

    def rgb_array(self, frame: SessionFrame) -> np.ndarray:
        """The frame as an ``H x W x 3`` uint8 array (Gymnasium's ``rgb_array`` convention)."""
        self.draw(frame)
        pixels = self._pg.surfarray.array3d(self.surface)  # W x H x 3
        return np.ascontiguousarray(pixels.transpose(1, 0, 2), dtype=np.uint8)

    # --- panels -----------------------------------------------------------------------------------
    def _header(self, frame: SessionFrame, rect: Any) -> None:
        w, mid = rect.width, rect.centery
        self._pg.draw.rect(self.surface, PANEL, rect)
        self._pg.draw.line(self.surface, PANEL_EDGE, (0, rect.bottom - 1), (w, rect.bottom - 1))
        who = f"user {frame.user_id}" + (f"   policy: {frame.policy}" if frame.policy else "")
        self._text(who, "title", TEXT, (14, mid), anchor="midleft", max_w=w // 2 - 40)
        if frame.chosen_slot is not None:
            outcome = f"step {frame.step}:  chose slot {frame.chosen_slot + 1}  ({frame.behavior})"
            color = CHOSEN
        elif not frame.slate:
            outcome, color = f"step {frame.step}:  a new user arrives", TEXT
        else:
            outcome, color = f"step {frame.step}:  no choice", NO_CHOICE
        right = w - 14
        if frame.terminated or frame.truncated:
            badge, badge_color = ("user left", BAD) if frame.terminated else ("step limit", MUTED)
            right = self._badge(badge, badge_color, (right, mid), anchor="midright") - 12
        start = w // 2 + 20
        self._text(outcome, "title", color, (start, mid), anchor="midleft", max_w=right - start)

    def _history(self, frame: SessionFrame, rect: Any) -> None:
        body = self._panel(rect, "RECENT HISTORY  (newest first)", "weight" if frame.attention else "")
        events = list(frame.history)[-self.config.history_rows:][::-1]
        weights = None
        if frame.attention is not None:
            recent = list(frame.attention)[-self.config.history_rows:][::-1]
            weights = self._normalise(frame.attention, recent)
        caption_h = self._fonts["small"].get_height() + 8
        att_w = 64 if weights is not None else 0
        rows = self._rows(body.inflate(0, -caption_h).move(0, -caption_h // 2), self.config.history_rows)
        if not events:
            self._text("(no history yet)", "body", MUTED, body.center, anchor="center")
        for i, (event, row) in enumerate(zip(events, rows, strict=False)):
            text_w = row.width - att_w - 14
            self._chip(event.item.category, (row.x, row.y + 3, 5, row.height - 6))
            self._text(event.item.label, "body", TEXT, (row.x + 12, row.y + 3), max_w=text_w)
            pip_end = self._pips(event.behavior, frame.behaviors,
                                 (row.x + 12, row.bottom - 12), size=8, color=None)
            detail = f"{event.behavior}   {event.item.category or ''}"
            self._text(detail, "small", MUTED, (pip_end + 8, row.bottom - 8), anchor="midleft",
                       max_w=row.right - att_w - pip_end - 14)
            if weights is not None:
                cell = self._pg.Rect(row.right - att_w + 4, row.y + 4, att_w - 4, row.height - 8)
                self._attention_cell(weights[0][i], weights[1][i], cell)
                if weights[0][i] > 0:
                    self._links.append((weights[1][i], cell.midright))
        if frame.attention is not None and not any(frame.attention):
            caption = "weights: no event raised the chosen item's score"
        elif frame.attention is not None:
            caption = f"weight for the chosen item: {frame.attention_source or 'unlabelled'}"
        elif not frame.slate:
            caption = ""
        elif frame.chosen is None:
            caption = "weights: none (nothing chosen this step)"
        else:
            caption = "weights: not recorded for this step"
        self._text(caption, "small", MUTED, (body.x, body.bottom - 2), anchor="bottomleft", max_w=body.width)

    def _slate(self, frame: SessionFrame, rect: Any) -> None:
        body = self._panel(rect, f"SLATE   k = {len(frame.slate)}", "P(choice)")
        if not frame.slate:
            self._text("(the first slate comes with the first step)", "body", MUTED, body.center,
                       anchor="center", max_w=body.width)
            return
        rows = self._rows(body, len(frame.slate) + 1, max_height=68)
        for slot_index, (slot, row) in enumerate(zip(frame.slate, rows, strict=False)):
            chosen = slot_index == frame.chosen_slot
            self._slate_row(row, slot_index + 1, slot.item, slot.choice_prob, chosen, slot.wasted,
                            frame.behavior if chosen else None, frame.behaviors)
        no_row = rows[len(frame.slate)]
        none_chosen = frame.chosen_slot is None
        if none_chosen:
            box = no_row.inflate(8, 2)
            self._pg.draw.rect(self.surface, _mix(PANEL, NO_CHOICE, 0.18), box, border_radius=6)
            self._pg.draw.rect(self.surface, NO_CHOICE, box, width=2, border_radius=6)
        self._text("no choice", "body", NO_CHOICE if none_chosen else MUTED, (no_row.x + 34, no_row.y + 3))
        self._prob_bar(frame.no_choice_prob, no_row, NO_CHOICE if none_chosen else MUTED)

    def _slate_row(self, row: Any, number: int, item: ItemView, prob: float, chosen: bool, wasted: bool,
                   behavior: str | None, behaviors: tuple[str, ...]) -> None:
        """One slot: number, category chip, title, category, the chosen behavior, the probability bar."""
        if chosen:
            box = row.inflate(8, 2)
            self._pg.draw.rect(self.surface, _mix(PANEL, CHOSEN, 0.12), box, border_radius=6)
            self._pg.draw.rect(self.surface, CHOSEN, box, width=2, border_radius=6)
            self._chosen_anchor = box.midleft
        center = (row.x + 12, row.y + 12)
        self._pg.draw.circle(self.surface, CHOSEN if chosen else PANEL_EDGE, center, 11)
        self._text(str(number), "small", BACKGROUND if chosen else TEXT, center, anchor="center")
        self._chip(item.category, (row.x + 28, row.y + 2, 5, row.height - 4))
        title_right = row.right
        if behavior is not None:
            tag_w = self._fonts["small"].size(behavior)[0]
            start = row.right - tag_w - len(behaviors) * 10 - 8
            self._pips(behavior, behaviors, (start, row.y + 5), size=8, color=CHOSEN)
            self._text(behavior, "small", CHOSEN, (row.right, row.y + 9), anchor="midright")
            title_right = start - 8
        self._text(item.label, "body", MUTED if wasted else TEXT, (row.x + 40, row.y + 3),
                   max_w=title_right - row.x - 40)
        if row.height >= 54:
            detail = "wasted slot: nothing shown" if wasted else (item.category or "")
            self._text(detail, "small", MUTED, (row.x + 40, row.y + 22), max_w=row.width - 40)
        self._prob_bar(prob, row, CHOSEN if chosen else BAR)

    def _draw_links(self, top: int = 3) -> None:
        """Curves from the most weighted history events to the chosen slot (the attention view)."""
        if self._chosen_anchor is None:
            return
        end = self._chosen_anchor
        for relative, start in sorted(self._links, reverse=True)[:top]:
            reach = (end[0] - start[0]) * 0.6
            controls: tuple[tuple[float, float], ...] = (
                start, (start[0] + reach, start[1]), (end[0] - reach, end[1]), end)
            points = [_bezier(controls, t / 24) for t in range(25)]
            color = _mix(PANEL_EDGE, ATTENTION, 0.35 + 0.65 * relative)
            self._pg.draw.lines(self.surface, color, False, points, width=max(1, round(4 * relative)))
            self._pg.draw.circle(self.surface, color, start, 3)

    def _gauges(self, frame: SessionFrame, rect: Any) -> None:
        body = self._panel(rect, "RETURN", "")
        x, y, w = body.x, body.y, body.width
        self._text(f"{frame.cumulative_reward:.2f}", "big", TEXT, (x, y))
        step_color = GOOD if frame.reward > 0 else BAD if frame.reward < 0 else MUTED
        y += self._fonts["big"].get_height() + 2
        self._text(f"{frame.reward:+.2f} this step", "small", step_color, (x, y))
        y += self._fonts["small"].get_height() + 16
        y = self._gauge("PATIENCE", frame.patience, _mix(BAD, GOOD, frame.patience), x, y, w)
        y = self._gauge("LEAVE PROBABILITY", frame.leave_prob, _mix(GOOD, BAD, frame.leave_prob * 2), x, y, w)
        self._text("TOP INTERESTS", "small", MUTED, (x, y))
        y += self._fonts["small"].get_height() + 6
        if not frame.interests:
            self._text("(not available)", "small", MUTED, (x, y))
        row_h = max(26, min(38, (body.bottom - y) // self.config.interest_rows))
        for interest in frame.interests[: self.config.interest_rows]:
            self._chip(interest.category, (x, y + 2, 5, row_h - 8))
            self._text(interest.category, "small", TEXT, (x + 12, y + 1), max_w=w - 70)
            self._text(f"{interest.prob:.0%}", "small", TEXT, (x + w, y + 1), anchor="topright")
            bar = self._pg.Rect(x + 12, y + row_h - 12, w - 12, 5)
            self._bar(interest.prob, bar, category_color(interest.category))
            y += row_h
        self._legend(frame.behaviors, x, body.bottom, w)

    def _legend(self, behaviors: tuple[str, ...], x: int, bottom: int, w: int) -> None:
        """Explain the behavior icon: one line per behavior, highest engagement at the top."""
        line_h = self._fonts["small"].get_height() + 3
        y = bottom - line_h * len(behaviors)
        self._text("BEHAVIOR ICONS", "small", MUTED, (x, y - line_h - 4))
        for name in reversed(behaviors):
            end = self._pips(name, behaviors, (x, y + 3), size=8, color=None)
            self._text(name, "small", TEXT, (end + 6, y), max_w=w - (end + 6 - x))
            y += line_h

    def _gauge(self, label: str, value: float, color: Color, x: int, y: int, w: int) -> int:
        self._text(label, "small", MUTED, (x, y))
        self._text(f"{value:.0%}", "small", TEXT, (x + w, y), anchor="topright")
        y += self._fonts["small"].get_height() + 5
        self._bar(value, self._pg.Rect(x, y, w, 12), color)
        return y + 28

    def _footer(self, frame: SessionFrame, status: str, rect: Any) -> None:
        left = f"episode {frame.episode}"
        if frame.slate:
            left += f"   P(choose any slate item) {sum(s.choice_prob for s in frame.slate):.0%}"
        self._text(left, "small", MUTED, (rect.x, rect.centery), anchor="midleft", max_w=rect.width // 2)
        if status:
            self._text(status, "small", TEXT, (rect.right, rect.centery), anchor="midright",
                       max_w=rect.width // 2)

    # --- drawing helpers --------------------------------------------------------------------------
    def _panel(self, rect: Any, title: str, note: str) -> Any:
        """Draw a panel with a title line; return the rectangle left for its content."""
        self._pg.draw.rect(self.surface, PANEL, rect, border_radius=8)
        self._pg.draw.rect(self.surface, PANEL_EDGE, rect, width=1, border_radius=8)
        pad = 12
        self._text(title, "small", MUTED, (rect.x + pad, rect.y + pad))
        if note:
            self._text(note, "small", MUTED, (rect.right - pad, rect.y + pad), anchor="topright")
        title_h = self._fonts["small"].get_height() + 10
        return self._pg.Rect(rect.x + pad, rect.y + pad + title_h, rect.width - 2 * pad,
                             rect.height - 2 * pad - title_h)

    def _rows(self, body: Any, n: int, max_height: int = 60) -> list[Any]:
        height = max(1, min(max_height, body.height // max(n, 1)))
        return [self._pg.Rect(body.x, body.y + i * height, body.width, height - 4) for i in range(n)]

    def _text(self, text: str, font: str, color: Color, pos: tuple[int, int], anchor: str = "topleft",
              max_w: int | None = None) -> Any:
        face = self._fonts[font]
        if max_w is not None and face.size(text)[0] > max_w:
            text = _ellipsize(text, max_w, lambda s: int(face.size(s)[0]))
        image = face.render(text, True, color)
        box = image.get_rect(**{anchor: pos})
        self.surface.blit(image, box)
        return box

    def _badge(self, text: str, color: Color, pos: tuple[int, int], anchor: str) -> int:
        """A pill with dark text; returns its left edge."""
        face = self._fonts["small"]
        w, h = face.size(text)
        box = self._pg.Rect(0, 0, w + 16, h + 8)
        setattr(box, anchor, pos)
        self._pg.draw.rect(self.surface, color, box, border_radius=box.height // 2)
        self._text(text, "small", BACKGROUND, box.center, anchor="center")
        return int(box.left)

    def _chip(self, category: str | None, rect: tuple[int, int, int, int]) -> None:
        self._pg.draw.rect(self.surface, category_color(category), rect, border_radius=2)

    def _bar(self, value: float, rect: Any, color: Color) -> None:
        self._pg.draw.rect(self.surface, BAR_TRACK, rect, border_radius=rect.height // 2)
        filled = round(rect.width * min(max(value, 0.0), 1.0))
        if filled > 0:
            self._pg.draw.rect(self.surface, color, (rect.x, rect.y, max(filled, rect.height), rect.height),
                               border_radius=rect.height // 2)

    def _prob_bar(self, prob: float, row: Any, color: Color) -> None:
        text_w = 52
        bar = self._pg.Rect(row.x + 40, row.bottom - 12, row.width - 40 - text_w, 9)
        self._bar(prob, bar, color)
        self._text(f"{prob:.1%}", "small", TEXT, (row.right, bar.centery), anchor="midright")

    def _pips(self, behavior: str, behaviors: tuple[str, ...], pos: tuple[int, int], size: int,
              color: Color | None) -> int:
        """The behavior icon: one pip per engagement level, the behavior's rank filled; returns end x."""
        level = behaviors.index(behavior) + 1 if behavior in behaviors else 0
        n = max(len(behaviors), 1)
        fill = color or _mix(MUTED, GOOD, (level - 1) / max(n - 1, 1))
        x, y = pos
        for i in range(n):
            box = (x + i * (size + 2), y, size, size)
            if i < level:
                self._pg.draw.rect(self.surface, fill, box, border_radius=2)
            else:
                self._pg.draw.rect(self.surface, PANEL_EDGE, box, width=1, border_radius=2)
        return x + n * (size + 2)

    def _attention_cell(self, share: float, relative: float, rect: Any) -> None:
        heat = _mix(PANEL, ATTENTION, 0.15 + 0.85 * relative)
        self._pg.draw.rect(self.surface, heat, rect, border_radius=4)
        color = BACKGROUND if relative > 0.55 else TEXT
        self._text(f"{share:.0%}", "small", color, rect.center, anchor="center")

    @staticmethod
    def _normalise(all_weights: tuple[float, ...], shown: list[float]) -> tuple[list[float], list[float]]:
        """Each shown weight as a share of the total and relative to the largest shown weight."""
        total = sum(all_weights) or 1.0
        peak = max(shown, default=0.0) or 1.0
        return [w / total for w in shown], [w / peak for w in shown]


def _bezier(p: tuple[tuple[float, float], ...], t: float) -> tuple[float, float]:
    """Point ``t`` in [0, 1] of the cubic Bezier curve with control points ``p``."""
    u = 1 - t
    x = u**3 * p[0][0] + 3 * u * u * t * p[1][0] + 3 * u * t * t * p[2][0] + t**3 * p[3][0]
    y = u**3 * p[0][1] + 3 * u * u * t * p[1][1] + 3 * u * t * t * p[2][1] + t**3 * p[3][1]
    return x, y


def _ellipsize(text: str, max_w: int, width: Any) -> str:
    """The longest prefix of ``text`` plus "..." that fits in ``max_w`` pixels."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if width(text[:mid].rstrip() + "...") <= max_w:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "..."


class ViewerCommand(enum.Enum):
    """What the person at the window asked for after a frame was shown."""

    CONTINUE = "continue"
    NEXT_USER = "next_user"
    QUIT = "quit"


KEY_HELP = "space pause   right step   up/down speed   n next user   q quit"


class HumanViewer:
    """A window that shows frames at ``fps`` frames per second and reads the keyboard.

    Keys: space pauses and resumes, right arrow advances one frame while paused, up/down double or halve
    the speed, n asks for the next user, q (or closing the window) quits. :meth:`show` returns the
    resulting :class:`ViewerCommand`; the caller decides what "next user" means (the ``recsim
    visualize`` player resets the episode).

    Args:
        fps: Base frames per second (``metadata["render_fps"]`` of the env).
        renderer: Draws the frames; a default-sized one when omitted.
        caption: Window title.
    """

    MIN_SPEED, MAX_SPEED = 1 / 16, 64.0

    def __init__(
        self, fps: float, renderer: SessionRenderer | None = None, caption: str = "recsim-env"
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self.renderer = renderer or SessionRenderer()
        self._pg = import_pygame()
        try:
            self._pg.display.init()
            size = (self.renderer.config.width, self.renderer.config.height)
            self._window = self._pg.display.set_mode(size)
        except self._pg.error as exc:
            raise DisplayError(
                f"cannot open a window ({exc}); render headless with render_mode='rgb_array', or run "
                "`recsim visualize --no-window --record session.gif`"
            ) from None
        self._pg.display.set_caption(caption)
        self.speed = 1.0
        self.paused = False
        self.closed = False

    @property
    def frame_seconds(self) -> float:
        """Seconds each frame stays on screen at the current speed."""
        return 1.0 / (self.fps * self.speed)

    def show(self, frame: SessionFrame) -> ViewerCommand:
        """Display ``frame``, then wait one frame time (or, while paused, for a key); return the command."""
        if self.closed:
            return ViewerCommand.QUIT
        deadline = time.monotonic() + self.frame_seconds
        self._paint(frame)
        while True:
            command, advance = self._handle_events()
            if command is not ViewerCommand.CONTINUE:
                return command
            if advance:
                self._paint(frame)
                return ViewerCommand.CONTINUE
            if not self.paused and time.monotonic() >= deadline:
                return ViewerCommand.CONTINUE
            self._paint(frame)
            time.sleep(0.01)

    def close(self) -> None:
        """Close the window (idempotent)."""
        if not self.closed:
            self.closed = True
            self._pg.display.quit()

    def _status(self) -> str:
        state = "PAUSED" if self.paused else f"{self.fps * self.speed:g} fps"
        return f"{state}   |   {KEY_HELP}"

    def _paint(self, frame: SessionFrame) -> None:
        self._window.blit(self.renderer.draw(frame, status=self._status()), (0, 0))
        self._pg.display.flip()

    def _handle_events(self) -> tuple[ViewerCommand, bool]:
        """Apply pending key presses; return the command and whether a single step was requested."""
        pg = self._pg
        advance = False
        for event in pg.event.get():
            if event.type == pg.QUIT:
                self.close()
                return ViewerCommand.QUIT, False
            if event.type != pg.KEYDOWN:
                continue
            if event.key == pg.K_q:
                self.close()
                return ViewerCommand.QUIT, False
            if event.key == pg.K_n:
                return ViewerCommand.NEXT_USER, False
            if event.key == pg.K_SPACE:
                self.paused = not self.paused
            elif event.key == pg.K_RIGHT and self.paused:
                advance = True
            elif event.key == pg.K_UP:
                self.speed = min(self.speed * 2, self.MAX_SPEED)
            elif event.key == pg.K_DOWN:
                self.speed = max(self.speed / 2, self.MIN_SPEED)
        return ViewerCommand.CONTINUE, advance
