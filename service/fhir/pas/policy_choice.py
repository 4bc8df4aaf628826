"""Which policy a PAS request is reviewed under: its items' ``productOrService`` codes against the
codes each policy lists under ``orders:`` in its ``policy.yaml`` (the same list CDS Hooks uses).

One request is reviewed under one policy (a request is one organization, one external_id, one
policy: shared/contract.md "Requests"). Items no policy lists (an office visit beside the implant)
are pended with the others but choose nothing. A request none of whose items any policy lists,
or whose items point at different policies, is refused (422, one OperationOutcome): the service
would otherwise file it under a policy it was not asked about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from service.fhir.outcome import Issue, OperationOutcomeError
from service.fhir.pas.request import Item

UNPROCESSABLE = 422


@dataclass(frozen=True)
class Choice:
    policy: str
    sequences: tuple[int, ...]  # the items whose codes the policy lists


def choose_policy(items: Iterable[Item], orders: Mapping[str, Iterable[tuple[str, str]]],
                  default: str | None = None) -> Choice:
    """The one policy listing the items' codes. Several policies listing all the matched items:
    ``default`` (the configured default policy) when it is one of them, else refused."""
    listed = {policy: set(codes) for policy, codes in orders.items()}
    matched: list[tuple[Item, set[str]]] = []
    for item in items:
        policies = {policy for policy, codes in listed.items() if any(code in codes for code in item.codes)}
        if policies:
            matched.append((item, policies))
    if not matched:
        items = list(items)
        raise OperationOutcomeError([Issue(
            "not-supported",
            "No policy of this service lists the items' productOrService codes ("
            + _codes(items) + "); the request cannot be reviewed here.",
            f"{items[0].path}.productOrService" if items else None)], UNPROCESSABLE)
    common = set.intersection(*(policies for _, policies in matched))
    if len(common) == 1:
        return Choice(common.pop(), tuple(item.sequence for item, _ in matched))
    if common and default in common:
        return Choice(default, tuple(item.sequence for item, _ in matched))
    if common:
        message = (f"The items' codes are listed by several policies ({', '.join(sorted(common))}); "
                   "this service cannot tell which one the request is for.")
    else:
        message = ("The items' codes belong to different policies ("
                   + "; ".join(f"item {item.sequence}: {', '.join(sorted(p))}" for item, p in matched)
                   + "); send one request per policy.")
    raise OperationOutcomeError([Issue("business-rule", message, f"{matched[0][0].path}.productOrService")],
                                UNPROCESSABLE)


def _codes(items: list[Item]) -> str:
    codes = [f"{system}|{code}"[:100] for item in items for system, code in item.codes][:5]
    return ", ".join(codes) or "none"
