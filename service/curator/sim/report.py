"""Aggregate a comparison over seeds: a PNG, a Markdown table and a JSON file.

Metrics, per strategy (every run of a comparison is evaluated at the same steps):

* final accuracy: held-out accuracy after the last step, mean ± std over seeds.
* AUC: mean held-out accuracy over the evaluation points (step 0 included), i.e. the
  area under the curve normalised by its length; rewards learning early.
* steps to target: first evaluated step at which held-out accuracy ≥ the target,
  median over seeds ("—" when fewer than half of the seeds get there; the median is
  then undefined). Default target, per seed: the final accuracy of `uniform` with the
  same seed (the same initial student) — so uniform needs ~all its steps and "× uniform"
  is the fraction of uniform's steps a strategy needs to match uniform's final result
  (the paper's "speedup"). `--target ACC` sets one absolute target for every run.
* × uniform: median steps divided by uniform's median steps.
* trap / hard / unanswerable / no-signal share: share of selected problems that were
  traps, far-too-hard, unanswerable (reward always 0; shown when the bank has them), or
  whose G rollouts all got the same reward, averaged over steps and seeds.

The plot shows the mean held-out accuracy over seeds with a min–max band (with few seeds
a ±std band understates how far single seeds stray), the `oracle` (ground-truth
reference, direct engine only) dashed, and uniform's mean final accuracy dotted — the
level every other curve is judged by. `plot_accuracy` draws that panel for family.py's
grid too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

DASH = "—"


def _runs_by_strategy(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in result["strategies"]}
    for r in result["runs"]:
        out.setdefault(r["strategy"], []).append(r)
    for runs in out.values():
        runs.sort(key=lambda r: r["seed"])
    return out


def steps_to(eval_steps: list[int], acc: list[float], target: float) -> int | None:
    for s, a in zip(eval_steps, acc):
        if a >= target:
            return int(s)
    return None


def _median_steps(values: list[int | None]) -> float | None:
    """Median with "never" counted as +∞; None when the median itself is "never"."""
    if not values:
        return None
    v = sorted(math.inf if x is None else float(x) for x in values)
    n = len(v)
    med = v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
    return None if math.isinf(med) else med


def _targets(result: dict[str, Any], by: dict[str, list[dict[str, Any]]],
             target: float | None) -> tuple[dict[int, float], str]:
    seeds = result["seeds"]
    if target is not None:
        return {s: float(target) for s in seeds}, f"held-out accuracy ≥ {target:.3f}"
    ref = "uniform" if "uniform" in by else result["strategies"][0]
    finals = {r["seed"]: r["accuracy"][-1] for r in by[ref]}
    return finals, f"{ref}'s final held-out accuracy for the same seed"


def summarise(result: dict[str, Any], target: float | None = None) -> dict[str, Any]:
    """Per-strategy aggregates (see the module doc)."""
    by = _runs_by_strategy(result)
    targets, target_desc = _targets(result, by, target)
    rows: dict[str, dict[str, Any]] = {}
    for name, runs in by.items():
        if not runs:
            continue
        acc = np.array([r["accuracy"] for r in runs])
        reach = [steps_to(r["eval_steps"], r["accuracy"], targets[r["seed"]]) for r in runs]
        rows[name] = {
            "seeds": [r["seed"] for r in runs],
            "final_mean": float(acc[:, -1].mean()),
            "final_std": float(acc[:, -1].std()),
            "auc_mean": float(acc.mean(axis=1).mean()),
            "auc_std": float(acc.mean(axis=1).std()),
            "steps_to_target": reach,
            "steps_median": _median_steps(reach),
            "trap_share": float(np.mean([np.mean(r["trap_share"]) for r in runs])),
            "hard_share": float(np.mean([np.mean(r["hard_share"]) for r in runs])),
            "no_signal_share": float(np.mean([np.mean(r["no_signal_share"]) for r in runs])),
            "unanswerable_share": float(np.mean([np.mean(r.get("unanswerable_share") or [0.0])
                                                 for r in runs])),
            "seconds_per_step": float(np.mean([r["seconds"] / len(r["trap_share"])
                                               for r in runs])),
            **noise_summary(runs),
        }
    base = rows.get("uniform", {}).get("steps_median")
    for row in rows.values():
        s = row["steps_median"]
        row["ratio_to_uniform"] = None if (s is None or not base) else s / base
    initial = float(np.mean([r["accuracy"][0] for r in result["runs"]]))
    return {"target": target, "target_description": target_desc, "initial_accuracy": initial,
            "targets": {str(k): v for k, v in targets.items()}, "strategies": rows}


def _pooled_mean(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [v for r in runs for v in (r.get(key) or []) if v is not None]
    return float(np.mean(vals)) if vals else None


def noise_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Noise share selected (bank.NOISE_KINDS: coin flips, unanswerable, wrong answer
    keys) over the whole run, its first and last quarter, and the mean Û the service
    computed for noise vs useful problems with signal (steps pooled)."""
    share = np.array([r.get("noise_share") or r["trap_share"] for r in runs])
    q = max(1, share.shape[1] // 4)
    un, uu = _pooled_mean(runs, "utility_noise"), _pooled_mean(runs, "utility_useful")
    return {
        "noise_share": float(share.mean()),
        "noise_share_first": float(share[:, :q].mean()),
        "noise_share_last": float(share[:, -q:].mean()),
        "utility_noise": un, "utility_useful": uu,
        "utility_noise_ratio": None if un is None or not uu else un / uu,
    }


def _fmt_steps(x: float | None) -> str:
    if x is None:
        return DASH
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def _skills(bank: dict[str, Any]) -> str:
    """"8 skills, " where the bank's config says (a gym bank has tasks and levels)."""
    n = (bank.get("config") or {}).get("n_skills")
    return f"{n} skills, " if n is not None else ""


def markdown(result: dict[str, Any], summary: dict[str, Any]) -> str:
    t = result["trainer"]
    b = result["bank"]
    unans = b.get("unanswerable_share", 0.0) > 0
    sc = result.get("scenario")
    lines = [
        "# Curator simulator: strategy comparison"
        + (f" — scenario `{sc['name']}`" if sc else ""),
        "",
    ]
    if sc:
        lines += [f"Scenario `{sc['name']}`: {sc['summary']} (embedder: {sc['embedder']}; "
                  f"engine: {result.get('engine', 'http')}).", ""]
    lines += [
        f"{len(result['seeds'])} seeds ({', '.join(map(str, result['seeds']))}) × "
        f"{t['steps']} steps; B = {t['batch_size']} of a pool of M = {t['pool_size']}, "
        f"G = {t['rollouts']} rollouts; bank of {b['n_train']} problems "
        f"({_skills(b)}{b.get('trap_share', 0.0):.0%} coin-flip traps, "
        + (f"{b['unanswerable_share']:.0%} unanswerable, " if unans else "")
        + f"{b.get('hard_share', 0.0):.0%} far too hard), held-out set of {b['n_heldout']}. "
        f"Initial held-out accuracy {summary['initial_accuracy']:.3f}. "
        f"Target: {summary['target_description']}.",
        "",
        "| strategy | final acc | AUC | steps to target (median) | × uniform | trap share "
        + ("| unanswerable share " if unans else "") + "| hard share | no-signal share |",
        "|---|---|---|---|---|---|---|---|" + ("---|" if unans else ""),
    ]
    for name, r in summary["strategies"].items():
        ratio = DASH if r["ratio_to_uniform"] is None else f"{r['ratio_to_uniform']:.2f}"
        lines.append(
            f"| {name} | {r['final_mean']:.3f} ± {r['final_std']:.3f} "
            f"| {r['auc_mean']:.3f} | {_fmt_steps(r['steps_median'])} | {ratio} "
            f"| {r['trap_share']:.3f} "
            + (f"| {r['unanswerable_share']:.3f} " if unans else "")
            + f"| {r['hard_share']:.3f} | {r['no_signal_share']:.3f} |")
    wall = f"Wall time {result.get('wall_seconds', float('nan')):.0f} s"
    if "run_seconds" in result:
        wall = (f"Run time {result['run_seconds']:.0f} s summed over this scenario's runs; "
                f"wall time of the whole invocation {result['wall_seconds']:.0f} s")
    lines += [
        "",
        "final acc: mean ± std over seeds. AUC: mean held-out accuracy over the evaluated "
        "steps. Steps to target: \"—\" when fewer than half of the seeds reach it. "
        "Shares: of the selected problems, averaged over steps and seeds (the bank holds "
        f"{b['trap_share']:.0%} traps"
        + (f", {b['unanswerable_share']:.0%} unanswerable" if unans else "")
        + f" and {b['hard_share']:.0%} far-too-hard problems).",
        "",
        f"{wall} (service: {result.get('service', '?')}).",
        "",
    ]
    return "\n".join(lines)


def _smooth(x: np.ndarray, w: int) -> np.ndarray:
    if w <= 1 or x.shape[-1] < w:
        return x
    k = np.ones(w) / w
    return np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), -1, x)


