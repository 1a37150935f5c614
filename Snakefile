"""katbench pipeline: tasks x mixers x seeds -> results/runs/..., then summary + plots.

    snakemake --cores all                         # quick profile (config/quick.yaml)
    snakemake --cores all --config profile=paper  # paper profile (config/paper.yaml)
    snakemake -n                                  # list the jobs
    snakemake --cores all --config families=function_fitting,pinn   # a subset of families

Tasks are discovered from tasks/*.yaml: a task runs in a profile when its `profiles:` section
lists that profile. Tasks sharing `pipeline.group` run as one job per mixer (all their tasks and
seeds in one process, one run folder each); every other task runs one job per (task, mixer, seed).
The MLflow store is created once, before the parallel jobs (rule tracking_store).
"""

import sys
from pathlib import Path

import yaml

PROFILE = config.get("profile", "quick")
_profile_file = Path("config") / f"{PROFILE}.yaml"
if not _profile_file.exists():
    known = ", ".join(sorted(p.stem for p in Path("config").glob("*.yaml")))
    raise WorkflowError(f"unknown profile {PROFILE!r}; known: {known}")
SETTINGS = {**yaml.safe_load(_profile_file.read_text()), **config}
MIXERS = list(SETTINGS["mixers"])
SEEDS = [int(s) for s in SETTINGS["seeds"]]
R = str(SETTINGS["results_dir"]).rstrip("/")
PY = sys.executable

# --config families=function_fitting,pinn runs a subset of the families.
FAMILIES = SETTINGS.get("families")
FAMILIES = set(FAMILIES.split(",") if isinstance(FAMILIES, str) else FAMILIES or [])

TASKS = {}
for _path in sorted(Path("tasks").glob("*.yaml")):
    _doc = yaml.safe_load(_path.read_text())
    _family = (_doc.get("task") or {}).get("family")
    if PROFILE in (_doc.get("profiles") or {}) and (not FAMILIES or _family in FAMILIES):
        TASKS[_path.stem] = _doc.get("pipeline") or {}
GROUPS = {}
for _task, _pipe in TASKS.items():
    if _pipe.get("group"):
        GROUPS.setdefault(_pipe["group"], []).append(_task)
SINGLE = [t for t, p in TASKS.items() if not p.get("group")]
RUNS = [f"{t}/{m}/seed{s}" for t in TASKS for m in MIXERS for s in SEEDS]


def metrics_of(run):
    return f"{R}/runs/{run}/metrics.json"


def gpus(tasks):
    return max(int(TASKS[t].get("gpu", 0)) for t in tasks) if SETTINGS["use_gpus"] else 0


def threads(tasks):
    return max(int(TASKS[t].get("threads", 1)) for t in tasks)


COMMON = f"profile={PROFILE} results_dir={R} trainer.device={SETTINGS['device']}"


rule all:
    input:
        f"{R}/summary.csv",
        f"{R}/summary.md",


rule summary:
    input:
        [metrics_of(r) for r in RUNS],
    output:
        csv=f"{R}/summary.csv",
        md=f"{R}/summary.md",
        plots=directory(f"{R}/plots"),
    params:
        runs=" ".join(RUNS),
    shell:
        "{PY} -m katbench.report {R} {params.runs}"


rule tracking_store:
    output:
        f"{R}/tracking.ready",
    shell:
        "{PY} -m katbench.tracking {R}"


rule run:
    input:
        "tasks/{task}.yaml",
        ancient(f"{R}/tracking.ready"),
    output:
        f"{R}/runs/{{task}}/{{mixer}}/seed{{seed}}/metrics.json",
    wildcard_constraints:
        task="|".join(SINGLE) or "(?!)",
        mixer="|".join(MIXERS),
        seed=r"\d+",
    threads: lambda wc: threads([wc.task])
    resources:
        gpu=lambda wc: gpus([wc.task]),
    params:
        common=COMMON,
    shell:
        "{PY} -m katbench.run task={wildcards.task} mixer={wildcards.mixer} "
        "seed={wildcards.seed} trainer.threads={threads} {params.common}"


for _group, _members in GROUPS.items():

    rule:
        name:
            f"run_group_{_group}"
        input:
            [f"tasks/{t}.yaml" for t in _members],
            ancient(f"{R}/tracking.ready"),
        output:
            expand(f"{R}/runs/{{task}}/{{{{mixer}}}}/seed{{seed}}/metrics.json",
                   task=_members, seed=SEEDS),
        wildcard_constraints:
            mixer="|".join(MIXERS),
        threads: threads(_members)
        resources:
            gpu=gpus(_members),
        params:
            tasks=",".join(_members),
            seeds=",".join(map(str, SEEDS)),
            common=COMMON,
        shell:
            "{PY} -m katbench.run task={params.tasks} mixer={wildcards.mixer} "
            "seed={params.seeds} trainer.threads={threads} {params.common}"
