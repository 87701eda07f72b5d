"""The local web cockpit (``tracer web``): a REST API under ``/api/v1`` (documented by its OpenAPI schema at
``/api/v1/openapi.json``) and server-rendered pages over the same SQLite DB the agents write.

``app`` (the FastAPI factory), ``auth`` (the token, the session cookie, the CSRF check, the guard every request
passes), ``api`` (the JSON endpoints), ``data`` (what they read: the DB, the candle files, the backtest folders),
``pages`` (the HTML pages), ``server`` (uvicorn on 127.0.0.1, the token written to ``.env`` on the first start).
Templates and the small chart script ship in ``templates/`` and ``static/``: nothing is fetched at run time.
Only :mod:`tracer.cli` imports this package."""