ORACLE = "oracle"  # = curator.sim.direct.ORACLE (not imported: it pulls in torch)


def strategy_colour(name: str, strategies: list[str]) -> str:
    """A fixed colour per strategy position, so a family's panels agree."""
    return f"C{strategies.index(name) % 10}" if name in strategies else "grey"


def plot_accuracy(ax: Any, result: dict[str, Any], *, legend: bool = True) -> None:
    """Held-out accuracy vs step on `ax`: mean over seeds with a min–max band per
    strategy, the oracle dashed, uniform's mean final accuracy as a dotted line."""
    by = _runs_by_strategy(result)
    names = list(result["strategies"])
    for name, runs in by.items():
        if not runs:
            continue
        colour = strategy_colour(name, names)
        steps = np.array(runs[0]["eval_steps"])
        acc = np.array([r["accuracy"] for r in runs])
        ls = "--" if name == ORACLE else "-"
        ax.plot(steps, acc.mean(axis=0), label=name, lw=1.6, ls=ls, color=colour)
        ax.fill_between(steps, acc.min(axis=0), acc.max(axis=0), color=colour, alpha=0.12,
                        lw=0)
        if name == "uniform":
            ax.axhline(acc[:, -1].mean(), color=colour, ls=":", lw=1.1,
                       label="uniform's final")
    ax.set_ylabel("held-out accuracy")
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(loc="lower right", fontsize="small")


