r"""PINN for the damped harmonic oscillator (KAT paper appendix B, PDE solving).

.. math:: m u'' + \mu u' + k u = 0,\quad m = 1,\ \mu = 2d,\ k = \omega_0^2,\quad
          u(0) = 1,\ u'(0) = 0,

under-damped (:math:`d < \omega_0`), with the exact solution
:math:`u(t) = e^{-dt}\cos(\omega t + \phi)/\cos\phi`, :math:`\omega = \sqrt{\omega_0^2 - d^2}`,
:math:`\phi = \arctan(-d/\omega)`.

The loss is the mean squared residual at ``n_collocation`` points of ``[0, t_max]``, divided by
:math:`\omega_0^2` so that all terms are O(1), plus :math:`(u(0)-1)^2 + (u'(0)/\omega_0)^2`.
:math:`u'` and :math:`u''` are exact autograd derivatives with respect to the input
(``create_graph=True``, so the loss stays differentiable in the weights); the network maps each
point independently, so the gradient of :math:`\sum_i u(t_i)` is :math:`u'(t_i)` pointwise. All
three mixers go through the same path (the GR-KAN op has a twice-differentiable backward). The
metric is the relative L2 error :math:`\|u_\theta - u\|_2 / \|u\|_2` on ``n_eval`` evenly
spaced points.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from katbench.models.small import mixer_net
from katbench.tasks import TaskSpec, register_family
from katbench.tracking import write_npz


def exact_solution(t: torch.Tensor, d: float, w0: float) -> torch.Tensor:
    """Closed-form u(t) of the under-damped oscillator with u(0) = 1, u'(0) = 0."""
    if not 0 <= d < w0:
        raise ValueError(f"need 0 <= d < w0 for an under-damped oscillator, got d={d}, w0={w0}")
    w = math.sqrt(w0**2 - d**2)
    phi = math.atan(-d / w)
    return torch.exp(-d * t) * torch.cos(w * t + phi) / math.cos(phi)


Field = Callable[[torch.Tensor], torch.Tensor]   # t (n, 1) -> u (n, 1): a network or a formula


def time_derivatives(model: Field, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``u, u', u''`` at ``t`` (shape ``(n, 1)``), differentiable with respect to the weights."""
    t = t.detach().requires_grad_(True)
    u = model(t)
    (du,) = torch.autograd.grad(u.sum(), t, create_graph=True)
    (d2u,) = torch.autograd.grad(du.sum(), t, create_graph=True)
    return u, du, d2u


def pinn_loss(model: Field, t: torch.Tensor, d: float, w0: float) -> torch.Tensor:
    """Normalised ODE residual at ``t`` (shape ``(n, 1)``) plus the two initial conditions."""
    u, du, d2u = time_derivatives(model, torch.cat([t.new_zeros(1, 1), t]))  # one pass
    residual = (d2u[1:] + 2 * d * du[1:]) / w0**2 + u[1:]
    ic = (u[0] - 1) ** 2 + (du[0] / w0) ** 2
    return residual.pow(2).mean() + ic.squeeze()


def relative_l2(model: nn.Module, loader: Any) -> float:
    """``||u_model - u_exact|| / ||u_exact||`` over batches of ``(t, u_exact)``."""
    err, ref = 0.0, 0.0
    for t, u in loader:
        err += float((model(t) - u).pow(2).sum())
        ref += float(u.pow(2).sum())
    return math.sqrt(err / ref)


@register_family("pinn")
def build(cfg: Any, mixer: dict[str, Any]) -> TaskSpec:
    """Float64 :class:`MixerNet` of ``task.widths`` (hidden widths solved for ``param_budget``
    when set); full-batch collocation points."""
    t_cfg = cfg.task
    d, w0, t_max = float(t_cfg.d), float(t_cfg.w0), float(t_cfg.t_max)
    kwargs = {k: v for k, v in mixer.items() if k != "name"}
    model = mixer_net(list(t_cfg.widths), mixer["name"], kwargs,
                      cfg.get("param_budget")).double()
    colloc = torch.linspace(0, t_max, int(t_cfg.n_collocation), dtype=torch.float64)[:, None]
    t_eval = torch.linspace(0, t_max, int(t_cfg.n_eval), dtype=torch.float64)[:, None]
    test = [(t_eval, exact_solution(t_eval, d, w0))]

    def export(net: nn.Module, run_dir: Path) -> list[Path]:
        device = next(net.parameters()).device
        with torch.no_grad():
            pred = net(t_eval.to(device)).cpu()
        return [write_npz(run_dir / "u_t.npz", t=t_eval.squeeze(1).numpy(),
                          pred=pred.squeeze(1).numpy(), exact=test[0][1].squeeze(1).numpy(),
                          collocation=colloc.squeeze(1).numpy())]

    return TaskSpec(model=model, train=[colloc], val=None, test=test,
                    loss=lambda m, batch: pinn_loss(m, batch, d, w0),
                    evaluate=relative_l2, metric="rel_l2", higher_is_better=False,
                    export=export)
