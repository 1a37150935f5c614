"""katbench pipeline: tasks x mixers x seeds -> results/runs/..., then summary + plots.

    snakemake --cores all                         # quick profile (config/quick.yaml)
    snakemake --cores all --config profile=paper  # paper profile (config/paper.yaml)
    snakemake -n                                  # list the jobs
    snakemake --cores all --config families=function_fitting,pinn   # a subset of families
    snakemake --cores all --config profile=paper tasks=digits,tab_qsar_bio   # a subset of tasks
    snakemake --cores all --keep-going           # let the other jobs finish when one fails
    snakemake --cores 1 --config overrides="trainer.epochs=2"   # key=value for every run
    # your own data (tab_csv, mol_csv, images): every mixer on one file, its own results folder
    snakemake --cores all --config tasks=tab_csv results_dir=results/my overrides="data.path=my.csv data.target=y"
    # a study (studies/<name>.yaml: mixer variants x tasks), its table in results/studies/<name>.md
    snakemake --cores all --config study=grkan_groups
    snakemake --cores all --config study=kan_family profile=paper --resources gpu=<GPUs>

Tasks are discovered from tasks/*.yaml: a task runs in a profile when its `profiles:` section
lists that profile; one with `pipeline.on_request: true` (the own-data tasks tab_csv, mol_csv and
images, whose file comes from `overrides`) only when --config tasks= names it. A task's
`pipeline:` section (threads, gpu, group, seeds, priority), updated by its
`profiles.<profile>.pipeline`, says how it runs: tasks sharing a group run as one job per
mixer (all their tasks and seeds in one process, one run folder each), every other task one job
per (task, mixer, seed); `seeds` replaces the profile's seeds for that task (--config seeds=...
replaces both); higher `priority` starts first (long jobs, so that 2 cores stay busy to the end).
With --config study=<name> the mixers are the study's variants (katbench/studies.py): each runs
in its own folder runs/<task>/<label>/seed<k>/ (label: grkan[num_groups=16] -> grkan-num_groups=16)
with its settings passed as mixer.<key>=<value> overrides; the tasks are the study's (--config
tasks= replaces them), the seeds the profile's; the report adds results/studies/<name>.md. An
unknown study name stops with one line listing the known ones.
The MLflow store is created once, before the parallel jobs (rule tracking_store).
If any job fails, the summary is still written (onerror), naming the runs that are missing.
"""

import re
import shlex
import sys
from pathlib import Path

import yaml

from katbench.studies import Variant, load_study

BASE = Path(workflow.basedir)
PROFILE = config.get("profile", "quick")
_profile_file = BASE / "config" / f"{PROFILE}.yaml"
if not _profile_file.exists():
    known = ", ".join(sorted(p.stem for p in (BASE / "config").glob("*.yaml")))
    raise WorkflowError(f"unknown profile {PROFILE!r}; known: {known}")
SETTINGS = {**yaml.safe_load(_profile_file.read_text()), **config}


def as_list(value):
    """A --config list given as `a,b` or as YAML `[a, b]`."""
    return value.split(",") if isinstance(value, str) else list(value or [])


STUDY = config.get("study")
if STUDY:
    try:
        _study = load_study(str(STUDY), BASE / "studies")
    except ValueError as err:
        raise WorkflowError(str(err)) from None
    VARIANTS = {v.label: v for v in _study.variants}
else:
    VARIANTS = {m: Variant(m) for m in as_list(SETTINGS["mixers"])}
MIXERS = list(VARIANTS)                              # run-folder names: mixers or variant labels
SEEDS = [int(s) for s in as_list(SETTINGS["seeds"])]
R = str(SETTINGS["results_dir"]).rstrip("/")
PY = sys.executable
FAMILIES = set(as_list(SETTINGS.get("families")))   # empty: every family
# empty: every task of those families (a study's tasks, unless --config tasks= names others)
ONLY = set(as_list(SETTINGS.get("tasks") or (_study.tasks if STUDY else None)))
_unknown = ONLY - {p.stem for p in (BASE / "tasks").glob("*.yaml")}
if _unknown:
    raise WorkflowError(f"unknown task(s) {', '.join(sorted(_unknown))} in --config tasks=; "
                        "see tasks/*.yaml")

# task -> its pipeline settings in this profile
TASKS = {}
for _path in sorted((BASE / "tasks").glob("*.yaml")):
    _doc = yaml.safe_load(_path.read_text())
    _profiles = _doc.get("profiles") or {}
    _family = (_doc.get("task") or {}).get("family")
    _named = _path.stem in ONLY
    _on_request = (_doc.get("pipeline") or {}).get("on_request")
    if PROFILE in _profiles and (not FAMILIES or _family in FAMILIES) and (
            _named or not (ONLY or _on_request)):
        TASKS[_path.stem] = {**(_doc.get("pipeline") or {}),
                             **((_profiles[PROFILE] or {}).get("pipeline") or {})}


def seeds_of(task):
    if "seeds" in config or not TASKS[task].get("seeds"):
        return SEEDS
    return [int(s) for s in TASKS[task]["seeds"]]


