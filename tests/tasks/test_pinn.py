"""PINN oscillator: the exact solution solves the ODE; training reduces the error."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from katbench.models.small import MixerNet
from katbench.tasks import build_task
from katbench.tasks.pinn import exact_solution, pinn_loss, time_derivatives
from katbench.train import TrainerSettings, fit, seed_everything


def test_exact_solution_satisfies_ode_and_initial_conditions():
    d, w0, h = 2.0, 10.0, 1e-4
    t = torch.linspace(0.1, 0.9, 50, dtype=torch.float64)
    u = lambda s: exact_solution(s, d, w0)  # noqa: E731
    du = (u(t + h) - u(t - h)) / (2 * h)
    d2u = (u(t + h) - 2 * u(t) + u(t - h)) / h**2
    assert torch.allclose(d2u + 2 * d * du + w0**2 * u(t), torch.zeros_like(t), atol=1e-3)
    zero = torch.zeros(1, dtype=torch.float64)
    assert float(u(zero)) == 1.0
    assert abs(float((u(zero + h) - u(zero - h)) / (2 * h))) < 1e-6


def test_pinn_loss_is_zero_for_the_exact_solution():
    t = torch.linspace(0, 1, 30, dtype=torch.float64)[:, None]
    exact = lambda s: exact_solution(s, 2.0, 10.0)  # noqa: E731
    assert float(pinn_loss(exact, t, 2.0, 10.0).detach()) < 1e-20
    wrong = lambda s: exact_solution(s, 2.0, 9.0)  # noqa: E731
    assert float(pinn_loss(wrong, t, 2.0, 10.0).detach()) > 1e-3


@pytest.mark.parametrize("mixer", ["mlp", "kan", "grkan"])
def test_autograd_derivatives_match_finite_differences(mixer):
    torch.manual_seed(0)
    net = MixerNet([1, 6, 6, 6, 1], mixer, **({"num_groups": 1} if mixer == "grkan" else {}))
    net = net.double()
    t, h = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)[:, None], 1e-4
    u, du, d2u = time_derivatives(net, t)
    with torch.no_grad():
        fd1 = (net(t + h) - net(t - h)) / (2 * h)
        fd2 = (net(t + h) - 2 * net(t) + net(t - h)) / h**2
    assert torch.allclose(du, fd1, rtol=1e-5, atol=1e-6)
    assert torch.allclose(d2u, fd2, rtol=1e-3, atol=1e-4)
    pinn_loss(net, t, 2.0, 10.0).backward()   # second derivatives back-propagate to weights
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters()
               if p.requires_grad)


def test_pinn_run_reduces_its_error(tmp_path):
    cfg = OmegaConf.create({"seed": 0, "mixer": {"name": "grkan", "num_groups": 1}, "task": {
        "name": "pinn_oscillator", "family": "pinn", "d": 2.0, "w0": 4.0, "t_max": 1.0,
        "widths": [1, 8, 8, 8, 1], "n_collocation": 32, "n_eval": 100}})
    seed_everything(0)
    spec = build_task(cfg)
    with torch.no_grad():
        before = spec.evaluate(spec.model, spec.test)
    settings = TrainerSettings.from_config({"epochs": 300, "lr": 1e-2, "eval_every": 300,
                                            "progress": "none", "device": "cpu"})
    result = fit(spec, settings, tmp_path / "c.pt")
    after = result["final"]["test_rel_l2"]
    assert math.isfinite(after) and after < 0.5 * before, (before, after)
    assert spec.metric == "rel_l2" and result["selected_on"] == "test_rel_l2"
    (path,) = spec.export(spec.model, tmp_path)
    assert path.name == "u_t.npz"
