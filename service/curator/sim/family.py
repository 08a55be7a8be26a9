"""Judge a family of scenarios: is a curriculum faster than uniform on *every* student?

One simulated student is one opinion; a method that wins on `ring` may lose where the
frontier moves (`chain`), where rewards are noise (`traps`) or where the embedding is
poor (`text-*`). So every scenario gets the same table against `uniform` (same bank,
same initial student per seed), and a verdict states, per scenario, whether the subject
(`actor_curator`) meets each target of the issue:

(a) ends at or above uniform's final accuracy on every seed (a median hides a seed
    that stalls);
(b) its mean curve never falls below uniform's by more than uniform's seed spread (max
    over steps of uniform's std over seeds) — being slow early is a cost too;
(c) reaches uniform's final within 1.5× the oracle's steps (so 0.6× where the oracle
    needs 0.4×), and never later than uniform (a student with little headroom, or one
    without an oracle);
(d) is at least as fast as the best of learnability / sec / pcl / mopps (× uniform ≤
    theirs);
(e) selects no more noise than uniform does (bank.NOISE_KINDS: coin flips, unanswerable,
    rewarded wrong answers; it must not mistake noise for signal);
(f) and its noise share does not rise over the run (last quarter ≤ first quarter +
    0.01, the tolerance for sampling noise over a quarter of the steps).

"× uniform" is the ratio of the median steps to uniform's final (per seed) to uniform's
median; a strategy whose median is "never" has none (∞ in the comparisons). Writes, per
scenario, OUT/<scenario>/sim.{json,md,png} (report.py), and OUT/family.{md,json,png}.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from curator.sim.report import (
    DASH,
    ORACLE,
    _fmt_steps,
    _json_default,
    _runs_by_strategy,
    plot_accuracy,
    summarise,
    write_report,
)

SUBJECT = "actor_curator"
BASELINES = ("learnability", "sec", "pcl", "mopps")
ORACLE_FACTOR = 1.5  # target (c)
RISE_TOLERANCE = 0.01  # target (f)
TARGETS = {
    "a": "final ≥ uniform's on every seed",
    "b": "mean curve never below uniform's by more than uniform's seed spread",
    "c": f"× uniform ≤ min(1, {ORACLE_FACTOR}× the oracle's)",
    "d": "at least as fast as the best of " + "/".join(BASELINES),
    "e": "noise share ≤ uniform's",
    "f": "noise share not rising (last ¼ ≤ first ¼ + 0.01)",
}


def _inf(x: float | None) -> float:
    return math.inf if x is None else float(x)


def scenario_rows(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per strategy: report.summarise's row (target: uniform's final per seed) plus the
    per-seed ratios, whether every seed reaches the target, and the worst gap to
    uniform's mean curve next to uniform's seed spread."""
    summary = summarise(result)
    by = _runs_by_strategy(result)
    rows = summary["strategies"]
    uni = np.array([r["accuracy"] for r in by.get("uniform", [])])
    uni_steps = dict(zip(rows["uniform"]["seeds"], rows["uniform"]["steps_to_target"])) \
        if "uniform" in rows else {}
    uni_final = {r["seed"]: r["accuracy"][-1] for r in by.get("uniform", [])}
    spread = float(uni.std(axis=0).max()) if uni.size else None
    has_unans = result["bank"].get("unanswerable_share", 0.0) > 0
    for name, row in rows.items():
        acc = np.array([r["accuracy"] for r in by[name]])
        reach = row["steps_to_target"]
        row["n_seeds"] = len(reach)
        row["reaches_count"] = sum(s is not None for s in reach)
        row["reaches_all"] = row["reaches_count"] == len(reach)
        row["final_at_least_uniform"] = all(
            r["accuracy"][-1] >= uni_final.get(r["seed"], -math.inf) for r in by[name])
        row["ratio_per_seed"] = [
            None if s is None or not uni_steps.get(seed) else s / uni_steps[seed]
            for seed, s in zip(row["seeds"], reach)]
        if uni.size and uni.shape == acc.shape:
            row["worst_gap"] = float((acc.mean(axis=0) - uni.mean(axis=0)).min())
            row["uniform_spread"] = spread
            row["below_spread"] = bool(-row["worst_gap"] > spread + 1e-12)
        else:
            row["worst_gap"] = row["uniform_spread"] = row["below_spread"] = None
        if not has_unans:
            row.pop("unanswerable_share", None)
    return rows


