"""Cheap checks that the user model's outputs are numbers: the core never hands out NaN probabilities.

A diverged or corrupt model (NaN or infinite weights) makes every probability NaN; sampling from NaN
still picks *something*, so without a check the env would return finite rewards and a benchmark a
plausible-looking "return 25.000 [25.000, 25.000]". :func:`check_finite` is called by
:meth:`recsim_env.core.SimulationCore.step` on each quantity right after the model produces it.
"""

from __future__ import annotations

import torch

from user_models.errors import InputError


class ModelOutputError(InputError):
    """The user model produced non-finite utilities or probabilities (NaN/inf weights?)."""


def check_finite(name: str, values: torch.Tensor, rows: torch.Tensor) -> None:
    """Raise :class:`ModelOutputError` if ``values`` (``[N]`` or ``[N, m]``) is not finite in ``rows``.

    One fused reduction. On the CPU it raises naming ``name`` and how many rows are affected; on an
    accelerator, and inside ``torch.compile`` (where reading a tensor on the host breaks the graph), it
    is a :func:`torch._assert_async` (no host sync in the step), which fails at a later kernel launch
    (compiled on the CPU: at once) naming ``name``.
    """
    finite = torch.isfinite(values)
    if finite.dim() > 1:
        finite = finite.all(dim=1)
    bad = ~finite & rows
    if values.device.type != "cpu" or torch.compiler.is_compiling():
        torch._assert_async(~bad.any(), f"the user model's {name} are not finite (NaN or inf) for some "
                            "active rows; are the model's weights finite?")
        return
    if bool(bad.any()):
        raise ModelOutputError(f"the user model's {name} are not finite (NaN or inf) for {int(bad.sum())} "
                               f"of {int(rows.sum())} active rows; are the model's weights finite?")
