"""Layers: the group-wise rational activation, the GR-KAN layer and the B-spline KAN layer."""

from katbench.layers.grkan_linear import GRKANLinear, rational_linear, variance_preserving_
from katbench.layers.group_rational import GroupRational
from katbench.layers.kan_linear import KANLinear

__all__ = ["GRKANLinear", "GroupRational", "KANLinear", "rational_linear", "variance_preserving_"]
