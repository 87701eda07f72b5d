"""The one configuration error: it names every bad variable."""
from __future__ import annotations


class ConfigError(ValueError):
    """Raised when the configuration cannot be used; the message names every bad variable."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
