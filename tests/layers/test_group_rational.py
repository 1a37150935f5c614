"""GroupRational: fitted initialisation, sharing of the numerator, errors through the layer."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from katbench.init import rational_init
from katbench.init.fit import TARGETS, VARIANTS
from katbench.layers import GroupRational
from katbench.ops import group_rational_reference


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("function", sorted(TARGETS))
def test_init_matches_the_target_within_the_fit_error(function, variant):
    layer = GroupRational(num_groups=4, init=function, variant=variant)
    x = torch.linspace(-3, 3, 1000, dtype=torch.float64)
    with torch.no_grad():
        y = layer(x[:, None].expand(-1, 8)).numpy()   # every group sees the whole interval
    target = TARGETS[function](x.numpy())[:, None]
    mse = np.mean((y - target) ** 2, axis=0)
    # float32 parameters round the coefficients: allow that on top of the fit error
    assert np.all(mse <= rational_init(function, variant).mse * 1.01 + 1e-11), mse


def test_identity_init_is_identity():
    layer = GroupRational(num_groups=8, init="identity")
    x = 3 * torch.randn(4, 16, 64)
    torch.testing.assert_close(layer(x), x, atol=1e-6, rtol=1e-6)


def test_forward_is_the_op_with_the_numerator_expanded():
    layer = GroupRational(num_groups=4, init="gelu", order=(3, 2), variant="abs_sum")
    with torch.no_grad():
        layer.denominator.add_(0.1 * torch.randn_like(layer.denominator))
    x = torch.randn(5, 12)
    expected = group_rational_reference(x, layer.numerator.expand(4, -1), layer.denominator,
                                        "abs_sum")
    torch.testing.assert_close(layer(x), expected)


def test_parameter_counts_shared_vs_per_group():
    shared = GroupRational(num_groups=8, order=(5, 4))
    per_group = GroupRational(num_groups=8, order=(5, 4), shared_numerator=False)
    assert shared.numerator.shape == (1, 6) and per_group.numerator.shape == (8, 6)
    assert shared.denominator.shape == per_group.denominator.shape == (8, 4)
    assert sum(p.numel() for p in shared.parameters()) == 6 + 8 * 4
    assert sum(p.numel() for p in per_group.parameters()) == 8 * 6 + 8 * 4
    x = torch.randn(3, 32)
    torch.testing.assert_close(shared(x), per_group(x))


def test_shared_numerator_gradient_is_the_sum_of_group_gradients():
    shared = GroupRational(num_groups=4, init="swish")
    per_group = GroupRational(num_groups=4, init="swish", shared_numerator=False)
    x = torch.randn(6, 16)
    shared(x).pow(2).sum().backward()
    per_group(x).pow(2).sum().backward()
    torch.testing.assert_close(shared.numerator.grad[0], per_group.numerator.grad.sum(0))
    assert not torch.allclose(per_group.numerator.grad[0], per_group.numerator.grad[1])


def test_reset_parameters_restores_the_fit():
    layer = GroupRational(num_groups=2, init="tanh")
    with torch.no_grad():
        layer.numerator.zero_()
        layer.denominator.fill_(3.0)
    layer.reset_parameters()
    fit = rational_init("tanh")
    torch.testing.assert_close(layer.numerator[0], torch.tensor(fit.numerator))
    torch.testing.assert_close(layer.denominator[1], torch.tensor(fit.denominator))
    assert layer.gain == fit.gain


def test_width_not_divisible_by_groups_is_reported_by_the_op():
    with pytest.raises(ValueError, match=r"width D=12 is not divisible by g=8 groups"):
        GroupRational(num_groups=8)(torch.randn(3, 12))


def test_unknown_init_and_bad_groups_raise():
    with pytest.raises(ValueError, match=r"unknown init function 'mish'; known: \["):
        GroupRational(init="mish")
    with pytest.raises(ValueError, match="no fitted order"):
        GroupRational(order=(2, 9))
    with pytest.raises(ValueError, match="num_groups=0 must be >= 1"):
        GroupRational(num_groups=0)


def test_a_fresh_process_compiles_the_layer_without_graph_breaks():
    """The kernels load when the layer is built, so the first compiled forward (fullgraph,
    under autocast) does not trace into the build and break the graph."""
    code = textwrap.dedent("""
        import torch
        from katbench.layers import GroupRational
        layer = GroupRational(4, init="gelu")
        compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
        x = torch.randn(3, 8, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = compiled(x)
        y.float().sum().backward()
        assert y.dtype == torch.bfloat16 and x.grad is not None
        print("compiled ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "compiled ok" in result.stdout
