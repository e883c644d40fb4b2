"""Admission: requests run concurrently up to a limit, wait in a bounded queue, else get 429."""

from __future__ import annotations

import asyncio


class Busy(Exception):
    """Every running slot and every queue place is taken (the route answers 429)."""


class Admission:
    """At most ``max_running`` requests run at once and ``max_queued`` wait for a slot.

    Example:
        >>> ticket = admission.admit()      # raises Busy when the queue is full
        >>> try:
        ...     await ticket.start()        # waits in the queue
        ...     ...
        ... finally:
        ...     ticket.release()
    """

    def __init__(self, max_running: int, max_queued: int) -> None:
        self.max_running = max_running
        self.max_queued = max_queued
        self.running = 0
        self.queued = 0
        self._slots: asyncio.Semaphore | None = None

    def admit(self) -> Ticket:
        if self.running + self.queued >= self.max_running + self.max_queued:
            raise Busy(
                f"server busy: {self.running} requests running and {self.queued} waiting "
                f"(limits {self.max_running} and {self.max_queued}); retry shortly"
            )
        self.queued += 1
        return Ticket(self)

    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_running)
        return self._slots


class Ticket:
    """One admitted request: queued until :meth:`start`, holding a slot until :meth:`release`."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self.state = "queued"

    async def start(self) -> None:
        await self._admission._semaphore().acquire()
        if self.state != "queued":  # released while waiting
            self._admission._semaphore().release()
            return
        self._admission.queued -= 1
        self._admission.running += 1
        self.state = "running"

    def release(self) -> None:
        """Give back the queue place or the slot (idempotent)."""
        if self.state == "queued":
            self._admission.queued -= 1
        elif self.state == "running":
            self._admission.running -= 1
            self._admission._semaphore().release()
        self.state = "released"
