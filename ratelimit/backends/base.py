"""What a storage backend offers the :class:`~ratelimit.Limiter`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ratelimit.decision import Decision
from ratelimit.limits import Limit

__all__ = ["Backend"]


@runtime_checkable
class Backend(Protocol):
    """A store of per-key limit state that decides atomically.

    ``decide`` runs the algorithm of every limit in ``limits`` for ``key`` at the backend's
    current time, in one atomic step: when every limit admits ``cost`` and ``consume`` is
    true, every limit's new state is stored; otherwise nothing is. It returns one
    :class:`Decision` per limit, in order. Failures raise :class:`~ratelimit.BackendError`.
    ``cost`` is at least 1, or 0 in a dry run (``consume=False``): a probe of the state as it
    is, always admitted (unless the key owes a debt after a charge), reporting the current
    ``remaining`` and ``reset_after``.

    Optional: ``decide_each(items, consume)`` / ``adecide_each`` decide several
    ``(key, limit, cost)`` items in one atomic step (the HTTP engine uses them when the rules
    of a request key clients differently), and ``atomic_across_keys`` (default true) says
    whether the keys of different clients can meet in that one step.

    Optional (``charge`` rules, SPEC §5): ``charge(key, limits, delta, elapsed_ms)`` /
    ``acharge`` add ``delta`` units (or give back ``-delta``) to every limit of ``limits``
    for ``key`` in one atomic step, even past the limit (a debt: see
    :mod:`ratelimit.algorithms`). ``elapsed_ms`` is the time since the reservation was
    decided: a give-back lands only in the reservation's own window.
    """

    def decide(
        self, key: str, limits: Sequence[Limit], cost: int, consume: bool = True
    ) -> list[Decision]: ...

    async def adecide(
        self, key: str, limits: Sequence[Limit], cost: int, consume: bool = True
    ) -> list[Decision]: ...

    def reset(self, key: str, limits: Sequence[Limit]) -> None: ...

    async def areset(self, key: str, limits: Sequence[Limit]) -> None: ...
