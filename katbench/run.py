"""Command line: ``python -m katbench.run task=<name> mixer=<mlp|kan|grkan> seed=<k> [key=value]``.

Composes the Hydra config (``katbench/conf/config.yaml`` + ``conf/mixer/<mixer>.yaml`` + the
repo's ``tasks/<task>.yaml``), layers the task's per-mixer settings (``mixers.<mixer>``) and, with
``profile=<p>``, its pipeline profile overrides (``profiles.<p>``) under the command line's own
overrides, and calls :func:`katbench.experiment.run_experiment`. Comma lists sweep in one process
(``task=fit_xy,fit_x_div_y seed=0,1,2``): one run folder per combination, one torch import.

User errors (unknown task, mixer or key, bad values) print one line and exit with status 2;
``--debug`` (or ``KATBENCH_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

CONF_DIR = Path(__file__).parent / "conf"
MIXER_NAMES = sorted(p.stem for p in (CONF_DIR / "mixer").glob("*.yaml"))
# Keys the task files own; they steer composition and are dropped from the saved run config.
LAYER_KEYS = ("profiles", "mixers", "pipeline")


def tasks_dir() -> Path:
    """``$KATBENCH_TASKS_DIR``, else ``tasks/`` of the source checkout."""
    return Path(os.environ.get("KATBENCH_TASKS_DIR", Path(__file__).parents[1] / "tasks"))


def task_names() -> list[str]:
    """Names of the tasks: the stems of ``tasks/*.yaml``."""
    return sorted(p.stem for p in tasks_dir().glob("*.yaml"))


class UsageError(ValueError):
    """A bad command line or config value; shown as one line, exit status 2."""


def override_value(value: Any) -> str:
    """A Python value as a Hydra override value (quoted strings, lists, dicts, null)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _flat(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out += _flat(value, f"{name}.") if isinstance(value, dict) and value else [(name, value)]
    return out


def _normalise(overrides: list[str]) -> list[str]:
    """``task=x`` selects from the ``tasks`` group; check task and mixer names up front."""
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"argument {item!r} is not key=value; try --help")
        if key == "task":
            key = "tasks"
        if key.startswith("mixer."):
            key = f"++{key}"    # mixer settings are free keyword arguments of the mixer
        if key == "label":
            value = override_value(value)   # a study label holds '=', which Hydra reads only quoted
        for name in value.split(",") if key in ("tasks", "mixer") else []:
            known = task_names() if key == "tasks" else MIXER_NAMES
            if name not in known:
                raise UsageError(f"unknown {key.rstrip('s')} {name!r}; known: {', '.join(known)}")
        out.append(f"{key}={value}")
    return out


def expand(overrides: list[str]) -> list[list[str]]:
    """Cartesian product of comma-list (sweep) overrides, each a plain override list."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
               if o.is_sweep_override() else [o.input_line] for o in parsed]
    return [list(combo) for combo in itertools.product(*choices)]


def compose(overrides: list[str]) -> Any:
    """Compose one run config from plain (non-sweep) overrides, task layers applied."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    search = f"hydra.searchpath=[file://{_search_root(tasks_dir().resolve())}]"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        base = hydra_compose("config", overrides=[search, *overrides])
        layers = OmegaConf.to_container(base, resolve=False)
        task = layers.get("task", {}).get("name")
        profile, mixer = layers["profile"], layers["mixer"]["name"]
        extra = [f"++mixer.{k}={override_value(v)}"
                 for k, v in _flat(layers["mixers"].get(mixer) or {})]
        if profile is not None:
            if profile not in layers["profiles"]:
                raise UsageError(f"task {task!r} has no profile {profile!r}; its profiles: "
                                 f"{', '.join(layers['profiles']) or 'none'}")
            # `pipeline` settings schedule jobs (Snakefile); they are not run config.
            settings = {k: v for k, v in (layers["profiles"][profile] or {}).items()
                        if k != "pipeline"}
            extra += [f"{k}={override_value(v)}" for k, v in _flat(settings)]
        cfg = hydra_compose("config", overrides=[search, *extra, *overrides]) if extra else base
    chosen = [o.partition("=")[2] for o in overrides if o.startswith("tasks=")]
    if chosen and task != chosen[-1]:
        raise UsageError(f"tasks/{chosen[-1]}.yaml sets task.name={task!r}; make them equal")
    with open_dict(cfg):
        for key in LAYER_KEYS:
            cfg.pop(key, None)
    return cfg


@functools.cache
def _search_root(tasks: Path) -> Path:
    """A folder holding only ``tasks``, a link to (else a copy of) the tasks folder: Hydra's
    search path. Hydra reads every folder of a search-path entry as a config group, so with the
    tasks folder's own parent there, a folder beside it named like a key (``resume/``,
    ``seed/``) would turn ``key=value`` into a choice of that group."""
    root = Path(tempfile.mkdtemp(prefix="katbench-configs-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    try:
        (root / "tasks").symlink_to(tasks, target_is_directory=True)
    except OSError:   # no symbolic links (e.g. Windows without the privilege)
        shutil.copytree(tasks, root / "tasks")
    return root


def _one_line(err: BaseException) -> str:
    """Hydra's multi-line messages cut to their first line, with the fix where we know it."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, OSError) and err.filename:
        # A failed rename (atomic writes) names its temporary source first: show the target.
        return (f"{err.strerror or type(err).__name__}: {err.filename2 or err.filename}; check "
                "the path and its permissions")
    if isinstance(err, TypeError) and not isinstance(err, ValueError):
        return f"a config value has the wrong type ({text}); --debug shows where"
    if text.startswith("Could not override '"):
        key = text.split("'")[1]
        return f"unknown config key {key!r}; see --help for the keys (use +{key}=... to add one)"
    return text.removeprefix("In 'config': ")


def usage() -> str:
    """The --help text: command form, tasks, mixers and the top-level config."""
    from omegaconf import OmegaConf

    base = OmegaConf.load(CONF_DIR / "config.yaml")
    base.pop("defaults", None)
    return (f"usage: python -m katbench.run task=<name> mixer=<name> [seed=<k>] [key=value ...]"
            f" [--debug]\n\ntasks:  {' '.join(task_names())}\nmixers: {' '.join(MIXER_NAMES)}"
            f"\n\nComma lists sweep in one process (seed=0,1,2). profile=quick|paper applies the"
            f" task's pipeline profile.\nConfig (katbench/conf/config.yaml):\n"
            f"{OmegaConf.to_yaml(base)}")


def main(argv: list[str] | None = None) -> int:
    """Run every requested combination; return the exit status.

    0 on success; 2 on a user error (one line naming the problem and the fix); 1 on a
    non-finite loss; 128 + the signal number when SIGTERM/SIGINT stopped a run (after it wrote
    its checkpoint: ``resume=true`` continues it).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("KATBENCH_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    if {"-h", "--help"} & set(args):
        print(usage())
        return 0
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from katbench import distributed, experiment, train

    user_errors = (ValueError, TypeError, HydraException, OmegaConfBaseException, OSError,
                   train.NonFiniteLossError)
    handlers = _stop_on_signals(train.request_stop)
    try:
        combos = expand(_normalise(args))
        configs = [compose(c) for c in combos]
        for cfg in configs:
            train.clear_stop()
            metrics = experiment.run_experiment(cfg)
            best = metrics["best"] or {}
            if os.environ.get("RANK", "0") == "0":
                print(f"{cfg.task.name}/{metrics['mixer']}/seed{cfg.seed}: "
                      + " ".join(f"{k}={v:.4g}" for k, v in best.items() if k != "epoch"))
    except train.RunInterrupted as err:
        print(f"katbench.run: {err}", file=sys.stderr)
        return 128 + getattr(signal.Signals, err.reason, signal.SIGTERM).value
    except user_errors as err:
        if debug:
            raise
        print(f"katbench.run: error: {_one_line(err)}", file=sys.stderr)
        return 1 if isinstance(err, train.NonFiniteLossError) else 2
    finally:
        _stop_on_signals(handlers)
        distributed.shutdown()
    return 0


def _stop_on_signals(handler: Any) -> Any:
    """Install ``handler`` for SIGTERM and SIGINT (main thread only); return the previous ones.

    Given the dict returned earlier, puts those handlers back."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    signals = (signal.SIGTERM, signal.SIGINT)
    if isinstance(handler, dict):
        for sig, previous in handler.items():
            signal.signal(sig, previous)
        return {}
    return {sig: signal.signal(sig, handler) for sig in signals}


if __name__ == "__main__":
    sys.exit(main())
