"""`OccupancyWorker`: every site's sessions, visits and no-shows refreshed every 30 seconds
in `ruche server run`, in a process of its own at the lowest CPU priority
(`RefreshProcess`), so a long refresh never holds the server's GIL while ingestion and the
API wait."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.server.occupancy.limits import BOOKING_LOOKBACK, FULL_REFRESH_EVERY, REFRESH_NICENESS
from ruche.server.occupancy.queries import started_bookings
from ruche.server.occupancy.refresh import SiteRefresh, refresh_in_two
from ruche.server.registry.listener import RegistryListener
from ruche.server.storage.db import make_engine, make_sessions
from ruche.server.storage.models import (
    SiteRow,
)
from ruche.server.timeseries.points import ChartedBooking, PointWriter, booking_point
from ruche.stoppable import StoppableThread

log = logging.getLogger(__name__)


class OccupancyWorker:
    """Refreshes every site's sessions and no-shows every `interval` seconds.

    Released bookings change who may open the doors, so the listener (the allow-list
    publisher and the decision cache) hears about the site. With `points` (the InfluxDB
    writer), each started desk booking is charted as a `booking` point, again whenever
    its status changes.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        listener: RegistryListener | None = None,
        points: PointWriter | None = None,
        interval: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        apart: str | None = None,
    ) -> None:
        """`apart`: a database URL; recompute in a process of its own connected to it
        (spawned on first use), so a long refresh never holds this process's GIL while
        ingestion and the API wait."""
        self.sessions = sessions
        self.points = points
        self._charted: dict[int, ChartedBooking] = {}
        self.refreshes = 0
        self.failures = 0
        self.listener = listener
        self._interval = interval
        self._clock = clock
        self._full_at: dict[str, datetime] = {}
        """When each site was last recomputed whole."""
        self.busy_s = 0.0
        """Seconds spent refreshing, in all."""
        # An in-memory SQLite database lives in this process only.
        url = None if apart is None or ":memory:" in apart or apart == "sqlite://" else apart
        self._apart = None if url is None else RefreshProcess(url)
        self._thread = StoppableThread(self._loop, name="occupancy")

    @property
    def refresh_pid(self) -> int | None:
        """The refresh process's pid, while it runs (with `apart`)."""
        return None if self._apart is None else self._apart.pid

    def start(self, timeout: float = 10.0) -> None:  # noqa: ARG002 - same shape as the others
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()
        if self._apart is not None:
            self._apart.stop()

    def refresh_all(self) -> None:
        with self.sessions() as session:
            sites = list(session.scalars(select(SiteRow.slug)))
        for site in sites:
            now = self._clock()
            last_full = self._full_at.get(site)
            full = last_full is None or now - last_full >= FULL_REFRESH_EVERY
            started_at = time.monotonic()
            try:
                result = self._refresh(site, now=now, full=full)
                with self.sessions.begin() as session:
                    started = (
                        []
                        if self.points is None
                        else started_bookings(session, site, since=now - BOOKING_LOOKBACK, now=now)
                    )
            except Exception:
                self.failures += 1
                log.exception("refreshing occupancy at %s failed; retrying next round", site)
                if self._apart is not None:
                    self._apart.stop()
                continue
            finally:
                self.busy_s += time.monotonic() - started_at
            self.refreshes += 1
            if full:
                self._full_at[site] = now
            self._chart(started, now)
            if result.released:
                log.info("site %s: bookings %s released as no-shows", site, list(result.released))
            if result.reclaimed:
                log.info("site %s: bookings %s back with their late members", site,
                         list(result.reclaimed))  # fmt: skip
            if (result.released or result.reclaimed) and self.listener is not None:
                self.listener.site_changed(site)

    def _chart(self, bookings: list[ChartedBooking], now: datetime) -> None:
        """Write the `booking` points that changed since they were last written (all of
        them after a restart: rewriting a point changes nothing)."""
        if self.points is None:
            return
        fresh = [b for b in bookings if self._charted.get(b.id) != b]
        if fresh:
            try:
                self.points.write([booking_point(b) for b in fresh])
            except Exception:
                self.failures += 1
                log.exception("charting %d bookings failed; retrying next round", len(fresh))
                return
            self._charted.update((b.id, b) for b in fresh)
        horizon = now - BOOKING_LOOKBACK
        self._charted = {i: b for i, b in self._charted.items() if b.start >= horizon}

    def _refresh(self, site: str, *, now: datetime, full: bool) -> SiteRefresh:
        if self._apart is None:
            return refresh_in_two(self.sessions, site, now=now, full=full)
        return self._apart.refresh(site, now=now, full=full)

    def _loop(self, stopping: threading.Event) -> None:
        wait = self._interval
        while not stopping.wait(wait):
            before = self.busy_s
            self.refresh_all()
            # Under heavy load a round can take seconds: wait long enough that refreshing
            # keeps to about a fifth of the time, and ingestion to the rest.
            wait = max(self._interval, 4 * (self.busy_s - before))


class RefreshError(RuntimeError):
    """The refresh process failed or died; the message holds its traceback."""


class RefreshProcess:
    """`refresh_in_two` in a child process of its own (spawned on first use, again after a
    failure), connected to the database by its own engine, at the lowest CPU priority."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._context = multiprocessing.get_context("spawn")
        self._child: BaseProcess | None = None
        self._pipe: Connection | None = None

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None and child.is_alive() else None

    def refresh(self, site: str, *, now: datetime, full: bool) -> SiteRefresh:
        pipe = self._start()
        try:
            pipe.send((site, now, full))
            outcome, value = pipe.recv()
        except (EOFError, OSError) as exc:
            self.stop()
            raise RefreshError(f"the refresh process died: {exc!r}") from exc
        if outcome != "ok":
            raise RefreshError(str(value))
        result: SiteRefresh = value
        return result

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the child to finish (it ends after its current refresh), then end it."""
        child, pipe = self._child, self._pipe
        self._child = self._pipe = None
        if child is None or pipe is None:
            return
        with contextlib.suppress(OSError, BrokenPipeError):
            pipe.send(None)
        child.join(timeout)
        if child.is_alive():
            child.terminate()
            child.join(5)
        pipe.close()

    def _start(self) -> Connection:
        if self._child is not None and self._pipe is not None and self._child.is_alive():
            return self._pipe
        self.stop()
        ours, theirs = self._context.Pipe()
        child = self._context.Process(
            target=_serve, args=(self._url, theirs), name="occupancy-refresh", daemon=True
        )
        child.start()
        theirs.close()
        self._child, self._pipe = child, ours
        return ours


def _serve(url: str, pipe: Connection) -> None:
    """The refresh process: answer each `(site, now, full)` with `("ok", SiteRefresh)` or
    `("error", traceback)`, until told `None`."""
    _in_background()
    engine = make_engine(url)
    sessions = make_sessions(engine)
    try:
        while (request := pipe.recv()) is not None:
            site, now, full = request
            try:
                pipe.send(("ok", refresh_in_two(sessions, site, now=now, full=full)))
            except Exception:  # noqa: BLE001 - the parent logs it and carries on
                pipe.send(("error", traceback.format_exc()))
    except EOFError:
        pass  # the server went away
    finally:
        engine.dispose()


def _in_background() -> None:
    """Make the refresh process yield the CPU to everything else: recomputing sessions
    can wait a few seconds, but while it competed as an equal for a busy machine's
    cores, ingestion fell behind at 10,000 events/s and never caught up. Linux's
    SCHED_IDLE runs it on what the other processes leave (with a small share still, so
    it is never starved outright); elsewhere, the lowest nice level."""
    os.nice(REFRESH_NICENESS)
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
