"""Fitted rational coefficients: reproducible fits, exact identity, gains, loader errors, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from katbench.init import COEFFICIENTS_PATH, available, rational_init
from katbench.init.__main__ import main
from katbench.init.fit import (
    INTERVAL,
    NUM_POINTS,
    ORDERS,
    TARGETS,
    VARIANTS,
    fit_rational_coefficients,
    gain,
    rational_numpy,
)
from katbench.ops import group_rational

GRID = np.linspace(*INTERVAL, NUM_POINTS)


def test_table_covers_every_function_variant_and_order():
    table = available()
    assert set(table) == set(TARGETS)
    for function in TARGETS:
        assert set(table[function]) == set(VARIANTS)
        for variant in VARIANTS:
            assert table[function][variant] == sorted(f"{m}/{n}" for m, n in ORDERS)


@pytest.mark.parametrize(("function", "variant", "order", "warm_order"), [
    ("gelu", "abs_sum", (3, 2), None),            # first order of the chain: no warm start
    ("gelu", "sum_abs", (5, 4), (4, 3)),          # the default, warm-started like fit_all
    ("relu", "sum_abs", (5, 4), (4, 3)),
])
def test_refit_reproduces_the_committed_entry(function, variant, order, warm_order):
    stored = rational_init(function, variant, order)
    warm = None
    if warm_order is not None:
        below = rational_init(function, variant, warm_order)
        warm = (below.numerator, below.denominator)
    num, den, mse = fit_rational_coefficients(function, variant, order, warm)
    assert mse == pytest.approx(stored.mse, rel=1e-3)
    np.testing.assert_allclose(num, stored.numerator, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(den, stored.denominator, rtol=1e-4, atol=1e-6)


def test_stored_mse_matches_the_stored_coefficients_and_falls_with_order():
    for function, target in TARGETS.items():
        for variant in VARIANTS:
            mses = []
            for order in ORDERS:
                fit = rational_init(function, variant, order)
                mse = np.mean((rational_numpy(GRID, fit.numerator, fit.denominator, variant)
                               - target(GRID)) ** 2)
                assert mse == pytest.approx(fit.mse, rel=1e-6, abs=1e-20)
                mses.append(fit.mse)
            assert all(b <= a * (1 + 1e-6) + 1e-15 for a, b in zip(mses, mses[1:], strict=False))


def test_default_order_fits_are_accurate():
    worst = {"relu": 5e-5, "leaky_relu": 5e-5, "gelu": 1e-6}
    for function in TARGETS:
        for variant in VARIANTS:
            assert rational_init(function, variant).mse < worst.get(function, 1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_identity_fit_is_exact(variant):
    fit = rational_init("identity", variant)
    x = np.linspace(-10, 10, 2001)   # beyond the fit interval too
    np.testing.assert_allclose(rational_numpy(x, fit.numerator, fit.denominator, variant), x,
                               atol=1e-12)
    assert fit.mse < 1e-25
    assert fit.gain == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("variant", VARIANTS)
def test_numpy_rational_agrees_with_the_op(variant):
    rng = np.random.default_rng(1)
    num, den = rng.normal(0, 0.5, (3, 6)), rng.normal(0, 0.5, (3, 4))
    x = rng.normal(0, 2, (50, 12))
    expected = np.concatenate([rational_numpy(x[:, 4 * j:4 * j + 4], num[j], den[j], variant)
                               for j in range(3)], axis=1)
    got = group_rational(torch.tensor(x), torch.tensor(num), torch.tensor(den), variant)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_gains_match_monte_carlo():
    x = np.random.default_rng(0).standard_normal(1_000_000)
    for function in TARGETS:
        for variant in VARIANTS:
            fit = rational_init(function, variant)
            f2 = rational_numpy(x, fit.numerator, fit.denominator, variant) ** 2
            tolerance = 4 * f2.std() / np.sqrt(x.size)   # 4 standard errors
            assert abs(f2.mean() - fit.gain) < tolerance, (function, variant)


def test_gains_of_known_functions():
    assert rational_init("relu").gain == pytest.approx(0.5, abs=2e-3)   # E[relu(x)^2] = 1/2
    assert rational_init("gelu").gain == pytest.approx(0.4252, abs=1e-3)
    assert rational_init("swish").gain == pytest.approx(0.3557, abs=1e-3)
    assert gain([0.0, 1.0], [0.0]) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize(("args", "message"), [
    (("softsign",), r"unknown init function 'softsign'; known: \[.*'gelu'.*'swish'"),
    (("gelu", "abs_abs"), r"unknown variant 'abs_abs' for 'gelu'; known: \['abs_sum', 'sum_abs'"),
    (("gelu", "sum_abs", (9, 9)), r"no fitted order \(9, 9\).*known orders \(m/n\): \['3/2'"),
])
def test_unknown_names_raise_with_the_known_ones(args, message):
    with pytest.raises(ValueError, match=message):
        rational_init(*args)


def test_fit_rejects_unknown_function():
    with pytest.raises(ValueError, match="unknown function 'softsign'"):
        fit_rational_coefficients("softsign")


def test_json_holds_the_documented_fields():
    table = json.loads(COEFFICIENTS_PATH.read_text())
    entry = table["coefficients"]["gelu"]["sum_abs"]["5/4"]
    assert set(entry) == {"numerator", "denominator", "mse", "gain"}
    assert (len(entry["numerator"]), len(entry["denominator"])) == (6, 4)
    assert table["interval"] == [-3.0, 3.0] and table["num_points"] == 1000


def test_cli_plot_writes_png_and_bad_order_exits_2(tmp_path, capsys):
    out = tmp_path / "fits.png"
    assert main(["plot", "--out", str(out), "--order", "3,2"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", "--out", str(out), "--order", "9/9"]) == 2
    assert "no fitted order (9, 9)" in capsys.readouterr().err
