"""``algorithm = "concurrency"``: requests in flight per client, with ``lease``.

A slot is taken in the hold step — after every other limit admitted the request, so a
refused request never holds one — and given back after the response (:func:`release`):
sent, abandoned by the client, or failed. With Redis, slots are leases that expire after
``lease`` (a crashed worker's slots come back by themselves).
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ratelimit.decision import Decision
    from ratelimit.http.flow import Draft
    from ratelimit.limits import Limit

__all__ = ["Held", "hold", "release", "route_lease"]

#: A slot taken: (key, limit, token).
Held = tuple[str, "Limit", str]


def route_lease(draft: Draft, key: str, limits: tuple[Limit, ...]) -> None:
    """A concurrency rule's part of the plan: a slot to take in the hold step."""
    draft.leases.append((key, limits[0]))


def hold(draft: Draft) -> Generator[Any, Any, Decision | None]:
    """Take every slot; on a refusal give back those taken and return the refusal."""
    for key, limit in draft.leases:
        token = uuid.uuid4().hex
        got: Decision = yield ("acquire", (key, limit, token))
        if not got:
            yield from release(draft.held)
            draft.held.clear()
            return got
        draft.held.append((key, limit, token))
        draft.decisions.append(got)
    return None


def release(held: Iterable[Held]) -> Generator[Any, Any, None]:
    """Give the slots back (after the response, or when a later slot was refused)."""
    for lease in held:
        yield ("release", lease)
