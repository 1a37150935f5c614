"""Function-fitting family: builder wiring and the MSE metric."""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import OmegaConf

from katbench.tasks import build_task
from katbench.tasks.function_fitting import TEST_SEED, mse


def _cfg(seed: int, mixer: dict) -> OmegaConf:
    return OmegaConf.create({"seed": seed, "mixer": mixer, "task": {
        "name": "fit_xy", "family": "function_fitting", "function": "xy", "widths": [2, 5, 1],
        "n_train": 50, "n_val": 40, "n_test": 30, "grid_size": 6}})


def test_builder_makes_the_2_5_1_net_and_seeded_splits(tmp_path):
    a = build_task(_cfg(0, {"name": "grkan", "num_groups": 1}))
    b = build_task(_cfg(1, {"name": "mlp"}))
    (xa, ya), (xb, _) = a.train[0], b.train[0]
    assert xa.shape == (50, 2) and ya.shape == (50, 1) and a.val[0][0].shape == (40, 2)
    assert not torch.equal(xa, xb)                               # train depends on the seed
    assert torch.equal(a.test[0][0], b.test[0][0])               # one test set for all runs
    assert torch.allclose(ya, xa[:, :1] * xa[:, 1:])
    assert a.model(xa).shape == (50, 1) and b.model.blocks[0].fc1.out_features == 5
    (path,) = a.export(a.model, tmp_path)
    data = np.load(path)
    assert data["pred"].shape == data["true"].shape == (6, 6) and str(data["formula"]) == "xy"
    assert TEST_SEED > 0


def test_mse_averages_over_all_points():
    model = torch.nn.Identity()
    loader = [(torch.zeros(2, 1), torch.ones(2, 1)), (torch.zeros(1, 1), torch.full((1, 1), 4.0))]
    assert mse(model, loader) == (1 + 1 + 16) / 3