GROUPS = {}
for _task, _pipe in TASKS.items():
    if _pipe.get("group"):
        GROUPS.setdefault(_pipe["group"], []).append(_task)
for _group, _members in GROUPS.items():
    if len({tuple(seeds_of(t)) for t in _members}) > 1:
        raise WorkflowError(f"pipeline group {_group!r} mixes seed lists "
                            f"{ {t: seeds_of(t) for t in _members} }; give its tasks equal "
                            "`pipeline.seeds` or separate groups")
SINGLE = [t for t, p in TASKS.items() if not p.get("group")]
RUNS = [f"{t}/{m}/seed{s}" for t in TASKS for m in MIXERS for s in seeds_of(t)]


def metrics_of(run):
    return f"{R}/runs/{run}/metrics.json"


def gpus(tasks):
    return max(int(TASKS[t].get("gpu", 0)) for t in tasks) if SETTINGS["use_gpus"] else 0


def priority_of(tasks):
    """Scheduling priority of a job: its tasks' `pipeline.priority` plus the profile's
    `mixer_priority` of its mixer (the slow mixers start first, so no long job runs last)."""
    base = max(int(TASKS[t].get("priority", 0)) for t in tasks)
    bonus = {str(m): int(p) for m, p in (SETTINGS.get("mixer_priority") or {}).items()}
    return lambda wc: base + bonus.get(VARIANTS[wc.mixer].mixer, 0)


def mixer_args(wc):
    """The run's mixer arguments: mixer=<name>, plus a variant's label and settings."""
    return " ".join(shlex.quote(a) for a in VARIANTS[wc.mixer].overrides())


MIXER_PATTERN = "|".join(re.escape(m) for m in MIXERS)


def threads(tasks):
    return max(int(TASKS[t].get("threads", 1)) for t in tasks)


def resume_on_retry(wildcards, attempt):
    """`true` on a retry (`--retries`): a job cut off by scancel, preemption or its time limit
    continues from its checkpoint; a first attempt starts over, as a changed config must."""
    return "true" if attempt > 1 else "false"


COMMON = " ".join([f"profile={PROFILE} results_dir={R} trainer.device={SETTINGS['device']}",
                   str(SETTINGS.get("overrides") or "")]).strip()
STUDY_ARG = f" --study {shlex.quote(str(STUDY))}" if STUDY else ""
REPORT = f"{PY} -m katbench.report {R}{STUDY_ARG} " + " ".join(RUNS)
STUDY_TABLE = [f"{R}/studies/{STUDY}.md"] if STUDY else []


onerror:
    # A failed job stops the run, but the report still shows what finished and what is missing.
    shell(REPORT + " || true")


rule all:
    input:
        f"{R}/summary.csv",
        f"{R}/summary.md",
        STUDY_TABLE,


rule summary:
    input:
        [metrics_of(r) for r in RUNS],
    output:
        csv=f"{R}/summary.csv",
        md=f"{R}/summary.md",
        runs=f"{R}/runs.csv",
        plots=directory(f"{R}/plots"),
        study=STUDY_TABLE,
    params:
        runs=" ".join(RUNS),
    shell:
        "{PY} -m katbench.report {R}{STUDY_ARG} {params.runs}"


rule tracking_store:
    output:
        f"{R}/tracking.ready",
    shell:
        "{PY} -m katbench.tracking {R}"


for _task in SINGLE:

    rule:
        name:
            f"run_{_task}"
        input:
            str(BASE / f"tasks/{_task}.yaml"),
            ancient(f"{R}/tracking.ready"),
        output:
            f"{R}/runs/{_task}/{{mixer}}/seed{{seed}}/metrics.json",
        wildcard_constraints:
            mixer=MIXER_PATTERN,
            seed=r"\d+",
        threads: threads([_task])
        resources:
            gpu=gpus([_task]),
            resume=resume_on_retry,
        priority: priority_of([_task])
        params:
            task=_task,
            mixer=mixer_args,
            common=COMMON,
        shell:
            "{PY} -m katbench.run task={params.task} {params.mixer} "
            "seed={wildcards.seed} trainer.threads={threads} resume={resources.resume} "
            "{params.common}"


for _group, _members in GROUPS.items():

    rule:
        name:
            f"run_group_{_group}"
        input:
            [str(BASE / f"tasks/{t}.yaml") for t in _members],
            ancient(f"{R}/tracking.ready"),
        output:
            expand(f"{R}/runs/{{task}}/{{{{mixer}}}}/seed{{seed}}/metrics.json",
                   task=_members, seed=seeds_of(_members[0])),
        wildcard_constraints:
            mixer=MIXER_PATTERN,
        threads: threads(_members)
        resources:
            gpu=gpus(_members),
            resume=resume_on_retry,
        priority: priority_of(_members)
        params:
            tasks=",".join(_members),
            seeds=",".join(map(str, seeds_of(_members[0]))),
            mixer=mixer_args,
            common=COMMON,
        shell:
            "{PY} -m katbench.run task={params.tasks} {params.mixer} "
            "seed={params.seeds} trainer.threads={threads} resume={resources.resume} "
            "{params.common}"
