"""The InfluxDB adapter: a durable, ordered writer and InfluxQL queries over the v1 HTTP API.

    writer = InfluxWriter("http://127.0.0.1:8086", "ruche", spool_dir=Path("/var/lib/ruche/spool"))
    writer.write([Point("desk", {"site": "lyon"}, {"occupied": True}, event_time_ns)])
    # returned: the points are on disk (fsync'd) and will reach InfluxDB, in order
    writer.flush(10.0)
    writer.close()

It speaks only `/write` (line protocol) and `/query` (InfluxQL), which InfluxDB 1.x, 2.x
and 3.x all serve (v1 compatibility; docs/operations.md says what each needs). Credentials
travel in the `Authorization` header, a token as `Token ...` and a user as HTTP basic
auth, which all three read: never in a URL, where a log line would show them.

`prepare_database()` checks the database at start (`SHOW DATABASES`) and creates it when
missing (`CREATE DATABASE`, which only 1.x does), saying in the log which it did, or
why it could not; when InfluxDB does not answer yet, it tries again until it does.

The spool: `write()` encodes the points, appends them to the open segment file in
`spool_dir` and fsyncs before returning, so once it returns the points survive the process
being killed. Segments are named by a growing sequence number (`00000000000000000042.lp`)
and hold at most `batch_points` points; a segment is sealed when it is full, when its first
point is `flush_interval` seconds old, or on `flush()`. One drainer thread posts sealed
segments oldest first, one segment per request, and deletes a segment only after InfluxDB
answered 2xx. Connection errors, timeouts, 5xx, 401/403 (credentials), 404 (no such
database), 408 and 429 are retried with capped backoff forever, without reordering: the
fix is on the InfluxDB side, and the points wait for it on disk. Any other 4xx means the
batch itself is bad (InfluxDB 1.x answers 400 "partial write" and keeps the good points);
the segment is moved to `spool_dir/dead-letter/` with a `.json` note of why, counted and
logged, and the drainer carries on. On start the writer replays whatever the spool holds,
dropping only a torn last line that a crash left half-written (its `write()` never returned).

Point timestamps are event times, so replaying a batch that InfluxDB had already stored
(the answer was lost) rewrites the same points: delivery is at least once, storage exactly
once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import httpx

from ruche.server.timeseries.lineprotocol import Point, encode_point

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".lp"
DEAD_LETTER_DIR = "dead-letter"
LOCK_FILE = "lock"
# 4xx answers that say nothing about the points: wait for the operator, never dead-letter.
_RETRY_4XX = frozenset({401, 403, 404, 408, 429})
PREPARE_RETRY_MAX_S = 30.0
SETUP_HINT = (
    "on InfluxDB 2.x create a bucket and a DBRP mapping for it, on 3.x the database "
    "(influxdb3 create database); see docs/operations.md, 'InfluxDB 2.x and 3.x'"
)


class InfluxError(RuntimeError):
    """InfluxDB refused a request or could not be reached; the message carries its error text."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class InfluxUnavailable(InfluxError):  # noqa: N818 - named for the condition, like the HTTP 503
    """InfluxDB did not answer (connection refused, timeout)."""


class SpoolError(InfluxError):
    """The spool directory cannot be used: locked by another writer, unreadable or full."""


@dataclass(frozen=True)
class DatabaseCheck:
    """What `InfluxWriter.prepare_database` found or did, as it logged it."""

    outcome: Literal["exists", "created", "refused", "unreachable"]
    message: str
    retention_policy_found: bool | None = None
    """Whether `SHOW RETENTION POLICIES` lists the writer's `retention_policy`; None when
    it has none, or the database could not be checked."""


def quote_identifier(name: str) -> str:
    r"""An InfluxQL identifier in double quotes.

    >>> quote_identifier('ruche "prod"')
    '"ruche \\"prod\\""'
    """
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class InfluxWriterStats:
    """A snapshot of the writer for metrics: throughput, errors and what waits on disk."""

    points_written: int
    batches_written: int
    write_errors: Mapping[str, int]
    spooled_points: int
    spool_bytes: int
    dead_lettered_batches: int
    dead_lettered_points: int
    last_error: str | None
    up: bool
    refusing: bool = False
    """InfluxDB answers but refuses the writes (401, 403, 404: a token, a permission or a
    database or DBRP mapping missing): nothing flows until someone fixes it."""