def plot(result: dict[str, Any], summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = _runs_by_strategy(result)
    bank = result["bank"]
    panels = [("noise_share", "noise share\nselected")] if bank.get("noise_share") else []
    panels.append(("trap_share", "trap share\nselected"))
    if bank.get("unanswerable_share", 0.0) > 0:
        panels.append(("unanswerable_share", "unanswerable\nshare selected"))
    panels.append(("hard_share", "too-hard share\nselected"))
    fig, axes = plt.subplots(1 + len(panels), 1, figsize=(8, 6 + 2 * len(panels)),
                             sharex=True,
                             gridspec_kw={"height_ratios": [3] + [1.4] * len(panels)})
    plot_accuracy(axes[0], result)
    win = 5
    for name, runs in by.items():
        if not runs:
            continue
        colour = strategy_colour(name, list(result["strategies"]))
        for ax, (key, _label) in zip(axes[1:], panels):
            share = _smooth(np.array([r.get(key) or [] for r in runs]).mean(axis=0), win)
            x = np.arange(1, share.size + 1) + (win - 1) / 2 if share.size else []
            ax.plot(x, share, color=colour, lw=1.2, ls="--" if name == ORACLE else "-")
    sc = result.get("scenario")
    title = f"Curator simulator{' — ' + sc['name'] if sc else ''}"
    axes[0].set_title(f"{title} — mean, min–max band over {len(result['seeds'])} seeds")
    for ax, (key, label) in zip(axes[1:], panels):
        ax.axhline(bank[key], color="grey", ls=":", lw=1)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[-1].set_xlabel(f"step ({win}-step moving average in the lower panels; "
                        "dotted: bank share)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: dict[str, Any], out_dir: Path | str, target: float | None = None,
                 *, extra_markdown: str = "",
                 extra_json: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write sim.png, sim.md and sim.json into `out_dir`; returns the summary. family.py
    appends its judgement of a scenario through `extra_markdown` / `extra_json`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(result, target)
    plot(result, summary, out / "sim.png")
    (out / "sim.md").write_text(markdown(result, summary) + extra_markdown)
    payload = dict(result, summary=summary, **(extra_json or {}))
    (out / "sim.json").write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")
    return summary


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
