"""Equal parameter budgets: the width solver, its log line and the families that use it."""

from __future__ import annotations

import json

import pytest
import torch

from katbench.mixers import MIXERS
from katbench.models.budget import (
    BudgetSolution,
    hidden_for_budget,
    hidden_step,
    parse_budget,
    solve_hidden,
)
from katbench.models.small import MixerNet, mixer_net, with_hidden
from katbench.run import compose, main
from katbench.tasks import build_task


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def net_count(widths: list[int]):
    return lambda name, kwargs, hidden: params(MixerNet(with_hidden(widths, hidden), name,
                                                        **kwargs))


@pytest.mark.parametrize(("value", "parsed"), [(None, None), ("mlp", "mlp"), (150, 150),
                                               ("150", 150), ("1_000", 1000)])
def test_parse_budget(value, parsed):
    assert parse_budget(value) == parsed


@pytest.mark.parametrize("value", ["half", 0, -5, True, 1.5])
def test_bad_budget_names_the_value_and_the_choices(value):
    with pytest.raises(ValueError, match=rf"param_budget={value!r}; use null .* mlp .* positive"):
        parse_budget(value)


def test_solver_picks_the_closest_multiple_of_the_step():
    assert solve_hidden(lambda h: 30 * h, 21) == (1, 30)          # the narrowest is closest
    assert solve_hidden(lambda h: 30 * h, 150, start=64) == (5, 150)
    assert solve_hidden(lambda h: 100 + 10 * h, 1234, step=8) == (112, 1220)  # not 120: 1300
    assert solve_hidden(lambda h: 10 * h, 45) == (4, 40)          # a tie goes to the narrower
    with pytest.raises(ValueError, match="stays at 7 whatever the hidden width"):
        solve_hidden(lambda h: 7, 100)


def test_hidden_step_is_the_groups_of_mixers_that_take_them():
    assert hidden_step("grkan", {}) == 8 and hidden_step("grkan", {"num_groups": 2}) == 2
    assert hidden_step("grkan", {"num_groups": "per_channel"}) == 1   # any width fits
    assert {hidden_step(name, {}) for name in MIXERS if name != "grkan"} == {1}
    with pytest.raises(ValueError, match="unknown mixer 'moe'"):
        hidden_step("moe", {})


@pytest.mark.parametrize("widths", [[8, 64, 8], [16, 64, 16, 64, 1], [32, 128, 32]])
@pytest.mark.parametrize("name", MIXERS)
def test_every_mixer_lands_on_the_closest_count_within_one_percent_where_possible(name,
                                                                                   widths):
    kwargs = {"num_groups": 8} if name == "grkan" else {}
    count = net_count(widths)
    target = count("mlp", {}, None)
    hidden = hidden_for_budget("mlp", name, kwargs, count, start=widths[1])
    step = hidden_step(name, kwargs)
    got = count(name, kwargs, hidden)
    neighbours = [count(name, kwargs, h) for h in (hidden - step, hidden + step) if h >= step]
    assert all(abs(got - target) <= abs(n - target) for n in neighbours)
    if max(abs(n - got) for n in neighbours) < 0.02 * target:   # fine enough for 1%
        assert abs(got / target - 1) <= 0.01, (name, hidden, got, target)


def test_the_fitting_probe_widths_are_found_again(capsys):
    """docs/results/probes/fit_equal_params chose [2, 37, 1] (mlp) and [2, 32, 1] (grkan) by hand
    for the B-spline KAN's 150 parameters."""
    count = net_count([2, 5, 1])
    assert hidden_for_budget(150, "mlp", {}, count, 5) == 37
    assert hidden_for_budget(150, "grkan", {"num_groups": 1}, count, 5) == 32
    assert hidden_for_budget(None, "kan", {}, count, 5) is None
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["param_budget 150 (given): mlp hidden 37 -> 149 parameters (-0.67%)",
                     "param_budget 150 (given): grkan hidden 32 -> 149 parameters (-0.67%)"]


def test_too_coarse_a_width_is_said_to_be_the_closest_achievable():
    line = BudgetSolution("kan", 1, 30, 21, "mlp", 1).describe()
    assert line == ("param_budget 21 (the mlp mixer's count): kan hidden 1 -> 30 parameters "
                    "(+42.86%); the closest achievable: one unit of hidden width moves the count "
                    "by more than 1%")
    assert "multiples of num_groups=8" in BudgetSolution("grkan", 8, 130, 100, 100, 8).describe()


def test_solving_leaves_the_random_state_alone():
    torch.manual_seed(0)
    plain = mixer_net([2, 5, 1], "kan", {})
    torch.manual_seed(0)
    solved = mixer_net([2, 5, 1], "kan", {}, param_budget=150)   # builds several nets first
    for a, b in zip(plain.parameters(), solved.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(("task", "mixer"), [("digits", "kan"), ("tab_qsar_bio", "swiglu")])
def test_task_families_solve_for_the_mlp_count(task, mixer):
    """ViT and TabTransformer (its head mixer's width, the FF blocks' in proportion); the
    graph family: tests/models/test_graph_transformer.py."""
    def built(name: str, budget: str) -> int:
        cfg = compose([f"tasks={task}", f"mixer={name}", "profile=quick",
                       f"param_budget={budget}"])
        return params(build_task(cfg).model)

    target = built("mlp", "null")
    assert built(mixer, "null") != target
    assert abs(built(mixer, "mlp") / target - 1) < 0.01


def test_a_run_logs_the_solved_width_and_records_its_parameter_count(tmp_path, capsys):
    assert main(["task=fit_xy", "mixer=kan", "param_budget=mlp", "trainer.epochs=2",
                 "tracking.enabled=false", f"results_dir={tmp_path}"]) == 0
    assert "param_budget 21 (the mlp mixer's count): kan hidden 1 -> 30 parameters" \
        in capsys.readouterr().err
    metrics = json.loads((tmp_path / "runs/fit_xy/kan/seed0/metrics.json").read_text())
    assert metrics["params"] == 30
    assert "param_budget: mlp" in (tmp_path / "runs/fit_xy/kan/seed0/config.yaml").read_text()
