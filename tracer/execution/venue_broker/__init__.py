"""The venue broker (:class:`VenueBroker`), split by job: ``calls`` (the venue calls and their retry policy, the one
place an order is POSTed), ``protection`` (stops on the venue and the agent's own), ``reconcile`` (what happened
on the venue, booked), ``unbooked`` (what the venue holds that the DB has not booked: adopted, awaited, tracked,
or cancelled as an orphan; dust), ``outside`` (closes the DB did not order), ``money`` (funding and the wallet),
``ids`` (protective order ids, the venue's grids), ``broker`` (submitting, restoring, the one-position-per-symbol
rule)."""
from tracer.execution.venue_broker.broker import VenueBroker
from tracer.execution.venue_broker.ids import (TERMINAL, conditional, round_to_step, round_to_tick, rules_reject,
                                               stop_order_id, target_order_id)

__all__ = ["TERMINAL", "VenueBroker", "conditional", "round_to_step", "round_to_tick", "rules_reject",
           "stop_order_id", "target_order_id"]
