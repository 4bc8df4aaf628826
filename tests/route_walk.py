"""Every route the app serves, for the tests that must reach all of them (tenancy, audit): each
(method, path template) read from the app's own routing table, so an endpoint added later is
walked without anyone listing it; its path parameters filled from the ids of some organization's
data; the query parameters it requires; a body it accepts where one is known.

A route whose required query parameter this module cannot fill fails the walk, naming it, rather
than being skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import params
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

PARAMETER = re.compile(r"{(\w+)(?::\w+)?}")
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
POLICY = "isass-2023-restorative-neurostimulation"
# Values for query parameters the walk fills whether or not they are required.
QUERY = {"external_id": None}  # the organization's own external_id (see Endpoint.url)
# Required query parameters of other names get a value the route must cope with ({name}: an id).
REQUIRED_QUERY = {"limit": "10", "from": "2026-01-01", "to": "2026-12-31", "state": "all",
                  "url": "http://testserver/fhir/ValueSet/unknown",
                  "questionnaire": "http://testserver/v1/evaluations/{evaluation_id}/questionnaire"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    template: str
    route: RouteContext

    @property
    def parameters(self) -> list[str]:
        return PARAMETER.findall(self.template)

    def url(self, ids: Mapping[str, str]) -> str:
        """The path with each parameter taken from ``ids`` (a result's fields: ``evaluation_id``,
        ``request_id``, …; ``policy_id``, ``service_id``), else the evaluation id; and the query."""
        path = PARAMETER.sub(lambda m: ids.get(m[1]) or ids["evaluation_id"], self.template)
        query = {}
        for name, required in self.query_parameters():
            if name in QUERY:
                query[name] = ids["external_id"]
            elif required:
                if name not in REQUIRED_QUERY:
                    raise AssertionError(f"{self.method} {self.template}: teach tests/route_walk.py a value for "
                                         f"the required query parameter {name!r}")
                query[name] = REQUIRED_QUERY[name].format(**ids)
        return path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")

    def query_parameters(self) -> list[tuple[str, bool]]:
        if not isinstance(self.route.original_route, APIRoute):
            return []
        return [(field.alias, field.field_info.is_required()) for field in get_flat_params(self.route.dependant)
                if isinstance(field.field_info, params.Query)]


def endpoints(app: Any) -> list[Endpoint]:
    """Every (method, path) of the app, HEAD only where there is no GET (FastAPI's own walk of
    its routing table, included routers and all, as it makes the OpenAPI from)."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles):  # files shipped with the package
            found.append(Endpoint("GET", f"{route.path}/{{path}}", context))
            continue
        assert isinstance(route, Route), f"a route the walk does not know how to call: {route!r}"
        methods = context.methods or set()
        for method in sorted(methods):
            if method == "HEAD" and "GET" in methods:
                continue
            found.append(Endpoint(method, context.path, context))
    return found


def ids_of(result: Mapping[str, Any], **more: str) -> dict[str, str]:
    """The ids a result names (``evaluation_id``, and ``request_id`` once requests exist), its
    external_id, and the ids that are the same for every organization."""
    ids = {name: value for name, value in result.items() if name.endswith("_id") and isinstance(value, str)}
    return {"policy_id": POLICY, "service_id": f"{POLICY}-order-sign", **ids, **more}


def unknown_ids(known: Mapping[str, str]) -> dict[str, str]:
    """The same names, each an id nobody holds (the shared ones kept)."""
    return {name: (value if name in ("policy_id", "service_id", "external_id") else UNKNOWN_ID)
            for name, value in known.items()}


def call(client: Any, endpoint: Endpoint, ids: Mapping[str, str], headers: Mapping[str, str], body: Any = None):
    """One request to ``endpoint``: JSON ``body`` (default ``{}``) for methods that take one."""
    url = endpoint.url(ids)
    if endpoint.method in ("POST", "PUT", "PATCH"):
        return client.request(endpoint.method, url, json={} if body is None else body, headers=dict(headers),
                              follow_redirects=False)
    return client.request(endpoint.method, url, headers=dict(headers), follow_redirects=False)
