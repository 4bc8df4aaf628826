"""The REST JSON face (shared/contract.md, "Endpoints"): ``routers/`` for evaluations, policies and
health. It imports the shared rooms below it (``web``, ``evaluations``, ``store``), never another face."""
