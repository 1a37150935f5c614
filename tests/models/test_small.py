"""MixerNet: widths become chained mixers from the one registry."""

from __future__ import annotations

import pytest
import torch

from katbench.layers import GroupRational
from katbench.models.small import MixerNet


@pytest.mark.parametrize(("mixer", "kw"), [("mlp", {}), ("kan", {}), ("grkan", {"num_groups": 1})])
def test_widths_map_to_chained_mixers(mixer, kw):
    net = MixerNet([1, 4, 4, 4, 1], mixer, **kw)
    assert len(net.blocks) == 2
    assert net(torch.rand(7, 1)).shape == (7, 1)
    assert (mixer == "grkan") == any(isinstance(m, GroupRational) for m in net.modules())


@pytest.mark.parametrize("widths", [[2, 1], [2, 5, 1, 1], [2, 0, 1]])
def test_bad_widths_name_the_fix(widths):
    with pytest.raises(ValueError, match="must have odd length >= 3"):
        MixerNet(widths, "mlp")
