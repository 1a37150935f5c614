"""Layers: the group-wise rational activation, the GR-KAN layer and the KAN layers (B-spline,
Gaussian RBF, Chebyshev, Fourier)."""

from katbench.layers.chebykan_linear import ChebyKANLinear
from katbench.layers.fastkan_linear import FastKANLinear
from katbench.layers.fourierkan_linear import FourierKANLinear
from katbench.layers.grkan_linear import (
    GRKANLinear,
    init_linear_after_,
    rational_linear,
    variance_preserving_,
)
from katbench.layers.group_rational import RANDOM_INIT, GroupRational
from katbench.layers.kan_linear import KANLinear

__all__ = ["RANDOM_INIT", "ChebyKANLinear", "FastKANLinear", "FourierKANLinear", "GRKANLinear",
           "GroupRational", "KANLinear", "init_linear_after_", "rational_linear",
           "variance_preserving_"]
