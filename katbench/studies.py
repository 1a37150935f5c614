"""Studies: named sets of mixer variants x tasks (``studies/<name>.yaml``), one command each.

A study file::

    description: GR-KAN with 1 to 32 rational groups (KAT Table 16).
    variants: ["grkan[num_groups=1]", "grkan[num_groups=2]", ...]
    tasks: [digits, pattern, ...]     # optional: default, every task of the pipeline profile

A variant is a registered mixer, optionally with settings: ``mixer`` or
``mixer[key=value, key=value]`` (values in YAML: ``16``, ``random``, ``[3, 2]``, ``false``;
keys are the mixer's :func:`~katbench.mixers.mixer_settings`). Settings the variant does not
give come from the task file (``mixers.<mixer>``), as for any run. Its **label** names its run
folder (``runs/<task>/<label>/seed<k>/``) and its column in the report: the mixer, then
``-key=value`` per setting in the written order, a list's items joined by ``x``
(``grkan[order=[3, 2]]`` -> ``grkan-order=3x2``); a variant without settings is labelled by its
mixer. ``snakemake --config study=<name>`` runs every variant on every task (docs/studies.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

STUDIES_DIR = Path(__file__).parents[1] / "studies"
STUDY_KEYS = ("description", "variants", "tasks")
_SPEC = re.compile(r"(?P<mixer>[A-Za-z0-9_]+)(?:\[(?P<settings>.*)\])?")
_LABEL = re.compile(r"[A-Za-z0-9_.+=-]+")
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")   # strings Hydra reads back unquoted, except:
_HYDRA_WORDS = {"true", "false", "null", "inf", "nan"}


def _text(value: Any) -> str:
    """A setting's value as label text: lists joined by ``x``, booleans lower case."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "x".join(_text(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class Variant:
    """A mixer and the settings that override the task's ``mixers.<mixer>`` ones."""

    mixer: str
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        """Run-folder name and report column, e.g. ``grkan-num_groups=16``."""
        return "".join([self.mixer, *(f"-{k}={_text(v)}" for k, v in self.settings)])

    def overrides(self) -> list[str]:
        """``python -m katbench.run`` arguments selecting this variant: ``mixer=``, and for one
        with settings ``label=`` and ``mixer.<key>=<value>`` per setting."""
        from katbench.run import override_value

        if not self.settings:
            return [f"mixer={self.mixer}"]
        values = [(k, v if isinstance(v, str) and _PLAIN.fullmatch(v) and
                   v.lower() not in _HYDRA_WORDS else override_value(v)) for k, v in self.settings]
        return [f"mixer={self.mixer}", f"label={self.label}",
                *(f"mixer.{k}={v}" for k, v in values)]


def split_top_level(text: str) -> list[str]:
    """``"a=1, b=[3, 2]"`` -> ``["a=1", "b=[3, 2]"]``: commas outside brackets split."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [p.strip() for p in [*parts, text[start:]] if p.strip()]


def parse_variant(text: str) -> Variant:
    """``"grkan[num_groups=16, order=[3, 2]]"`` -> :class:`Variant`, checked against the mixer
    registry: an unknown mixer or setting, or a malformed variant, is a one-line
    ``ValueError`` naming the fix."""
    from katbench.mixers import MIXERS, mixer_settings

    match = _SPEC.fullmatch(str(text).strip())
    if match is None:
        raise ValueError(f"variant {text!r} is not mixer or mixer[key=value, ...] "
                         "(e.g. grkan[num_groups=16])")
    mixer = match["mixer"]
    if mixer not in MIXERS:
        raise ValueError(f"variant {text!r}: unknown mixer {mixer!r}; known: "
                         f"{', '.join(MIXERS)}")
    settings = []
    for item in split_top_level(match["settings"] or ""):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not value.strip():
            raise ValueError(f"variant {text!r}: {item!r} is not key=value")
        known = mixer_settings(mixer)
        if key not in known:
            raise ValueError(f"variant {text!r}: {mixer} has no setting {key!r}; its settings: "
                             f"{', '.join(known) or 'none'}")
        settings.append((key, yaml.safe_load(value)))
    variant = Variant(mixer, tuple(settings))
    if not _LABEL.fullmatch(variant.label):
        raise ValueError(f"variant {text!r}: its label {variant.label!r} has characters a run "
                         "folder cannot carry; use plain values (letters, digits, _ . + -)")
    return variant


@dataclass(frozen=True)
class Study:
    """A study file: its name, description, variants and tasks (``None``: the profile's)."""

    name: str
    description: str
    variants: tuple[Variant, ...]
    tasks: tuple[str, ...] | None


def study_names(studies_dir: Path = STUDIES_DIR) -> list[str]:
    """The shipped studies: the stems of ``studies/*.yaml``."""
    return sorted(p.stem for p in studies_dir.glob("*.yaml"))


def load_study(name: str, studies_dir: Path = STUDIES_DIR,
               task_names: list[str] | None = None) -> Study:
    """Read and check ``studies/<name>.yaml``. An unknown study, key, mixer, setting or task
    (``task_names``: the known ones, default ``tasks/*.yaml``), no variants or two variants
    with one label are one-line ``ValueError``s."""
    path = studies_dir / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown study {name!r}; known: "
                         f"{', '.join(study_names(studies_dir)) or 'none'} (studies/*.yaml)")
    doc = yaml.safe_load(path.read_text()) or {}
    where = f"studies/{name}.yaml"
    unknown = sorted(set(doc) - set(STUDY_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; a study has "
                         f"{', '.join(STUDY_KEYS)}")
    if not doc.get("variants"):
        raise ValueError(f"{where} lists no variants; add variants: [mixer[key=value], ...]")
    try:
        variants = tuple(parse_variant(v) for v in doc["variants"])
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    labels = [v.label for v in variants]
    twice = sorted({lab for lab in labels if labels.count(lab) > 1})
    if twice:
        raise ValueError(f"{where}: variants {', '.join(twice)} are listed more than once")
    tasks = doc.get("tasks")
    if tasks is not None:
        from katbench.run import task_names as known_tasks

        known = task_names if task_names is not None else known_tasks()
        missing = [t for t in tasks if t not in known]
        if missing:
            raise ValueError(f"{where}: unknown task(s) {', '.join(missing)}; see tasks/*.yaml")
        tasks = tuple(tasks)
    return Study(name, " ".join(str(doc.get("description", "")).split()), variants, tasks)
