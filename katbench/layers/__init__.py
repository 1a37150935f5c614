"""Layers: the group-wise rational activation, the GR-KAN layer and the KAN layers (B-spline,
Gaussian RBF, Chebyshev, Fourier)."""

from katbench.layers.chebykan_linear import ChebyKANLinear
from katbench.layers.fastkan_linear import FastKANLinear
from katbench.layers.fourierkan_linear import FourierKANLinear
from katbench.layers.grkan_linear import GRKANLinear, rational_linear, variance_preserving_
from katbench.layers.group_rational import GroupRational
from katbench.layers.kan_linear import KANLinear

__all__ = ["ChebyKANLinear", "FastKANLinear", "FourierKANLinear", "GRKANLinear",
           "GroupRational", "KANLinear", "rational_linear", "variance_preserving_"]
