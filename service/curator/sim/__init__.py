"""Simulator: evidence that a curriculum works, without an LLM (docs/design.md §5).

A synthetic student (student.py) with per-skill abilities learns by a GRPO-like rule
from problems of a synthetic bank (bank.py: skills, difficulties, coin-flip traps,
far-too-hard problems, provided embeddings). A simulated trainer (trainer.py) drives the
real service over HTTP with the real client — select, roll out, update, feedback with
rewards and per-rollout log-ratios — and runner.py compares strategies × seeds on one
shared bank; report.py writes the plot, the Markdown table and the JSON; cli.py adds
`curator sim`. Every modelling choice and default is documented in the module that
makes it, and was fixed before strategies were compared (bench/sim_defaults.md).
"""
