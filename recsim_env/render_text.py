"""Text rendering of a step snapshot (``render_mode="ansi"``); drawing code lives here, not in the env."""

from __future__ import annotations

from recsim_env.core import StepSnapshot


def format_step(snapshot: StepSnapshot, behavior_names: tuple[str, ...], recent: int = 5) -> str:
    """A few lines describing one user's step: recent history, the slate with choice bars, the response.

    Args:
        snapshot: The step (one row of a :class:`~recsim_env.core.StepRecord`).
        behavior_names: Names of behavior ids ``1..n_behaviors``.
        recent: How many recent history events to show.
    """
    names = ("none", *behavior_names)
    history = [
        f"{int(i)}:{names[int(b)]}"
        for i, b in zip(snapshot.history_items[-recent:], snapshot.history_behaviors[-recent:], strict=True)
        if i > 0
    ]
    lines = [
        f"step {snapshot.step}  return {snapshot.episode_return:.3f}  patience {snapshot.patience:.2f}  "
        f"wear {snapshot.wear:+.2f}  leave p {snapshot.leave_prob:.3f}",
        f"  recent: {' '.join(history) or '(none)'}",
    ]
    for slot, (item, prob) in enumerate(zip(snapshot.slate, snapshot.choice_probs[:-1], strict=True)):
        mark = "*" if slot == snapshot.position else " "
        shown = f"item {int(item):>6}" if item > 0 else "(empty)    "
        lines.append(f" {mark}[{slot}] {shown} {prob:5.3f} {'#' * round(20 * float(prob))}")
    none_mark = "*" if snapshot.position < 0 else " "
    lines.append(f" {none_mark}no choice   {snapshot.choice_probs[-1]:5.3f} "
                 f"{'#' * round(20 * float(snapshot.choice_probs[-1]))}")
    outcome = (f"chose item {snapshot.item} ({names[snapshot.behavior]}), reward {snapshot.reward:.3f}"
               if snapshot.position >= 0 else f"no choice, reward {snapshot.reward:.3f}")
    ending = " -> left" if snapshot.terminated else (" -> truncated" if snapshot.truncated else "")
    lines.append(f"  {outcome}{ending}")
    return "\n".join(lines) + "\n"
