"""What the basis-expansion KAN layers (FastKAN, ChebyKAN, FourierKAN) share: exact gradients."""

from __future__ import annotations

import pytest
import torch

from katbench.layers import ChebyKANLinear, FastKANLinear, FourierKANLinear


@pytest.mark.parametrize("make", [lambda: ChebyKANLinear(3, 2, degree=4),
                                  lambda: FastKANLinear(3, 2, grid_size=5),
                                  lambda: FourierKANLinear(3, 2, grid_size=4)],
                         ids=["chebykan", "fastkan", "fourierkan"])
def test_gradcheck_in_float64(make):
    torch.manual_seed(0)
    layer = make().double()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, *p: layer(t), (x, *layer.parameters()))
