"""Adaptive strategy: walk-forward parameter optimisation (Optuna over the backtest), safe promotion of
the result (proposal, guard rails, rollback) and exploration windows in the policies."""
