"""Learning curves from the trainer's log lines (``trainer.progress=log``), for runs made where
MLflow was not installed (the lent GPU machines): one panel per metric, one line per log file.

    python scripts/plot_log_curves.py docs/measurements/h100-zinc/*.txt \\
        --metrics val_mae_micro_zinc test_mae_micro_zinc --out curves.png

A log line reads ``<task>/<mixer>/s<seed> epoch <e>/<E> key=value ...``; lines without the
metric are skipped. Files with the same mixer are drawn in the same colour.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LINE = re.compile(r"^(?P<run>\S+)/s(?P<seed>\d+) epoch (?P<epoch>\d+)/\d+ (?P<values>.*)$")


def read_curves(path: Path) -> tuple[str, dict[str, list[tuple[int, float]]]]:
    """``(run name, {metric: [(epoch, value), ...]})`` from one log file."""
    name, curves = path.stem, {}
    for line in path.read_text().splitlines():
        match = LINE.match(line.strip())
        if not match:
            continue
        name = f"{match['run']}/s{match['seed']}"
        for pair in match["values"].split():
            key, _, value = pair.partition("=")
            curves.setdefault(key, []).append((int(match["epoch"]), float(value)))
    return name, curves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("--metrics", nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ylim", type=float, nargs=2, default=None)
    args = parser.parse_args(argv)
    runs = [read_curves(path) for path in args.logs]
    mixers = sorted({name.split("/")[1] for name, _ in runs if name.count("/") >= 2})
    colours = {m: f"C{i}" for i, m in enumerate(mixers)}
    fig, axes = plt.subplots(1, len(args.metrics), figsize=(5 * len(args.metrics), 3.6),
                             squeeze=False)
    for ax, metric in zip(axes[0], args.metrics, strict=True):
        for name, curves in runs:
            if metric not in curves:
                continue
            epochs, values = zip(*curves[metric], strict=True)
            mixer = name.split("/")[1] if name.count("/") >= 2 else name
            ax.plot(epochs, values, color=colours.get(mixer), label=name, lw=1.2)
        ax.set(xlabel="epoch", title=metric)
        if args.ylim:
            ax.set_ylim(*args.ylim)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
