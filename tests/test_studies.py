"""Study files: variant parsing, labels and runner overrides; one-line errors for unknown
studies, mixers, settings, tasks and keys; every shipped study loads and its paper entry names
its own variants."""

from __future__ import annotations

import pytest

from katbench.report.runs import paper_studies, paper_values
from katbench.run import _normalise, compose
from katbench.studies import Variant, load_study, parse_variant, study_names

SHIPPED = ["grkan_components", "grkan_denominator", "grkan_groups", "grkan_init", "grkan_order",
           "kan_family"]


@pytest.mark.parametrize("text,label,overrides", [
    ("mlp", "mlp", ["mixer=mlp"]),
    ("grkan[num_groups=16]", "grkan-num_groups=16",
     ["mixer=grkan", "label=grkan-num_groups=16", "mixer.num_groups=16"]),
    ("grkan[order=[3, 2], variant=abs_sum]", "grkan-order=3x2-variant=abs_sum",
     ["mixer=grkan", "label=grkan-order=3x2-variant=abs_sum", "mixer.order=[3,2]",
      "mixer.variant=abs_sum"]),
    (" grkan[num_groups=per_channel,shared_numerator=false] ",
     "grkan-num_groups=per_channel-shared_numerator=false",
     ["mixer=grkan", "label=grkan-num_groups=per_channel-shared_numerator=false",
      "mixer.num_groups=per_channel", "mixer.shared_numerator=false"]),
    ("kan[grid_size=8, spline_order=2]", "kan-grid_size=8-spline_order=2",
     ["mixer=kan", "label=kan-grid_size=8-spline_order=2", "mixer.grid_size=8",
      "mixer.spline_order=2"]),
])
def test_variant_label_and_runner_overrides(text, label, overrides):
    variant = parse_variant(text)
    assert variant.label == label and variant.overrides() == overrides


def test_a_string_hydra_would_read_as_another_type_is_quoted():
    assert Variant("grkan", (("act_init", "null"),)).overrides()[-1] == "mixer.act_init='null'"


@pytest.mark.parametrize("text,message", [
    ("moe[num_groups=2]", "variant 'moe[num_groups=2]': unknown mixer 'moe'; known: mlp, kan, "
                          "grkan, fastkan, chebykan, fourierkan, pau, swiglu"),
    ("grkan[groups=2]", "variant 'grkan[groups=2]': grkan has no setting 'groups'; its "
                        "settings: act_init, first_init, num_groups, order, recompute, "
                        "shared_numerator, variant"),
    ("mlp[act_init=gelu]", "variant 'mlp[act_init=gelu]': mlp has no setting 'act_init'; its "
                           "settings: none"),
    ("grkan[num_groups]", "variant 'grkan[num_groups]': 'num_groups' is not key=value"),
    ("grkan(num_groups=2)", "variant 'grkan(num_groups=2)' is not mixer or "
                            "mixer[key=value, ...] (e.g. grkan[num_groups=16])"),
    ("grkan[act_init=a/b]", "variant 'grkan[act_init=a/b]': its label 'grkan-act_init=a/b' has "
                            "characters a run folder cannot carry"),
])
def test_bad_variants_are_one_line_errors(text, message):
    with pytest.raises(ValueError) as err:
        parse_variant(text)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("body,message", [
    ("variants: [mlp]\nseeds: [0]\n", "studies/s.yaml: unknown key(s) seeds; a study has "
                                      "description, variants, tasks"),
    ("description: nothing\n", "studies/s.yaml lists no variants"),
    ("variants: ['grkan[num_groups=8]', 'grkan[num_groups=8]']\n",
     "studies/s.yaml: variants grkan-num_groups=8 are listed more than once"),
    ("variants: ['grkan[groups=8]']\n", "studies/s.yaml: variant 'grkan[groups=8]': grkan has "
                                        "no setting 'groups'"),
    ("variants: [mlp]\ntasks: [digits, imagenet_22k]\n",
     "studies/s.yaml: unknown task(s) imagenet_22k; see tasks/*.yaml"),
])
def test_bad_study_files_are_one_line_errors(tmp_path, body, message):
    (tmp_path / "s.yaml").write_text(body)
    with pytest.raises(ValueError) as err:
        load_study("s", tmp_path, task_names=["digits"])
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_unknown_study_lists_the_known_ones():
    assert study_names() == SHIPPED
    with pytest.raises(ValueError, match=r"^unknown study 'bogus'; known: grkan_components, "
                                         r"grkan_denominator, grkan_groups, grkan_init, "
                                         r"grkan_order, kan_family \(studies/\*.yaml\)$"):
        load_study("bogus")


def test_shipped_studies_load_and_paper_entries_name_their_variants():
    studies = {name: load_study(name) for name in SHIPPED}
    assert [v.label for v in studies["kan_family"].variants] == [
        "mlp", "swiglu", "kan", "fastkan", "chebykan", "fourierkan", "pau", "grkan"]
    assert studies["kan_family"].tasks is None            # every task of the profile
    # one group only: the fitting nets (widths 2, 5), tab_qsar_bio's 41-wide head
    assert not {"fit_xy", "tab_qsar_bio"} & set(studies["grkan_groups"].tasks)
    assert {"digits", "pattern", "tab_1995_income", "fit_xy"} <= set(studies["grkan_init"].tasks)
    assert "studies" not in paper_values()
    assert set(paper_studies()) == {"grkan_init", "grkan_components", "grkan_groups",
                                    "grkan_order"}
    for name, entry in paper_studies().items():
        labels = {v.label for v in studies[name].variants}
        assert {parse_variant(spec).label for spec in entry["values"]} <= labels, name
    table8 = {parse_variant(k).label: v for k, v in paper_studies()["grkan_init"]["values"].items()}
    assert table8["grkan-first_init=random-act_init=random"] == 53.2
    assert table8["grkan-first_init=identity-act_init=swish"] == 74.6


def test_variant_overrides_compose_over_the_task_settings():
    variant = parse_variant("grkan[num_groups=per_channel, order=[3, 2]]")
    cfg = compose(_normalise(["task=fit_xy", *variant.overrides()]))
    assert cfg.label == "grkan-num_groups=per_channel-order=3x2"
    assert cfg.mixer.num_groups == "per_channel" and list(cfg.mixer.order) == [3, 2]
    plain = compose(_normalise(["task=fit_xy", *parse_variant("grkan").overrides()]))
    assert plain.label is None and plain.mixer.num_groups == 1    # tasks/fit_xy.yaml's
