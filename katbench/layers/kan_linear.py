"""KANLinear: the B-spline KAN layer of efficient-kan (the ``kan`` baseline)."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn


class KANLinear(nn.Module):
    r"""B-spline Kolmogorov–Arnold layer on ``(..., in_features)`` inputs.

    .. math::
        y_j = \sum_i w^{b}_{ji}\, \mathrm{silu}(x_i)
              + \sum_i s_{ji} \sum_{k=1}^{G+K} c_{jik} B_{k,K}(x_i)

    with ``G = grid_size`` intervals on ``grid_range`` extended by ``K = spline_order`` knots
    on each side, and B-spline bases by the Cox–de Boor recursion

    .. math::
        B_{k,0}(x) = [t_k \le x < t_{k+1}], \quad
        B_{k,p}(x) = \frac{x - t_k}{t_{k+p} - t_k} B_{k,p-1}(x)
                   + \frac{t_{k+p+1} - x}{t_{k+p+1} - t_{k+1}} B_{k+1,p-1}(x).

    On the uniform grid (always, unless ``update_grid`` moved the knots) and for K >= 1 the
    same bases are computed from the K + 1 that are nonzero at each x
    (:meth:`uniform_b_splines`): fixed polynomials of x's position in its interval, evaluated
    by Horner's rule in K fused multiply-adds on ``(..., K + 1)`` tensors, then one scatter
    places them (a few operations where the recursion over all knots issues dozens: the
    layer is bound by launching them on a GPU).

    Initialisation follows efficient-kan: ``w^b`` Kaiming-uniform (``a = sqrt(5) *
    scale_base``), ``c`` the least-squares spline of uniform noise of width ``scale_noise / G``,
    ``s`` Kaiming-uniform (``a = sqrt(5) * scale_spline``). ``update_grid(x)`` moves the knots
    to the quantiles of ``x`` (mixed with a uniform grid by ``grid_eps``) keeping the function.
    """

    def __init__(self, in_features: int, out_features: int, grid_size: int = 5,
                 spline_order: int = 3, scale_noise: float = 0.1, scale_base: float = 1.0,
                 scale_spline: float = 1.0,
                 base_activation: Callable[[], nn.Module] = nn.SiLU, grid_eps: float = 0.02,
                 grid_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        if grid_size < 1 or spline_order < 0:
            raise ValueError(f"grid_size={grid_size} must be >= 1 and spline_order="
                             f"{spline_order} >= 0")
        self.in_features, self.out_features = in_features, out_features
        self.grid_size, self.spline_order = grid_size, spline_order
        self.scale_noise, self.scale_base, self.scale_spline = scale_noise, scale_base, scale_spline
        self.grid_eps, self.grid_range = grid_eps, (float(grid_range[0]), float(grid_range[1]))
        self.register_buffer("grid", self._uniform_grid())
        # uniform_b_splines' constants (not state: derived from the settings); the pieces'
        # coefficients times K! are integers, exact in any dtype, so the pieces join as smoothly
        # in float64 as the recursion's (a PINN's second derivatives)
        self.basis_scale = 1.0 / math.factorial(spline_order)
        self.register_buffer("horner", torch.round(
            uniform_basis_polynomials(spline_order) / self.basis_scale).to(
            torch.get_default_dtype()), persistent=False)
        self.register_buffer("offsets", torch.arange(spline_order + 1) - spline_order,
                             persistent=False)
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(
            torch.empty(out_features, in_features, grid_size + spline_order))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features))
        self.base_activation = base_activation()
        self.uniform = True   # whether the knots are _uniform_grid()'s (b_splines' fast path)
        self.register_load_state_dict_post_hook(KANLinear._check_grid)
        self.reset_parameters()

    def _uniform_grid(self) -> torch.Tensor:
        """Knots ``(in_features, G + 2K + 1)``: uniform on grid_range, K extra on each side."""
        low, high = self.grid_range
        h = (high - low) / self.grid_size
        knots = torch.arange(-self.spline_order, self.grid_size + self.spline_order + 1) * h + low
        return knots.expand(self.in_features, -1).contiguous()

    @staticmethod
    def _check_grid(module: KANLinear, _incompatible_keys: object) -> None:
        """After ``load_state_dict``: whether the loaded knots are the uniform grid."""
        uniform = module._uniform_grid().to(module.grid.dtype)
        module.uniform = torch.allclose(module.grid.cpu(), uniform)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Uniform grid and efficient-kan's initialisation of all weights."""
        self.grid.copy_(self._uniform_grid())
        self.uniform = True
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5) * self.scale_base)
        noise = (torch.rand(self.grid_size + 1, self.in_features, self.out_features) - 0.5) \
            * self.scale_noise / self.grid_size
        knots = self.grid.T[self.spline_order:-self.spline_order] if self.spline_order else \
            self.grid.T
        self.spline_weight.copy_(self.curve2coeff(knots, noise))
        nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5) * self.scale_spline)

    def b_splines(self, x: torch.Tensor) -> torch.Tensor:
        """B-spline bases of ``x`` ``(batch, in)`` -> ``(batch, in, G + K)``."""
        if self.uniform and self.spline_order > 0:   # (order 0 bases jump at the knots)
            return self.uniform_b_splines(x)
        return self.cox_de_boor(x)

    def uniform_b_splines(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`b_splines` on the uniform grid, from the K + 1 bases nonzero at each x.

        With u = (x - t_0) / h, c = floor(u) and f = u - c, the bases B_{c-K+m} (m = 0..K) are
        polynomials in f (:func:`uniform_basis_polynomials`; K! times them, integer
        coefficients, by Horner's rule, then the factor 1 / K!); those
        of index outside 0..G+K-1, and every basis of an x outside [t_0, t_{G+2K}), are zero, as
        the recursion gives them. For K >= 1 the bases are continuous, so an x within rounding
        of a knot, whose interval u may place on either side, gets the same values to float
        precision.
        """
        g, k = self.grid_size, self.spline_order
        low, high = self.grid_range
        step = (high - low) / g
        u = (x - (low - k * step)) / step
        cell = torch.floor(u)
        frac = (u - cell).unsqueeze(-1)
        horner = self.horner.to(x.dtype).unbind()   # rows as views in one op (not K + 1)
        bases = torch.addcmul(horner[k - 1], horner[k], frac)
        for power in range(k - 2, -1, -1):
            bases = torch.addcmul(horner[power], bases, frac)
        index = cell.long().unsqueeze(-1) + self.offsets
        inside = (index >= 0) & (index < g + k)
        return x.new_zeros(*x.shape, g + k).scatter_add_(
            -1, index.clamp(0, g + k - 1), bases * self.basis_scale * inside)

    def cox_de_boor(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`b_splines` on any grid, by the Cox–de Boor recursion over all knots."""
        grid = self.grid
        x = x.unsqueeze(-1)
        bases = ((x >= grid[:, :-1]) & (x < grid[:, 1:])).to(x.dtype)
        for k in range(1, self.spline_order + 1):
            left = (x - grid[:, :-(k + 1)]) / (grid[:, k:-1] - grid[:, :-(k + 1)])
            right = (grid[:, k + 1:] - x) / (grid[:, k + 1:] - grid[:, 1:-k])
            bases = left * bases[..., :-1] + right * bases[..., 1:]
        return bases

    def curve2coeff(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Least-squares spline coefficients ``(out, in, G + K)`` with bases(x) @ c ≈ y.

        ``x`` is ``(batch, in)``, ``y`` is ``(batch, in, out)``.
        """
        bases = self.b_splines(x).transpose(0, 1)  # (in, batch, coeff)
        solution = torch.linalg.lstsq(bases, y.transpose(0, 1)).solution  # (in, coeff, out)
        return solution.permute(2, 0, 1).contiguous()

    @property
    def scaled_spline_weight(self) -> torch.Tensor:
        """Spline coefficients times their per-edge scale: ``(out, in, G + K)``."""
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, self.in_features)
        base = F.linear(self.base_activation(x), self.base_weight)
        spline = F.linear(self.b_splines(x).reshape(x.shape[0], -1),
                          self.scaled_spline_weight.reshape(self.out_features, -1))
        return (base + spline).reshape(*shape[:-1], self.out_features)

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, margin: float = 0.01) -> None:
        """Refit the knots to the distribution of ``x`` ``(..., in)``, preserving the splines."""
        x = x.reshape(-1, self.in_features)
        batch = x.shape[0]
        splines = self.b_splines(x).permute(1, 0, 2)  # (in, batch, coeff)
        coefficients = self.scaled_spline_weight.permute(1, 2, 0)  # (in, coeff, out)
        values = torch.bmm(splines, coefficients).permute(1, 0, 2)  # (batch, in, out)
        x_sorted = torch.sort(x, dim=0).values
        index = torch.linspace(0, batch - 1, self.grid_size + 1, device=x.device).long()
        adaptive = x_sorted[index]
        step = (x_sorted[-1] - x_sorted[0] + 2 * margin) / self.grid_size
        uniform = torch.arange(self.grid_size + 1, dtype=x.dtype, device=x.device)[:, None] \
            * step + x_sorted[0] - margin
        grid = self.grid_eps * uniform + (1 - self.grid_eps) * adaptive
        side = torch.arange(1, self.spline_order + 1, dtype=x.dtype, device=x.device)[:, None]
        grid = torch.cat([grid[:1] - step * side.flip(0), grid, grid[-1:] + step * side])
        self.grid.copy_(grid.T)
        self.uniform = False
        self.spline_scaler.fill_(1.0)  # the refit coefficients already carry the scale
        self.spline_weight.copy_(self.curve2coeff(x, values))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"grid_size={self.grid_size}, spline_order={self.spline_order}")


def uniform_basis_polynomials(order: int) -> torch.Tensor:
    """``(K + 1, K + 1)``: row j holds the coefficients of f^j in the K + 1 uniform B-splines
    of order K = ``order`` nonzero on an interval, f in [0, 1) the position in it (column m:
    the basis starting m - K intervals before it). They follow Cox–de Boor with equally spaced
    knots, b^p_m = ((f + p - m) b^{p-1}_{m-1} + (m + 1 - f) b^{p-1}_m) / p from b^0_0 = 1,
    computed here on exact fractions."""
    bases = [[Fraction(1)]]            # bases[m][j]: coefficient of f^j in b^p_m
    for p in range(1, order + 1):
        padded = [[Fraction(0)] * p] + [b + [Fraction(0)] for b in bases] + [[Fraction(0)] * p]
        bases = []
        for m in range(p + 1):
            left, right = padded[m], padded[m + 1]   # b^{p-1}_{m-1}, b^{p-1}_m
            coeffs = [Fraction(0)] * (p + 1)
            for j in range(p):
                coeffs[j] += (p - m) * left[j] + (m + 1) * right[j]
                coeffs[j + 1] += left[j] - right[j]
            bases.append([c / p for c in coeffs])
    return torch.tensor([[float(bases[m][j]) for m in range(order + 1)]
                         for j in range(order + 1)], dtype=torch.float64)
