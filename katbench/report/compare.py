"""Comparisons: each mixer against the MLP baseline (paired over seeds) and against the paper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from katbench.plots import mixer_key

BASELINE = "mlp"
NAMES = {"mlp": "MLP", "kan": "KAN", "grkan": "GR-KAN"}


@dataclass(frozen=True)
class Paired:
    """Mean of the paired differences (positive = better than the baseline), its 95% interval
    (``None`` for fewer than two pairs) and the number of pairs."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @property
    def verdict(self) -> str:
        """``better`` / ``worse`` where the interval excludes 0, else ``no significant
        difference``; ``n=1`` (no interval) and ``no common seeds`` where it cannot say."""
        if self.n == 0:
            return "no common seeds"
        if self.low is None or self.high is None:
            return "n=1"
        if self.low > 0:
            return "better"
        return "worse" if self.high < 0 else "no significant difference"

    def text(self) -> str:
        """``+Δ [low, high]``, or ``+Δ`` without an interval."""
        if self.n == 0:
            return "–"
        ci = f" [{self.low:+.3g}, {self.high:+.3g}]" if self.low is not None else ""
        return f"{self.mean:+.3g}{ci}"


def paired_difference(ours: pd.Series, base: pd.Series, higher_is_better: bool) -> Paired:
    """Compare two mixers' values indexed by seed over the seeds both finished.

    d_s = ours_s - base_s, negated when lower is better; mean d̄ and the t interval
    d̄ ± t(0.975, n-1) · sd(d) / √n with the sample standard deviation (ddof = 1).
    """
    from scipy import stats  # here, so that importing the report (each run does) stays light

    seeds = ours.index.intersection(base.index)
    diffs = ((ours[seeds] - base[seeds]) * (1.0 if higher_is_better else -1.0)).to_numpy()
    n = len(diffs)
    if n == 0:
        return Paired(float("nan"), None, None, 0)
    mean = float(diffs.mean())
    if n == 1:
        return Paired(mean, None, None, 1)
    half = float(stats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) / np.sqrt(n))
    return Paired(mean, mean - half, mean + half, n)


def summary_line(mixer: str, pairs: list[Paired]) -> str:
    """``GR-KAN beats MLP on X of Y tasks (significantly on Z; significantly worse on W)``,
    over the tasks with at least one pair."""
    paired = [p for p in pairs if p.n > 0]
    beats = sum(p.mean > 0 for p in paired)
    better = sum(p.verdict == "better" for p in paired)
    worse = sum(p.verdict == "worse" for p in paired)
    return (f"{NAMES.get(mixer, mixer)} beats {NAMES[BASELINE]} on {beats} of {len(paired)} "
            f"tasks (significantly on {better}; significantly worse on {worse})")


def against_baseline(main: pd.DataFrame, families: dict[str, str]) -> list[str]:
    """Markdown section: per family, each mixer's paired difference from mlp per task, then
    one summary line per mixer. Empty when no task has mlp and another mixer."""
    body = []
    for family in sorted(set(families.values())):
        results: list[tuple[str, str, Paired]] = []
        for task in sorted(t for t, f in families.items() if f == family):
            rows = main[main.task == task]
            base = rows[rows.mixer == BASELINE].set_index("seed").value
            if base.empty:
                continue
            hib = bool(rows.higher_is_better.iloc[0])
            for mixer in sorted(set(rows.mixer) - {BASELINE}, key=mixer_key):
                ours = rows[rows.mixer == mixer].set_index("seed").value
                results.append((task, mixer, paired_difference(ours, base, hib)))
        if not results:
            continue
        body += [f"### {family}", "",
                 f"| task | mixer | Δ vs {BASELINE} (95% CI) | n pairs | verdict |",
                 "|---|---|---|---|---|",
                 *[f"| {t} | {m} | {p.text()} | {p.n} | {p.verdict} |" for t, m, p in results],
                 ""]
        mixers = sorted({m for _, m, _ in results}, key=mixer_key)
        body += [f"- {summary_line(m, [p for _, k, p in results if k == m])}" for m in mixers]
        body.append("")
    if not body:
        return []
    return ["## Against MLP (paired over seeds)", "",
            "Δ: mean over the seeds both mixers finished of (mixer − mlp), signed so that "
            "positive = better than mlp; 95% CI: t-interval over the paired seeds (n − 1 "
            "degrees of freedom). Verdict `better` / `worse` where the interval excludes 0; "
            "`n=1`: one pair, no interval.", "", *body]


