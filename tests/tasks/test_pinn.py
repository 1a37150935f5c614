"""PINN oscillator: the exact solution solves the ODE; training reduces the error."""

from __future__ import annotations

import math

import torch
from omegaconf import OmegaConf

from katbench.tasks import build_task
from katbench.tasks.pinn import exact_solution, pinn_loss
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
    assert float(pinn_loss(exact, t, 2.0, 10.0, 1e-4)) < 1e-10


def test_pinn_run_reduces_its_error(tmp_path):
    cfg = OmegaConf.create({"seed": 0, "mixer": {"name": "grkan", "num_groups": 1}, "task": {
        "name": "pinn_oscillator", "family": "pinn", "d": 2.0, "w0": 4.0, "t_max": 1.0,
        "widths": [1, 8, 8, 8, 1], "n_collocation": 32, "n_eval": 100, "fd_step": 1e-4}})
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
