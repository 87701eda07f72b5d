"""Narrative-vs-price divergence with a volume-adaptive trigger (pure)."""
from __future__ import annotations


from tracer.signals import scoring


def divergence_trigger(base: float, volume_z: float) -> float:
    """Threshold on |narrative - price| that counts as a divergence.

    ``trigger = base * clip(1 - 0.15 * volume_z, 0.6, 1.4)``: strong participation makes a
    smaller gap meaningful (down to 60% of ``base``), thin volume demands a larger one (up to 140%).
    ``base`` is ``TB_DIVERGENCE_THRESHOLD`` (default 0.5).
    """
    return float(scoring.divergence_trigger(base, volume_z))


def divergence(narrative: float, price: float) -> float:
    """``narrative - price``, in [-2, 2]: positive when the news is more bullish than the tape."""
    return float(narrative - price)