def verdict(rows: dict[str, dict[str, Any]], subject: str = SUBJECT) -> dict[str, Any]:
    """The subject against the targets (a)–(e) (see the module doc): True = pass,
    False = fail, None = not applicable (subject, uniform or the reference not run)."""
    def ratio(name: str) -> float | None:
        return rows.get(name, {}).get("ratio_to_uniform")

    base = [b for b in BASELINES if b in rows]
    best = min(base, key=lambda b: (_inf(ratio(b)), -rows[b]["auc_mean"]), default=None)
    s, uni = rows.get(subject), rows.get("uniform")
    sr, br, orr = ratio(subject), (ratio(best) if best else None), ratio(ORACLE)
    out: dict[str, Any] = {
        "subject": subject, "subject_ratio": sr, "best_baseline": best,
        "best_baseline_ratio": br, "oracle_ratio": orr,
        **{k: None for k in TARGETS},
    }
    if s is None or uni is None:
        return out
    out["a"] = bool(s["final_at_least_uniform"])
    out["b"] = None if s["below_spread"] is None else not s["below_spread"]
    out["c"] = sr is not None and sr <= min(1.0, ORACLE_FACTOR * _inf(orr))
    if best is not None and not (sr is None and br is None):
        out["d"] = _inf(sr) <= _inf(br)
    out["e"] = bool(s["noise_share"] <= uni["noise_share"])
    out["f"] = bool(s["noise_share_last"] <= s["noise_share_first"] + RISE_TOLERANCE)
    return out


def _pf(x: bool | None) -> str:
    return "n/a" if x is None else ("pass" if x else "fail")


def _ratio(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}"


def _yes(x: bool | None) -> str:
    return DASH if x is None else ("yes" if x else "no")


def rows_markdown(name: str, rows: dict[str, dict[str, Any]], unans: bool,
                  with_scenario: bool = True) -> list[str]:
    """Table lines (without header) for one scenario's rows."""
    lines = []
    for strat, r in rows.items():
        gap = DASH if r["worst_gap"] is None else \
            f"{r['worst_gap']:+.3f} / {r['uniform_spread']:.3f}"
        lines.append(
            ("| " + name + " " if with_scenario else "")
            + f"| {strat} | {r['final_mean']:.3f} ± {r['final_std']:.3f} | {r['auc_mean']:.3f} "
            f"| {_fmt_steps(r['steps_median'])} | {_ratio(r['ratio_to_uniform'])} "
            f"| {_yes(r['reaches_all'])} ({r['reaches_count']}/{r['n_seeds']}) "
            f"| {gap} | {_yes(r['below_spread'])} "
            f"| {r['noise_share']:.3f} / {r['noise_share_first']:.3f} / "
            f"{r['noise_share_last']:.3f} | {_ratio(r['utility_noise_ratio'])} "
            f"| {r['trap_share']:.3f} "
            + (f"| {r['unanswerable_share']:.3f} " if unans and "unanswerable_share" in r
               else ("| — " if unans else ""))
            + f"| {r['no_signal_share']:.3f} |")
    return lines


def rows_header(unans: bool, with_scenario: bool = True) -> list[str]:
    cols = (["scenario"] if with_scenario else []) + [
        "strategy", "final acc", "AUC", "steps to uniform's final", "× uniform",
        "reaches on every seed", "worst gap / uniform spread", "below by > spread",
        "noise share (all / first ¼ / last ¼)", "Û noise ÷ useful", "trap share"
    ] + (["unanswerable share"] if unans else []) + ["no-signal share"]
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def verdict_markdown(verdicts: dict[str, dict[str, Any]]) -> list[str]:
    subject = next(iter(verdicts.values()))["subject"] if verdicts else SUBJECT
    lines = [f"| scenario | {subject} × uniform | best of {'/'.join(BASELINES)} × uniform "
             "| oracle × uniform | " + " | ".join(f"({k})" for k in TARGETS) + " |",
             "|" + "---|" * (4 + len(TARGETS))]
    for name, v in verdicts.items():
        best = f"{_ratio(v['best_baseline_ratio'])} ({v['best_baseline']})" \
            if v["best_baseline"] else DASH
        lines.append(f"| {name} | {_ratio(v['subject_ratio'])} | {best} "
                     f"| {_ratio(v['oracle_ratio'])} | "
                     + " | ".join(_pf(v[k]) for k in TARGETS) + " |")
    return lines