@dataclass
class _Segment:
    seq: int
    path: Path
    points: int = 0
    size: int = 0
    opened_at: float = 0.0
    handle: IO[bytes] | None = field(default=None, repr=False)


def _segment_name(seq: int) -> str:
    return f"{seq:020d}{SEGMENT_SUFFIX}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _classify(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.TransportError):
        return "connect"
    return "http"


def _error_text(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    if isinstance(body, dict) and isinstance(body.get("message"), str):  # 2.x and 3.x
        return str(body["message"])
    return response.text.strip()


class InfluxWriter:
    """Writes points to InfluxDB through a durable on-disk spool; nothing is dropped.

    Keyword arguments:
    - `token`: sent as `Authorization: Token <token>` (InfluxDB 2.x and 3.x).
    - `username`, `password`: sent as HTTP basic auth (InfluxDB 1.x with auth enabled, or
      a 2.x v1 authorization).
    - `retention_policy`: the `rp` query parameter (2.x maps database/rp to a bucket).
    - `spool_dir`: where points wait; one writer per directory (it takes a lock file).
    - `batch_points`: points per segment, hence per `/write` request.
    - `flush_interval`: seconds a partly filled segment waits for more points.
    - `timeout`: seconds per HTTP request.
    - `max_backoff`: longest pause between retries, in seconds.
    - `clock`: monotonic seconds, for segment ages.
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        retention_policy: str | None = None,
        spool_dir: Path,
        batch_points: int = 5000,
        flush_interval: float = 0.2,
        timeout: float = 5.0,
        max_backoff: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch_points < 1:
            raise ValueError("batch_points must be at least 1")
        self.url = url.rstrip("/")
        self.database = database
        self.spool_dir = Path(spool_dir)
        self.dead_letter_dir = self.spool_dir / DEAD_LETTER_DIR
        self.batch_points = batch_points
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self._clock = clock
        self.retention_policy = retention_policy
        self._params: dict[str, str] = {"db": database}
        if retention_policy:
            self._params["rp"] = retention_policy
        headers = {"Authorization": f"Token {token}"} if token else {}
        auth = None if username is None else httpx.BasicAuth(username, password or "")

        self._lock = threading.Condition()
        self._sealed: deque[_Segment] = deque()
        self._open: _Segment | None = None
        self._inflight: _Segment | None = None
        self._next_seq = 1
        self._flush_requested = False
        self._stopping = threading.Event()
        self._closed = False
        self._points_written = 0
        self._batches_written = 0
        self._errors: Counter[str] = Counter()
        self._dead_batches = 0
        self._dead_points = 0
        self._last_error: str | None = None
        self._up = False
        self._refusing = False

        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.dead_letter_dir.mkdir(exist_ok=True)
        self._lock_handle = self._take_lock()
        try:
            self._recover()
        except OSError as exc:
            self._lock_handle.close()
            raise SpoolError(f"cannot read the spool in {self.spool_dir}: {exc}") from exc
        self._http = httpx.Client(timeout=timeout, headers=headers, auth=auth)
        self._query_http = httpx.Client(timeout=timeout, headers=headers, auth=auth)
        self._preparer: threading.Thread | None = None
        self._drainer = threading.Thread(
            target=self._drain_forever, name=f"influx-writer-{database}", daemon=True
        )
        self._drainer.start()

    # --- the caller's side ------------------------------------------------------------

    def write(self, points: Iterable[Point]) -> None:
        """Spool `points` durably; on return they survive a crash and will reach InfluxDB.

        Raises `LineProtocolError` (nothing spooled) for a point that cannot be encoded,
        `SpoolError` when the disk refuses the append.
        """
        self.write_lines([encode_point(point) for point in points])

    def write_lines(self, lines: Iterable[str]) -> None:
        """`write` for points already encoded (`lineprotocol.encode_point`), one per line."""
        encoded = [f"{line}\n".encode() for line in lines]
        if not encoded:
            return
        with self._lock:
            if self._closed:
                raise SpoolError("the writer is closed")
            try:
                self._append(encoded)
            except OSError as exc:
                raise SpoolError(f"cannot append to the spool in {self.spool_dir}: {exc}") from exc
            self._lock.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Seal the open segment and wait until the spool is empty; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._flush_requested = True
            self._lock.notify_all()
            while self._open is not None or self._sealed or self._inflight is not None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._lock.wait(remaining if remaining is not None else 1.0)
                self._flush_requested = True
            return True

    def stats(self) -> InfluxWriterStats:
        with self._lock:
            segments = [*self._sealed]
            if self._open is not None:
                segments.append(self._open)
            if self._inflight is not None:
                segments.append(self._inflight)
            return InfluxWriterStats(
                points_written=self._points_written,
                batches_written=self._batches_written,
                write_errors=dict(self._errors),
                spooled_points=sum(s.points for s in segments),
                spool_bytes=sum(s.size for s in segments),
                dead_lettered_batches=self._dead_batches,
                dead_lettered_points=self._dead_points,
                last_error=self._last_error,
                up=self._up,
                refusing=self._refusing,
            )

    def ping(self, timeout: float) -> httpx.Response:
        """`GET /ping` with the writer's credentials: InfluxDB 3.x refuses an anonymous
        ping unless started with `--disable-authz health,ping`."""
        return self._query_http.get(f"{self.url}/ping", timeout=timeout)

    def close(self) -> None:
        """Stop the drainer (after its current request) and release the spool; what is not
        yet in InfluxDB stays on disk for the next writer. Call `flush()` first to drain."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stopping.set()
            self._lock.notify_all()
        self._drainer.join()
        if self._preparer is not None:
            self._preparer.join()
        with self._lock:
            if self._open is not None:
                self._seal_open()
        self._http.close()
        self._query_http.close()
        self._lock_handle.close()

    def __enter__(self) -> InfluxWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- queries --------------------------------------------------------------------------

    def query(self, q: str, *, epoch: str = "ns") -> dict[str, Any]:
        """Run InfluxQL `q` (GET for SELECT and SHOW, POST otherwise) and return the JSON.

        Raises `InfluxUnavailable` when InfluxDB does not answer and `InfluxError` with
        InfluxDB's own error text when it refuses the query or any statement in it.
        """
        verb = q.split(None, 1)[0].upper() if q.strip() else ""
        read_only = verb in {"SELECT", "SHOW"}
        try:
            if read_only:
                response = self._query_http.get(
                    f"{self.url}/query", params={**self._params, "q": q, "epoch": epoch}
                )
            else:  # the statement in the body; db and rp in the URL, where every version looks
                response = self._query_http.post(
                    f"{self.url}/query", params=self._params, data={"q": q, "epoch": epoch}
                )
        except httpx.HTTPError as exc:
            raise InfluxUnavailable(f"InfluxDB at {self.url} did not answer: {exc}") from exc
        if response.status_code >= 300:
            raise InfluxError(
                f"InfluxDB refused the query ({response.status_code}): {_error_text(response)}",
                status=response.status_code,
            )
        try:
            result: dict[str, Any] = response.json()
        except ValueError as exc:
            raise InfluxError(f"InfluxDB answered the query with non-JSON: {exc}") from exc
        for statement in result.get("results", []):
            if "error" in statement:
                raise InfluxError(f"InfluxDB refused the query: {statement['error']}")
        return result

    # --- the database -----------------------------------------------------------------

    def prepare_database(self, *, retry: bool = True) -> DatabaseCheck:
        """Make sure the database is there: listed by `SHOW DATABASES`, else created with
        `CREATE DATABASE`. Logs one line saying which, or why it could not; never raises:
        points wait in the spool whatever the answer.

        With `retry`, an InfluxDB that does not answer yet is asked again in a thread,
        backing off to every 30 s, until it answers (or the writer closes): on 1.x the
        database must exist before the first write lands."""
        check = self._check_database(say_unreachable=True)
        if check.outcome == "unreachable" and retry and self._preparer is None:
            self._preparer = threading.Thread(
                target=self._prepare_later, name=f"influx-prepare-{self.database}", daemon=True
            )
            self._preparer.start()
        return check

    def _prepare_later(self) -> None:
        delay = 1.0
        while not self._stopping.wait(delay):
            if self._check_database(say_unreachable=False).outcome != "unreachable":
                return
            delay = min(delay * 2, PREPARE_RETRY_MAX_S)

    def _check_database(self, *, say_unreachable: bool) -> DatabaseCheck:
        name = self.database
        try:
            try:
                listed = name in self._names("SHOW DATABASES")
            except InfluxUnavailable:
                raise
            except InfluxError:
                listed = False  # not allowed to list: CREATE DATABASE says more below
            if listed:
                check = DatabaseCheck("exists", f"InfluxDB database {name} is already there")
            else:
                self.query(f"CREATE DATABASE {quote_identifier(name)}")
                check = DatabaseCheck("created", f"created InfluxDB database {name}")
        except InfluxUnavailable as exc:
            check = DatabaseCheck(
                "unreachable",
                f"could not check InfluxDB database {name}: {exc}; points wait in the spool "
                "and the check runs again until InfluxDB answers",
            )
            if say_unreachable:
                log.warning("%s", check.message, extra={"database": name, "url": self.url})
            return check
        except InfluxError as exc:
            check = DatabaseCheck(
                "refused",
                f"could not create InfluxDB database {name}: {exc}; points wait in the spool; "
                f"{SETUP_HINT}",
            )
            log.warning("%s", check.message, extra={"database": name, "url": self.url})
            return check
        log.info("%s", check.message, extra={"database": name, "url": self.url})
        if self.retention_policy:
            check = self._check_retention_policy(check)
        return check

    def _check_retention_policy(self, check: DatabaseCheck) -> DatabaseCheck:
        """Warn when the database has no retention policy of the configured name: 1.x would
        refuse every write with it, 2.x has no bucket mapped to it."""
        policy = self.retention_policy
        try:
            found = policy in self._names(
                f"SHOW RETENTION POLICIES ON {quote_identifier(self.database)}"
            )
        except InfluxError as exc:
            log.warning("could not list the retention policies of InfluxDB database %s: %s",
                        self.database, exc)  # fmt: skip
            return check
        if not found:
            log.warning(
                "InfluxDB database %s has no retention policy %s: points wait in the spool "
                "until it does (1.x: CREATE RETENTION POLICY; 2.x: a DBRP mapping with that "
                "retention policy; 3.x: leave retention_policy unset)",
                self.database, policy,
            )  # fmt: skip
        return DatabaseCheck(check.outcome, check.message, retention_policy_found=found)

    def _names(self, q: str) -> list[str]:
        """The first column of a `SHOW ...` answer."""
        series = self.query(q)["results"][0].get("series") or []
        return [str(row[0]) for one in series for row in one.get("values") or []]

    # --- the spool (callers hold self._lock) ---------------------------------------------

    def _take_lock(self) -> IO[bytes]:
        handle = (self.spool_dir / LOCK_FILE).open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise SpoolError(
                f"another writer holds the spool in {self.spool_dir}: give each writer its own"
            ) from exc
        return handle

    def _recover(self) -> None:
        """Queue the segments a previous writer left, cutting a torn last line off each."""
        found = sorted(
            (int(p.stem), p) for p in self.spool_dir.glob(f"*{SEGMENT_SUFFIX}") if p.stem.isdigit()
        )
        for seq, path in found:
            data = path.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]
            if len(complete) != len(data):
                log.warning(
                    "influx spool: dropping a torn last line a crash left in %s",
                    path.name,
                    extra={"segment": path.name, "torn_bytes": len(data) - len(complete)},
                )
                with path.open("r+b") as handle:
                    handle.truncate(len(complete))
                    os.fsync(handle.fileno())
            if not complete:
                path.unlink()
                continue
            self._sealed.append(_Segment(seq, path, complete.count(b"\n"), len(complete)))
        if found:
            self._next_seq = found[-1][0] + 1
            log.info(
                "influx spool: replaying %d points from a previous run",
                sum(s.points for s in self._sealed),
                extra={"segments": len(self._sealed)},
            )

    def _append(self, lines: list[bytes]) -> None:
        touched: list[_Segment] = []
        start = 0
        while start < len(lines):
            segment = self._open or self._new_segment()
            take = min(self.batch_points - segment.points, len(lines) - start)
            chunk = b"".join(lines[start : start + take])
            assert segment.handle is not None  # noqa: S101 - an open segment has a handle
            segment.handle.write(chunk)
            segment.points += take
            segment.size += len(chunk)
            start += take
            touched.append(segment)
            if segment.points >= self.batch_points:
                segment.handle.flush()
                os.fsync(segment.handle.fileno())
                self._seal_open()
        for segment in touched:
            if segment.handle is not None:
                segment.handle.flush()
                os.fsync(segment.handle.fileno())

    def _new_segment(self) -> _Segment:
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        path = self.spool_dir / _segment_name(seq)
        handle = path.open("xb")
        _fsync_dir(self.spool_dir)
        self._open = _Segment(seq, path, opened_at=self._clock(), handle=handle)
        return self._open

    def _seal_open(self) -> None:
        segment, self._open = self._open, None
        if segment is None:
            return
        if segment.handle is not None:
            segment.handle.close()
            segment.handle = None
        self._sealed.append(segment)

    def _next_batch(self) -> _Segment | None:
        """The oldest sealed segment, sealing the open one when it is old enough."""
        if not self._sealed and self._open is not None and self._open.points:
            age = self._clock() - self._open.opened_at
            if self._flush_requested or age >= self.flush_interval or self._stopping.is_set():
                self._seal_open()
        if not self._sealed:
            if self._open is None:
                self._flush_requested = False
            return None
        self._inflight = self._sealed.popleft()
        return self._inflight

    # --- the drainer thread ---------------------------------------------------------------

    def _drain_forever(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                segment = self._next_batch()
                if segment is None:
                    wait = self.flush_interval
                    if self._open is not None:
                        wait = max(
                            0.0, self.flush_interval - (self._clock() - self._open.opened_at)
                        )
                    self._lock.notify_all()
                    self._lock.wait(max(wait, 0.005) if self._open is not None else None)
                    continue
            try:
                done = self._post_until_settled(segment)
            except OSError as exc:  # the spool's disk failed: keep the batch, try again later
                self._record_error("spool", f"spool segment {segment.path.name}: {exc}")
                done = False
                self._stopping.wait(self.max_backoff)
            with self._lock:
                self._inflight = None
                if not done:  # back to the head of the queue, for a retry or the next writer
                    self._sealed.appendleft(segment)
                self._lock.notify_all()

    def _post_until_settled(self, segment: _Segment) -> bool:
        """Post one segment until InfluxDB stores or rejects it; False if told to stop."""
        body = segment.path.read_bytes()
        backoff = 0.05
        while True:
            outcome, text = self._post(body)
            if outcome == "written":
                segment.path.unlink(missing_ok=True)
                with self._lock:
                    self._points_written += segment.points
                    self._batches_written += 1
                    self._up = True
                    self._refusing = False
                return True
            if outcome == "rejected":
                self._dead_letter(segment, text)
                return True
            if self._stopping.wait(backoff):
                return False
            backoff = min(backoff * 2, self.max_backoff)

    def _post(self, body: bytes) -> tuple[str, str]:
        """One `/write`: "written", "rejected" (the points are bad) or "retry", and why."""
        try:
            response = self._http.post(
                f"{self.url}/write", params={**self._params, "precision": "ns"}, content=body
            )
        except httpx.HTTPError as exc:
            text = f"InfluxDB at {self.url} did not answer: {exc!r}"
            self._record_error(_classify(exc), text)
            return "retry", text
        status = response.status_code
        if 200 <= status < 300:
            return "written", ""
        text = f"InfluxDB answered {status}: {_error_text(response)}"
        if status >= 500:
            self._record_error("server", text)
        elif status in {401, 403}:
            self._record_error("auth", text, up=True, refusing=True)
        elif status == 404:
            self._record_error("not_found", text, up=True, refusing=True)
        elif status in _RETRY_4XX:
            self._record_error("throttled", text, up=True)
        else:
            self._record_error("rejected", text, up=True)
            return "rejected", text
        return "retry", text

    def _record_error(
        self, kind: str, text: str, *, up: bool = False, refusing: bool = False
    ) -> None:
        with self._lock:
            first = self._last_error != text
            self._errors[kind] += 1
            self._last_error = text
            self._up = up
            self._refusing = refusing
        if first:  # one line per new condition, not one per retry
            log.warning("influx write failed: %s", text, extra={"kind": kind, "url": self.url})

    def _dead_letter(self, segment: _Segment, reason: str) -> None:
        target = self.dead_letter_dir / segment.path.name
        note = {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "database": self.database,
            "points": segment.points,
            "error": reason,
        }
        target.with_suffix(".json").write_text(json.dumps(note) + "\n", encoding="utf-8")
        segment.path.replace(target)
        with contextlib.suppress(OSError):
            _fsync_dir(self.dead_letter_dir)
            _fsync_dir(self.spool_dir)
        with self._lock:
            self._dead_batches += 1
            self._dead_points += segment.points
        log.error(
            "influx rejected a batch; moved it to %s",
            target,
            extra={"points": segment.points, "error": reason, "segment": target.name},
        )
