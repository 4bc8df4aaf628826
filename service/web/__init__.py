"""What every HTTP face shares, below them all: key authentication as FastAPI dependencies, the
rate limiter, middleware (access log, headers, body limit), error schemas and bodies in and out.

- ``dependencies``: the database, the evaluator and the caller's key, by role;
- ``ratelimit``: requests per key per minute;
- ``middleware``: the access log and the headers every answer carries;
- ``schemas``: the error bodies as the OpenAPI documents them;
- ``media``: media types, JSON bodies read once, FHIR resources as responses.
"""
