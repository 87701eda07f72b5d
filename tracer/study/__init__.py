"""``tracer study``: walk-forward, out-of-sample evidence for a profile of one agent.

Modules, one job each: :mod:`folds` (rolling train/test windows), :mod:`search` (the in-fold Optuna
search over the backtest), :mod:`benchmarks` (one-line rules on the same windows and costs),
:mod:`metrics` (one set of numbers for agents and benchmarks), :mod:`uncertainty` (block bootstrap,
deflated Sharpe), :mod:`components` (what can be switched off), :mod:`engine` (the study),
:mod:`report` (report.md, study.json, plots) and :mod:`cli`.
"""
