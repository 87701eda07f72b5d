"""The headline-source interface shared by the live news providers."""
from __future__ import annotations

from datetime import datetime
from typing import Protocol, Sequence, runtime_checkable

from tracer.models import Headline

__all__ = ["HeadlineSource"]


@runtime_checkable
class HeadlineSource(Protocol):
    """A news provider.

    Contract: ``fetch`` returns headlines about ``symbols`` published in ``(start, end]``
    as the provider reports them (it may return some outside the window; callers filter).
    ``Headline.source`` is ``"<provider>/<publisher>"`` (e.g. ``alpaca/benzinga``) and
    ``Headline.id`` is :func:`tracer.data.replay.headline_id` of it. Provider failures
    are logged and give fewer headlines, never an exception about the provider's data.
    """
    name: str

    def fetch(self, symbols: Sequence[str], start: datetime, end: datetime) -> list[Headline]: ...