NOTES = [
    "Steps to uniform's final: first step at which a seed's held-out accuracy reaches "
    "uniform's final accuracy for the same seed, median over seeds (\"—\": the median "
    "seed never does). × uniform: ratio of the medians (per-seed ratios in family.json). "
    "Worst gap: min over steps of (mean curve − uniform's mean curve); uniform spread: "
    "max over steps of uniform's std over seeds. Shares: of the selected problems, "
    "averaged over steps and seeds; noise = coin flips + unanswerable + rewarded wrong "
    "answers. Û noise ÷ useful: mean Û (as the service computes it from the trainer's "
    "rewards and log-ratios) of the selected noise problems with reward variance over "
    "that of the selected useful ones with reward variance.",
    "",
    "Targets: " + "; ".join(f"({k}) {v}" for k, v in TARGETS.items())
    + ". n/a: not applicable (for (d): neither reaches the target). Without an oracle "
    "(a student whose pass rates it cannot read cheaply), (c) asks for ≤ 1× uniform.",
]


def family_markdown(results: dict[str, dict[str, Any]], rows: dict[str, dict[str, Any]],
                    verdicts: dict[str, dict[str, Any]]) -> str:
    first = next(iter(results.values()))
    t = first["trainer"]
    unans = any(r["bank"].get("unanswerable_share", 0.0) > 0 for r in results.values())
    lines = [
        "# Curator simulator: scenario family",
        "",
        f"{len(results)} scenarios × {len(first['strategies'])} strategies × "
        f"{len(first['seeds'])} seeds ({', '.join(map(str, first['seeds']))}); B = "
        f"{t['batch_size']}, M = {t['pool_size']}, G = {t['rollouts']}; "
        f"{first.get('service', '?')}; wall time "
        f"{first['wall_seconds']:.0f} s.",
        "",
        "## Verdict",
        "",
        *verdict_markdown(verdicts),
        "",
        "## Every strategy",
        "",
        *rows_header(unans),
    ]
    for name in results:
        lines += rows_markdown(name, rows[name], unans)
    lines += ["", *NOTES, ""]
    return "\n".join(lines)


def plot_family(results: dict[str, dict[str, Any]], path: Path) -> None:
    """A grid of the per-scenario accuracy panels (report.plot_accuracy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    cols = min(4, n)
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, (name, result) in zip(axes.flat, results.items()):
        plot_accuracy(ax, result, legend=False)
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("step")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7),
               fontsize="small", frameon=False)
    fig.suptitle("Curator simulator — held-out accuracy (mean, min–max over seeds; "
                 "oracle dashed, uniform's final dotted)", fontsize="medium")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_family(results: dict[str, dict[str, Any]], out_dir: Path | str,
                 subject: str = SUBJECT) -> dict[str, Any]:
    """Write OUT/<scenario>/sim.* for each scenario and OUT/family.{md,json,png};
    returns what family.json holds."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = {name: scenario_rows(r) for name, r in results.items()}
    verdicts = {name: verdict(rows[name], subject) for name in results}
    for name, result in results.items():
        unans = result["bank"].get("unanswerable_share", 0.0) > 0
        extra = "\n".join(["## Against uniform (family metrics)", "",
                           *rows_header(unans, False),
                           *rows_markdown(name, rows[name], unans, False), "",
                           *verdict_markdown({name: verdicts[name]}), "", *NOTES, ""])
        write_report(result, out / name, extra_markdown="\n" + extra,
                     extra_json={"family_rows": rows[name], "verdict": verdicts[name]})
    first = next(iter(results.values()))
    payload = {
        "scenarios": {name: {"scenario": r.get("scenario"), "bank": r["bank"],
                             "trainer": r["trainer"], "student": r["student"],
                             "run_seconds": r.get("run_seconds"), "rows": rows[name],
                             "verdict": verdicts[name]} for name, r in results.items()},
        "strategies": first["strategies"], "seeds": first["seeds"],
        "engine": first.get("engine"), "service": first.get("service"),
        "params": first.get("params", {}), "bank_seed": first.get("bank_seed"),
        "wall_seconds": first["wall_seconds"], "subject": subject, "targets": TARGETS,
    }
    (out / "family.json").write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")
    (out / "family.md").write_text(family_markdown(results, rows, verdicts))
    plot_family(results, out / "family.png")
    return payload
