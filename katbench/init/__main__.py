"""CLI: ``python -m katbench.init fit`` writes the coefficient table, ``plot`` draws the fits."""

from __future__ import annotations

import argparse
import sys

from katbench.init import COEFFICIENTS_PATH


def _order(text: str) -> tuple[int, int]:
    try:
        m, n = (int(v) for v in text.replace("/", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"order {text!r} must look like 5,4 or 5/4") from None
    return m, n


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors print one line and return 2."""
    from katbench.init import fit

    parser = argparse.ArgumentParser(prog="python -m katbench.init", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fit_cmd = sub.add_parser("fit", help="fit all functions x variants x orders, write the JSON")
    fit_cmd.add_argument("--out", default=str(COEFFICIENTS_PATH))
    plot_cmd = sub.add_parser("plot", help="plot fitted rationals against their targets")
    plot_cmd.add_argument("--out", default="results/init/fits.png")
    plot_cmd.add_argument("--variant", default="sum_abs", choices=fit.VARIANTS)
    plot_cmd.add_argument("--order", type=_order, default=(5, 4))
    args = parser.parse_args(argv)
    try:
        if args.command == "fit":
            path = fit.write_coefficients(fit.fit_all(), args.out)
        else:
            from katbench.init.plot import plot_fits

            path = plot_fits(args.out, args.variant, args.order)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
