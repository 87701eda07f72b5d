"""Monitoring that keeps working when the system it watches is broken: a best-effort configuration when
``.env`` is invalid (:mod:`tracer.monitor.fallback`), the monitoring record (:mod:`tracer.monitor.records`),
levelled alerts with recovery messages (:mod:`tracer.monitor.alerts`) and self-healing
(:mod:`tracer.monitor.heal`)."""