@dataclass
class _PaperCheck:
    """Our means against the paper's: table rows of the values beyond what is allowed and of
    the rankings, the values without an allowance, how many were checked, and the notes
    (explanation -> its number, in order of first use)."""

    flagged: list[str]
    rankings: list[str]
    unchecked: list[str]
    checked: int
    notes: dict[str, int]

    def note(self, text: str) -> str:
        return f"note {self.notes.setdefault(text, len(self.notes) + 1)}"


def _check_against_paper(main: pd.DataFrame, paper: dict[str, Any]) -> _PaperCheck:
    """Each paper entry whose metric is ours: its values (within ``spread`` or ``tolerance``)
    or, with ``compare: ranking``, the order of the mixers."""
    means = main.groupby(["task", "mixer"]).value.mean()
    metric_of = main.groupby("task").metric.first()
    hib_of = main.groupby("task").higher_is_better.first()
    check = _PaperCheck([], [], [], 0, {})
    for task, ref in paper.items():
        if metric_of.get(task) != ref["metric"]:
            continue
        named = ref.get("values") or ref["ranking"]
        ours = {m: float(means[(task, m)]) for m in named if (task, m) in means.index}
        why = ref.get("difference", "not yet explained")
        if ref.get("compare") == "ranking":
            if len(ours) > 1:
                order = sorted(ours, key=ours.get, reverse=bool(hib_of[task]))
                theirs = ([m for m in ref["ranking"] if m in ours] if "ranking" in ref
                          else sorted(ours, key=ref["values"].get, reverse=bool(hib_of[task])))
                same = order == theirs
                check.rankings.append(f"| {task} | {', '.join(order)} | {', '.join(theirs)} | "
                                      f"{'yes' if same else 'no'} | "
                                      f"{'–' if same else check.note(why)} |")
            continue
        for mixer, value in ours.items():
            allowed = (ref.get("spread") or {}).get(mixer, ref.get("tolerance"))
            if allowed is None:
                check.unchecked.append(f"{task}/{mixer}")
                continue
            check.checked += 1
            if abs(value - ref["values"][mixer]) > allowed:
                check.flagged.append(f"| {task} | {mixer} | {value:.4g} | "
                                     f"{ref['values'][mixer]:.4g} | ± {allowed:.4g} | "
                                     f"{check.note(why)} |")
    return check


def paper_differences(main: pd.DataFrame, paper: dict[str, Any],
                      profiles: set[str]) -> list[str]:
    """Markdown section: our mean per mixer against the paper's value for the same metric.

    A value is flagged when |ours − paper| exceeds the entry's ``spread[mixer]`` (the paper's
    ±) or, without one, its ``tolerance``; entries with ``compare: ranking`` compare the
    order of the mixers only (the order of their ``values``, or their ``ranking`` list, best
    first, where the paper states an order without numbers). Explanations are the entry's
    ``difference`` text.
    """
    check = _check_against_paper(main, paper)
    if not (check.checked or check.rankings or check.unchecked):
        return []
    lines = ["## Differences from the paper", "",
             "Our mean per mixer against the paper's value for the same metric (stand-in "
             "metrics are never compared). Allowed: the paper's ± (`spread` in "
             "`katbench/paper_results.yaml`) or, where it gives none, the entry's `tolerance`; "
             "explanations: the entry's `difference`.", ""]
    if "quick" in profiles:
        lines += ["Quick-profile runs are far shorter and smaller than the paper's, so "
                  "differences are expected there.", ""]
    if check.checked:
        lines += [f"{len(check.flagged)} of {check.checked} values differ by more than "
                  "allowed.", ""]
    if check.flagged:
        lines += ["| task | mixer | ours | paper | allowed | explanation |",
                  "|---|---|---|---|---|---|", *check.flagged, ""]
    if check.rankings:
        lines += ["Rankings only (best first; the paper's magnitudes are not comparable to "
                  "ours, see `katbench/paper_results.yaml`): is our order of the mixers the "
                  "paper's?", "", "| task | ours | paper | same ranking | explanation |",
                  "|---|---|---|---|---|", *check.rankings, ""]
    if check.notes:
        lines += [f"{number}. {text}" for text, number in check.notes.items()] + [""]
    if check.unchecked:
        lines += [f"Not checked (no spread or tolerance for them): "
                  f"{', '.join(check.unchecked)}.", ""]
    return lines
