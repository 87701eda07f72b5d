"""Research tools: single-asset runs, universe scans, theses and plans, digests, and hit-rate evaluation.

Pure functions (``timeframes``, ``thesis``, ``evidence``, ``plan``, ``digest``, ``evaluation``) work on
Signals and arrays; I/O (feed, DB, files, outbox) lives in ``scan``, ``store`` and ``cli``.
"""
