"""Backtests of the live decision code."""
