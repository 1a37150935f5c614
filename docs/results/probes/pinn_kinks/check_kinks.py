"""Do GR-KAN's kinks at 0 matter in the PINN? Probe behind the pinn_oscillator explanation.

The safe denominator Q = 1 + sum_k |b_k| |x|^k makes every rational's slope jump by
2 a_0 |b_1| where its input crosses 0, and autograd's u'' does not see the jump. For trained
runs (folders holding ``checkpoint.pt`` and ``config.yaml``) this prints the relative L2 error,
autograd u'(0) against the one-sided difference quotient, the dense ODE residual, the largest
step of u' between neighbouring points of a 20,001-point grid, and for GR-KAN each rational's
zero crossings over [0, 1] with its a_0 and |b_1|:

    python docs/results/probes/pinn_kinks/check_kinks.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml

from katbench.models.small import MixerNet
from katbench.tasks.pinn import exact_solution, time_derivatives


def check(run: Path) -> None:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    task, mixer = cfg["task"], dict(cfg["mixer"])
    name = mixer.pop("name")
    net = MixerNet(task["widths"], name, **mixer).double()
    net.load_state_dict(torch.load(run / "checkpoint.pt", weights_only=False,
                                   map_location="cpu")["model"])
    d, w0 = float(task["d"]), float(task["w0"])
    t = torch.linspace(0, float(task["t_max"]), 20001, dtype=torch.float64)[:, None]
    u, du, d2u = (v.detach() for v in time_derivatives(net, t))
    exact = exact_solution(t, d, w0)
    h = 1e-6
    with torch.no_grad():
        u0 = net(torch.tensor([[0.0], [h]], dtype=torch.float64))
    residual = (d2u + 2 * d * du) / w0**2 + u
    steps = (du[1:] - du[:-1]).abs()
    print(f"{run}: rel_l2 {float((u - exact).norm() / exact.norm()):.3g} | autograd u'(0) "
          f"{float(du[0]):.3g}, one-sided {float((u0[1] - u0[0]) / h):.3g} | dense residual "
          f"rms {float(residual.pow(2).mean().sqrt()):.3g} | largest u' step "
          f"{float(steps.max()):.3g} (median {float(steps.median()):.3g})")
    if name != "grkan":
        return
    x = t
    with torch.no_grad():
        for i, block in enumerate(net.blocks):
            for label, rational, inputs in (("act1", block.act1, x),
                                            ("act2", block.act2, block.fc1(block.act1(x)))):
                sign = torch.sign(inputs)
                crossings = int((sign[1:] != sign[:-1]).sum())
                print(f"  block{i}.{label}: {crossings} zero crossings of its inputs; "
                      f"a0={float(rational.numerator[0, 0]):.3g} "
                      f"|b1|={float(rational.denominator[0, 0].abs()):.3g}")
            x = block(x)


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        check(Path(folder))
