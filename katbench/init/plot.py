"""Grid of fitted rationals against their targets (the paper's Figure 3), one panel per function."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from katbench.init import COEFFICIENTS_PATH, rational_init
from katbench.init.fit import INTERVAL, TARGETS, rational_numpy


def plot_fits(out: str | Path, variant: str = "sum_abs", order: tuple[int, int] = (5, 4),
              path: str | Path = COEFFICIENTS_PATH) -> Path:
    """Draw every fitted function of ``variant``/``order`` over [-4, 4] (fit range shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    functions = list(TARGETS)
    cols = 4
    rows = -(-len(functions) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    x = np.linspace(INTERVAL[0] - 1.0, INTERVAL[1] + 1.0, 801)
    for ax, function in zip(axes.flat, functions, strict=False):
        fit = rational_init(function, variant, order, path=path)
        ax.axvspan(*INTERVAL, color="0.93", zorder=0)
        ax.plot(x, TARGETS[function](x), color="tab:red", lw=2.5, label="target")
        ax.plot(x, rational_numpy(x, fit.numerator, fit.denominator, variant), "--",
                color="tab:blue", lw=1.8, label="rational")
        ax.set_title(f"{function}  MSE {fit.mse:.1e}  α {fit.gain:.3f}", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(functions):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8, loc="upper left")
    m, n = order
    fig.suptitle(f"Rational fits, variant {variant}, order m={m}, n={n} "
                 f"(fit on {list(INTERVAL)}, shaded)", fontsize=11)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
