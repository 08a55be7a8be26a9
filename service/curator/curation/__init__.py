"""Pure curriculum algorithms: proposal, scoring, sampling, utility and OSMD updates.

Nothing here imports web, database or queue code, so the algorithms can be read,
tested and replayed on their own. Import submodules directly (torch is only pulled in
by `scorer`, `osmd` and the strategies).
"""
