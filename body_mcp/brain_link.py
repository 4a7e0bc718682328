"""A linked body's connection to its brain: one more kill-switch source, and the failsafe.

`BrainLink.run()` keeps the body registered, listens to `GET /v1/events` (the kill switch
arrives there within milliseconds; read in a thread of its own, which takes a kill or resume at once, so the next
guard check sees it even while the event loop runs a call), heartbeats (an answer to a heartbeat sent before the
stream's last kill or resume arrived may predate it, and is not obeyed), and ships the audit chain from the local
outbox (`brain_outbox.shipped_through`): batches are re-sent until acknowledged, and the
brain stores each (body, seq) once, so nothing is lost or duplicated when the brain is
down, restarts, or the body is killed. `state()` is engaged when the brain's kill is, until
the first registration succeeds (a body that never reached its brain could not hear its
kill), and when nothing has been heard from the brain for `failsafe_s` (fail closed);
reconnecting lifts the failsafe unless the brain is killed. `leave()` is a clean exit: the brain is told
(`POST /v1/bodies/{id}/deregister`), so it marks the body gone instead of paging about it.

The failsafe counts the brain's silence, not the body's own. "Heard" is taken as a heartbeat's
answer or a stream event (a keepalive included) is read, and nothing on the event loop between
two heartbeats waits for a disk or a worker thread: the record below is written in a thread of
its own, the audit chain is read and marked shipped in worker threads (the database's lock is the
audit writer's, held across its syncs). A body whose own event loop stood still (a long
synchronous step, a lock, a starved CPU) has not read what the brain sent meanwhile, so it
re-checks before failing closed: past `failsafe_s` of silence it fails closed only once it has
also been listening, its loop running, for `recheck_s` since it last heard (the heartbeat
interval, at least 1 s, at most half the failsafe), and meanwhile heartbeats at once. A brain
that is really silent still trips it, at most `recheck_s` after the loop runs again; a body whose
loop stands still starts no call meanwhile.

With an `attester` (the audit store's), the body registers its verification key (derived from its audit key) and
attests every event it ships, so that the brain can tell the body's own events from hand-made ones before it
confirms a task's verification with one.

With a `record` path, what the link knows is written there whenever it changes
(`link_state`), for `swarm status` in another process: always from the recorder's one thread, in
order (its fsync never holds up the event loop: not the call a kill refuses, nor a heartbeat),
and waited for only by `leave()`.

Audit shipping holds off for `KILL_QUIET_S` after the body hears a kill (its events are shipped then, none lost,
nor is `leave()` held up): the kill's refusals, on this body and the other bodies on the machine, get the CPU that
shipping and the brain's ingest of the last writes would take in the moment every body is hearing the kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import NoReturn

import anyio

from shared_protocol import AuditEvent
from shared_protocol.brain import (
    AuditBatch,
    BrainErrorCode,
    Decision,
    DecisionRequest,
    KillState,
    RegisterRequest,
    Registration,
    RenewRequest,
)
from shared_protocol.tools import LinkState

from ._db import StateDB
from .audit import Attester
from .brain_client import BrainClient, BrainRejected, BrainUnavailable, kill_state_from
from .killswitch import RELEASED, Heard, HeardBy
from .killswitch import KillState as BodyKillState
from .link_state import REFRESH_S, LinkRecord, now_iso, read_link_record, write_link_record

logger = logging.getLogger(__name__)

_BATCH = 500
_DEFAULT_BATCH_BYTES = 1024 * 1024
_ENVELOPE_BYTES = 1024
"""Room in a batch's bytes for what is around its events (the body id, the keys)."""
_NEVER_REACHED = "the brain has not been reached since this body started"
_TICK_S = 0.1
"""How often the link notes that its event loop runs (to tell the body's own stalls from the brain's silence)."""
_LAG_S = 0.25
"""A tick later than this (past `_TICK_S`) means the loop stood still that long: time the link could not listen."""
KILL_QUIET_S = 0.5
"""How long audit shipping holds off after the body hears a kill engage."""
SHIP_EVERY_S = 1.0
"""The least time between two shipments: a body calling every few milliseconds ships its events in batches, not one
HTTP request (and one brain ingest) per call, which cost the machine as much CPU as the call itself. A second, not
less: a round costs the body and its brain a request, an attested batch and a commit whatever it carries, and 32
bodies on 2 cores shipping every 0.25 s gave their brain 3-8 times the CPU in a kill's window (`bench_kill_fanout.py`
against the code before, session 21). Until session 21 the rounds came about once a second anyway (a bug: the wake-up
after the first round was lost, and only the one-second poll started the next)."""
SHIP_POLL_S = 1.0
"""How often the shipping loop looks, between rounds, whether there is more to ship: a commit of this process told
(`events_committed`, which wakes nothing), or a chain found longer (another process's body on the workspace). Looks,
not wake-ups on commit: a round woken by the commits of a burst lands in the burst, when a kill for it does (32 bodies
starting to write together shipped 32 rounds into their brain as it published the kill: `bench_kill_fanout.py`,
session 21); a look's time has nothing to do with the calls'."""


@dataclass
class Claim:
    """A task this body holds: the claim token the brain gave, and when its lease was last renewed."""

    token: str
    lease_s: int
    renewed_at: float


class BrainLink:
    def __init__(
        self,
        client: BrainClient,
        db: StateDB,
        *,
        body_id: str,
        workspace: str,
        failsafe_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        record: Path | None = None,
        brain_url: str = "",
        attester: Attester | None = None,
        pairing: str | None = None,
    ) -> None:
        """`clock` measures silence; `wall` dates what is recorded at `record` (None: nothing is); `attester`
        attests the shipped events (None: they go unattested, and the brain confirms no verification of this body);
        `pairing`: a paired token's secret (`$SWARM_PAIRING`), sent with the key when the body registers."""
        self.client = client
        self.attester = attester
        self._pairing = pairing
        self._db = db
        self.body_id = body_id
        self.workspace = workspace
        self.failsafe_s = failsafe_s
        self.heartbeat_s = 2.0
        self.max_batch_bytes = _DEFAULT_BATCH_BYTES
        """The largest audit batch the brain reads (it says so when the body registers)."""
        self._clock = clock
        self._last_heard = clock()  # (until the first registration, the body fails closed anyway)
        self._ticked = self._last_heard
        """When the event loop was last seen running (`_tick`)."""
        self._stalled_s = 0.0
        """Seconds the event loop was found standing still, in all (`_tick`)..."""
        self._stalled_at_heard = 0.0
        """...and as it was when the brain was last heard from."""
        self._watching: int | None = None
        """The event loop's thread while `run()` watches it (None: no stall is known of, none is allowed for)."""
        self._recheck = anyio.Event()
        """Set to ask the brain at once (a heartbeat now) whether it is still there."""
        self._brain_kill = KillState(engaged=False)
        self._kill_heard: Heard | None = None
        self._stream_said = 0
        """How many kill states the event stream has brought (a heartbeat sent before the last one cannot undo it)."""
        self._kill_lock = threading.Lock()
        """Held to take a kill state (`_obey`): the stream's thread and the event loop take them both."""
        self._ever_connected = False
        self.new_events = anyio.Event()
        """Set (on the event loop) to have the shipping loop, waiting between rounds, ship now."""
        self._committed_since = False
        """Audit events were committed since the shipping loop's round began (`events_committed`, any thread)."""
        self.on_kill: Callable[[], None] | None = None
        self._refused: str | None = None
        """Why the brain refuses this body (its token), while it does."""
        self.claims: dict[str, Claim] = {}
        """Tasks this body holds (by id): their leases are renewed until the outcome is reported."""
        self.lost_claims: dict[str, str] = {}
        """Tasks whose claim the brain no longer honours (by id), and why."""
        self._claims_changed = anyio.Event()
        self._wall = wall
        self._started_wall = wall()
        self._heard_wall: float | None = None
        """When the brain was last heard from, on the wall clock (None: not yet)."""
        self._refused_since: float | None = None
        self._record_path = record
        self._recorded: LinkRecord | None = None
        self._recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swarm-link-record")
        self._pending_record: Future[None] | None = None
        """The last record handed to the recorder's thread (the ones before it are written first)."""
        self._brain_url = brain_url
        self._scope: anyio.CancelScope | None = None
        self._heard_by: dict[HeardBy, float] = {}
        """When each way of hearing the brain last brought word (`clock`): "heartbeat", "stream", "registration"."""
        self._heartbeat_sent: float | None = None
        """When the heartbeat now out was sent (None: none is out)."""
        self._failing_closed = False
        """Whether this silence's failing closed was logged (until the brain is heard again)."""
        self._ship_after = 0.0
        """`time.monotonic()` before which audit shipping holds off (`KILL_QUIET_S` after a kill is heard)."""
        self._state_noted: BodyKillState | None = None
        """What `state()` last told a call and noted."""
        self._shipped_at = 0.0
        """`time.monotonic()` when `_ship_forever` last began shipping."""

    # -- kill-switch source ------------------------------------------------------------

    def _heard(self, by: HeardBy = "stream") -> None:
        """The brain was heard from, now (called as its answer or event is read, before anything else is done)."""
        self._tick()  # (a stall that ended just now is the loop's, from before this word)
        self._last_heard = self._ticked
        self._heard_by[by] = self._ticked
        self._failing_closed = False
        self._stalled_at_heard = self._stalled_s
        self._heard_wall = self._wall()

    def _tick(self) -> None:
        """The event loop runs now: a tick later than `_LAG_S` past its time counts as time it stood still."""
        now = self._clock()
        late = now - self._ticked - _TICK_S
        if late > _LAG_S:
            self._stalled_s += late
        self._ticked = now

    def _silent_for(self) -> float | None:
        """How long the brain has been silent, when that is long enough to fail closed (None: it is not).

        Past `failsafe_s` of silence, a body that has not been listening for the re-check time since it last heard
        (its loop stood still for the rest, the brain's answers unread meanwhile) asks the brain again first."""
        now = self._clock()
        silent = now - self._last_heard
        if silent <= self.failsafe_s:
            return None
        if self._watching is not None:
            overdue = now - self._ticked - _TICK_S
            stalled = self._stalled_s - self._stalled_at_heard + (overdue if overdue > _LAG_S else 0.0)
            if silent - stalled < self.recheck_s:
                if threading.get_ident() == self._watching:
                    self._recheck.set()  # (a heartbeat now: `_heartbeats`)
                return None
        return silent

    @property
    def recheck_s(self) -> float:
        """How long the link listens for the brain, after its own loop stood still, before it fails closed."""
        return min(self.failsafe_s / 2, max(self.heartbeat_s, 1.0))

    def _set_kill(self, state: KillState, *, by: HeardBy) -> None:
        """Obey the brain's kill state, heard `by` the stream, a heartbeat or a registration, on the event loop."""
        with self._kill_lock:
            changed = self._obey(state, by=by)
        self._obeyed(state, by=by, changed=changed)

    def _obey(self, state: KillState, *, by: HeardBy) -> bool:
        """Take the brain's kill state (the guard reads it at once), in any thread, `_kill_lock` held; whether it
        changed. How it was heard is set before the state, so a call refused by it always says how."""
        was = self._brain_kill.engaged
        if state.engaged != was:
            self._kill_heard = Heard(by=by, at=now_iso(self._wall()))
        self._brain_kill = state
        if by == "stream":
            self._stream_said += 1
        if state.engaged and not was:
            self._ship_after = time.monotonic() + KILL_QUIET_S  # (real time, whatever clock the failsafe reads)
        return state.engaged != was

    def _obeyed(self, state: KillState, *, by: HeardBy, changed: bool) -> None:
        """What follows a kill state taken (`_obey`), on the event loop: word from the brain, running commands killed,
        the record written (in the recorder's thread: nothing on the event loop waits for its sync)."""
        self._heard(by)
        if changed:
            logger.info(
                "brain link: the brain's kill switch is %s (heard by %s)",
                "engaged" if state.engaged else "released",
                by,
            )
            if state.engaged and self.on_kill is not None:
                self.on_kill()  # (running commands killed first: the record can wait)
        self._note()

    def state(self) -> BodyKillState:
        found = self._current()
        if found.source == "failsafe" and self._ever_connected and self._refused is None and not self._failing_closed:
            # Once per silence: what was heard last, by which way, and whether the loop or a heartbeat was stuck.
            self._failing_closed = True
            logger.warning("brain link: failing closed (%s): %s", found.reason, self.hearing())
        if found != self._state_noted:
            # Noted when what a call is told changes (the failsafe tripping or lifting as a call asks); the rest of
            # the time the record is the same, and a call (two or three asks each) builds none to find that out:
            # `_record_forever` refreshes the record's times every second.
            self._state_noted = found
            self._note(found)
        return found

    def _current(self) -> BodyKillState:
        kill = self._brain_kill
        if kill.engaged:
            at = kill.at.isoformat() if kill.at is not None else None
            return BodyKillState(
                engaged=True, reason=kill.reason, by=kill.by, at=at, source="brain", heard=self._kill_heard
            )
        if self._refused is not None:
            # The brain answers but will not take this body (its token revoked, or bound to another body):
            # fail closed at once, saying why, rather than after `failsafe_s` of "no word from the brain".
            since = now_iso(self._refused_since or self._wall())
            return BodyKillState(engaged=True, reason=self._refused, at=since, source="failsafe")
        if not self._ever_connected:
            # Never reached since this body started: it cannot hear a kill, so it behaves as killed until its
            # first registration succeeds (no grace of `failsafe_s` in which a killed brain goes unheard).
            return BodyKillState(
                engaged=True,
                reason=_NEVER_REACHED,
                at=now_iso(self._started_wall),
                source="failsafe",
            )
        silent = self._silent_for()
        if silent is not None:
            # `at`: since when nothing was heard, the same for every call this failsafe refuses (one episode).
            since = now_iso(self._heard_wall if self._heard_wall is not None else self._started_wall)
            return BodyKillState(
                engaged=True,
                reason=f"no word from the brain for {silent:.0f}s (failsafe {self.failsafe_s:.0f}s)",
                at=since,
                source="failsafe",
            )
        return RELEASED

    def hearing(self) -> str:
        """What the link last heard, and when (seconds ago, on `clock`): why it fails closed, when it does."""
        now = self._clock()
        heard = ", ".join(f"{by} {now - at:.1f}s ago" for by, at in sorted(self._heard_by.items(), key=lambda i: -i[1]))
        out = "none" if self._heartbeat_sent is None else f"one sent {now - self._heartbeat_sent:.1f}s ago, unanswered"
        return (
            f"last heard {now - self._last_heard:.1f}s ago ({heard or 'never'}); heartbeat out: {out}; "
            f"the loop stood still {self._stalled_s - self._stalled_at_heard:.1f}s since, last ticked "
            f"{now - self._ticked:.1f}s ago; failsafe {self.failsafe_s:g}s, re-check {self.recheck_s:g}s"
        )

    @property
    def status(self) -> LinkState:
        if self._refused is not None:
            return "refused"
        if not self._ever_connected:
            return "unreachable"
        return "connected" if self._silent_for() is None else "unreachable"

    # -- what `swarm status` reads -------------------------------------------------------

    def _note(
        self,
        found: BodyKillState | None = None,
        *,
        serving: bool = True,
        left: bool = False,
        overwritten: bool = False,
    ) -> None:
        """Write the link's state to `record` if it changed since last written (or only its last word from the
        brain did, `REFRESH_S` ago, or another process wrote over it: `overwritten`), in the recorder's thread.
        Never fails a call: a record that cannot be written is logged."""
        if self._record_path is None:
            return
        current = self._current() if found is None else found
        failsafe = current if current.source == "failsafe" else None
        kill = self._brain_kill
        record = LinkRecord(
            brain_url=self._brain_url,
            link=self.status,
            brain_kill=kill.engaged,
            kill_reason=kill.reason,
            kill_by=kill.by,
            kill_at=None if kill.at is None else kill.at.isoformat(),
            failsafe=failsafe is not None,
            failsafe_reason=None
            if failsafe is None
            else (
                self._refused
                or (
                    _NEVER_REACHED
                    if not self._ever_connected
                    else f"no word from the brain ({self.failsafe_s:g}s failsafe)"
                )
            ),
            failsafe_since=None if failsafe is None else failsafe.at,
            failsafe_s=self.failsafe_s,
            last_heard=None if self._heard_wall is None else now_iso(self._heard_wall),
            recorded_at=now_iso(self._wall()),
            pid=os.getpid(),
            host=socket.gethostname(),
            serving=serving,
            left=left,
        )
        previous = self._recorded
        if (
            previous is not None
            and previous.same_state(record)
            and not self._heard_moved_on(previous)
            and not overwritten
        ):
            return
        self._recorded = record
        # Written (and synced) in the recorder's one thread, after what it has yet to write: never on the event loop,
        # where an fsync behind a busy disk would hold up the call a kill refuses, and the link's hearing (a
        # heartbeat's answer, the stream's keepalives) while the failsafe counts the silence.
        self._pending_record = self._recorder.submit(self._write_record, self._record_path, record)

    def _write_record(self, path: Path, record: LinkRecord) -> None:
        try:
            write_link_record(path, record)
        except OSError as exc:
            logger.warning("could not record the brain link's state in %s: %s", path, exc)
            if self._recorded is record:
                self._recorded = None  # (written again by the next note)

    def _records_written(self) -> None:
        """Wait for the records handed to the recorder's thread to be written."""
        pending = self._pending_record
        if pending is not None:
            pending.result()
            self._pending_record = None

    def _heard_moved_on(self, previous: LinkRecord) -> bool:
        if self._heard_wall is None or previous.last_heard is None:
            return self._heard_wall is not None
        return self._heard_wall - datetime.fromisoformat(previous.last_heard).timestamp() >= REFRESH_S

    # -- the loops ---------------------------------------------------------------------

    async def run(self) -> None:
        """Stay linked until cancelled or `leave()`, reconnecting with backoff; record what changes meanwhile."""
        with anyio.CancelScope() as self._scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_loop)
                tg.start_soon(self._record_forever)
                await self._stay_linked()

    async def _watch_loop(self) -> None:
        """Tick while the link runs: how long its event loop stands still is known (`_silent_for`)."""
        self._ticked = self._clock()
        self._watching = threading.get_ident()
        try:
            while True:
                await anyio.sleep(_TICK_S)
                self._tick()
        finally:
            self._watching = None

    async def _stay_linked(self) -> None:
        delay = 0.2
        while True:
            try:
                await self.register()
                delay = 0.2
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._listen)
                    tg.start_soon(self._heartbeats)
                    tg.start_soon(self._ship_forever)
                    tg.start_soon(self._renew_forever)
            except (BrainUnavailable, BrainRejected) as exc:
                self._note_refusal([exc])
                logger.warning("brain link: %s; retrying in %.1fs", exc, delay)
            except ExceptionGroup as group:
                # One of the link's loops lost the brain; the others were cancelled with it.
                lost, other = group.split((BrainUnavailable, BrainRejected))
                if other is not None:
                    raise other from None
                if lost is not None:
                    self._note_refusal(lost.exceptions)
                logger.warning("brain link: %s; retrying in %.1fs", lost, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _record_forever(self) -> None:
        """Going unreachable is only time passing: look every second (writing only what changed, or what another
        process of this workspace's body wrote over it as it stopped: this one still serves)."""
        while self._record_path is not None:
            self._note(overwritten=self._stopped_over(self._record_path))
            await anyio.sleep(1.0)

    def _stopped_over(self, path: Path) -> bool:
        """Whether the record at `path` is another process's saying it stopped, while this one serves."""
        if self._recorded is None:
            return False
        found = read_link_record(path)
        return found is not None and found.pid != self._recorded.pid and not found.serving

    async def leave(self, *, timeout_s: float = 3.0) -> bool:
        """A clean exit: stop the link, ship what the brain lacks of the audit chain, and deregister, so the brain
        marks this body gone rather than lost (nobody is paged). Within `timeout_s`: an unreachable brain is not
        waited for (it will report the body lost). Returns whether the brain was told."""
        if self._scope is not None:
            self._scope.cancel()
        told = False
        with anyio.move_on_after(timeout_s):
            try:
                await self.ship_pending()
                await self.client.deregister(self.body_id)
                told = True
            except (BrainUnavailable, BrainRejected) as exc:
                logger.warning("brain link: could not deregister on the way out: %s", exc)
        self._note(serving=False, left=told)
        self._record_path = None  # the last word: nothing this process does after it is recorded
        self._records_written()
        self._recorder.shutdown(wait=True)
        return told

    async def register(self) -> Registration:
        """Register with the brain (again), and take its timings, kill state and audit batch cap."""
        registration = await self.client.register(
            RegisterRequest(
                body_id=self.body_id,
                workspace=self.workspace,
                hostname=socket.gethostname(),
                version="0.1.0",
                verify_key=None if self.attester is None else self.attester.verify_key,
                pairing=self._pairing,
            )
        )
        self._refused = None
        self.failsafe_s = registration.failsafe_s
        self.heartbeat_s = registration.heartbeat_interval_s
        if registration.max_audit_request_bytes is not None:
            self.max_batch_bytes = registration.max_audit_request_bytes
        self._refused_since = None
        self._ever_connected = True  # (before the kill is set, so the state it notes is the brain's)
        self._set_kill(registration.kill, by="registration")
        return registration

    def _note_refusal(self, errors: Sequence[BaseException]) -> None:
        """A 401 or 403 means the brain refuses this body's token, a 409 `body_key_mismatch` its verification key:
        remembered until a registration succeeds."""
        for error in errors:
            if isinstance(error, BrainRejected) and error.error.code == BrainErrorCode.BODY_KEY_MISMATCH:
                self._refused = f"the brain refuses this body's verification key: {error.error.message}"
                if self._refused_since is None:
                    self._refused_since = self._wall()
                break
            if isinstance(error, BrainRejected) and error.status in (401, 403):
                self._refused = f"the brain refuses this body's token ({error.status} {error.error.code.value}: " + (
                    f"{error.error.message}); ask a captain for a valid body token"
                )
                if self._refused_since is None:
                    self._refused_since = self._wall()
                break
        self._note()

    async def _listen(self) -> None:
        read_timeout_s = max(self.failsafe_s, 5.0)
        if self.client.events_in_thread:
            await self._listen_in_thread(read_timeout_s)
        async for event, data in self.client.events(self.body_id, read_timeout_s=read_timeout_s):
            if event in ("kill", "resume"):
                self._set_kill(kill_state_from(data), by="stream")
            else:
                self._heard()
        raise BrainUnavailable("event stream ended")

    async def _listen_in_thread(self, read_timeout_s: float) -> NoReturn:
        """Read the event stream in a thread of its own: a kill or resume is taken there (`_obey`: the next guard
        check sees it) even while the event loop runs a call; the rest (word from the brain, running commands killed,
        the record) follows on the event loop, as a keepalive's word does. Returns by raising why the stream ended;
        cancelled, the stream is closed and its thread takes nothing more."""
        loop = asyncio.get_running_loop()
        stream = self.client.blocking_events(self.body_id, read_timeout_s=read_timeout_s)
        ended = anyio.Event()
        why: list[Exception] = []

        def read() -> None:
            try:
                for event, data in stream:
                    if event in ("kill", "resume"):
                        state = kill_state_from(data)
                        with self._kill_lock:
                            if stream.closed:
                                return  # (given up: a newer stream, or a registration, says what holds now)
                            changed = self._obey(state, by="stream")
                        loop.call_soon_threadsafe(partial(self._obeyed, state, by="stream", changed=changed))
                    else:
                        loop.call_soon_threadsafe(self._heard)
                why.append(BrainUnavailable("event stream ended"))
            except Exception as exc:  # noqa: BLE001 - handed to the event loop, which raises it as if it read the stream
                why.append(exc)
            finally:
                with contextlib.suppress(RuntimeError):  # (the event loop is closed: nobody waits)
                    loop.call_soon_threadsafe(ended.set)

        threading.Thread(target=read, name="swarm-link-stream", daemon=True).start()
        try:
            await ended.wait()
        finally:
            with self._kill_lock:
                stream.close()
        if not why:
            raise BrainUnavailable("event stream closed")
        raise why[0]

    async def _heartbeats(self) -> None:
        """Heartbeat every `heartbeat_s`, or at once when the failsafe wants to re-check; nothing else is waited for
        between two (the answer is heard as it is read; the record of what changed is written in its own thread)."""
        while True:
            self._recheck = anyio.Event()
            said = self._stream_said
            self._heartbeat_sent = self._clock()
            try:
                response = await self.client.heartbeat(self.body_id)
            finally:
                self._heartbeat_sent = None
            with self._kill_lock:
                obeyed = self._stream_said == said
                changed = obeyed and self._obey(response.kill, by="heartbeat")
            if obeyed:
                self._obeyed(response.kill, by="heartbeat", changed=changed)
            else:
                # The stream brought a kill state while this heartbeat was out: the answer may have been read before
                # that state was published (the two come back by different connections), so it cannot undo it (a
                # kill lifted until the next heartbeat, a resume undone). It is word from the brain all the same; the
                # next heartbeat, sent after, carries the state as of then.
                self._heard("heartbeat")
                self._note()
            with anyio.move_on_after(self.heartbeat_s):
                await self._recheck.wait()

    def events_committed(self) -> None:
        """Audit events were committed (the audit writer tells, from the thread that committed them): the shipping
        loop's next look finds it and ships them. Thread-safe, and it wakes nothing (`SHIP_POLL_S`)."""
        self._committed_since = True

    async def _ship_forever(self) -> None:
        while True:
            # (a kill was just heard: its refusals first, on every body; else the events of the last `SHIP_EVERY_S`
            # go together)
            while (hold := max(self._ship_after, self._shipped_at + SHIP_EVERY_S) - time.monotonic()) > 0:
                await anyio.sleep(hold)
            self._shipped_at = time.monotonic()
            self._committed_since = False
            through = await self.ship_pending(round_only=True)
            await self._until_more(through)
            self.new_events = anyio.Event()

    async def _until_more(self, through: int) -> None:
        """Wait until there may be more of the chain to ship than `through`, looking every `SHIP_POLL_S`: a commit
        told (`events_committed`), or a chain found longer (what no writer of this process tells of: another
        process's body on the workspace), or at once when `new_events` is set. The look is one read on the event
        loop that never waits (`read_now`); only when it cannot tell does the next round look, in worker threads."""
        while True:
            with anyio.move_on_after(SHIP_POLL_S):
                await self.new_events.wait()
            if self.new_events.is_set() or self._committed_since:
                return
            found = self._db.read_now("SELECT MAX(seq) FROM audit_events")
            if found is None:
                return  # (it could not tell without waiting: the round looks)
            head = found[0][0]
            if head is not None and int(head) > through:
                return

    def hold(self, task_id: str, claim_token: str, lease_s: int) -> None:
        """Keep a claimed task: its lease is renewed every third of `lease_s` until `release`."""
        self.claims[task_id] = Claim(token=claim_token, lease_s=lease_s, renewed_at=self._clock())
        self.lost_claims.pop(task_id, None)
        self._claims_changed.set()

    def release(self, task_id: str) -> None:
        self.claims.pop(task_id, None)

    async def _renew_forever(self) -> None:
        while True:
            await self.renew_due()
            now = self._clock()
            due = [claim.renewed_at + claim.lease_s / 3 - now for claim in self.claims.values()]
            with anyio.move_on_after(max(min(due), 0.0) if due else 60.0):
                await self._claims_changed.wait()  # (a new claim: its renewals are scheduled from now)
            self._claims_changed = anyio.Event()

    async def renew_due(self) -> None:
        """Renew every held lease a third or more through: work that takes longer than a lease keeps its task.

        A claim the brain no longer honours (the lease ran out anyway, the task was finished or is gone) is
        dropped and remembered as lost; a brain that cannot be reached ends the loop (the link reconnects).
        """
        for task_id, claim in list(self.claims.items()):
            if self._clock() - claim.renewed_at < claim.lease_s / 3:
                continue
            try:
                renewed = await self.client.renew(task_id, RenewRequest(claim_token=claim.token))
            except BrainRejected as exc:
                if exc.status not in (404, 409):
                    raise
                if self.claims.get(task_id) is claim:
                    del self.claims[task_id]
                    self.lost_claims[task_id] = exc.error.message
                logger.warning("task %s: the brain no longer honours this body's claim: %s", task_id, exc)
                continue
            claim.renewed_at = self._clock()
            claim.lease_s = renewed.lease_s

    def shipped_through(self) -> int:
        """The highest seq of this body's audit chain the brain has acknowledged."""
        with self._db.read() as conn:
            return int(conn.execute("SELECT shipped_through FROM brain_outbox WHERE id = 1").fetchone()[0])

    def _set_shipped(self, seq: int) -> None:
        # Not synced (no fsync a round): after a power loss an older mark at worst, and the events after it shipped
        # again, which the brain stores once per body and seq (it answers with what it holds).
        with self._db.write(synced=False) as conn:
            conn.execute("UPDATE brain_outbox SET shipped_through = ? WHERE id = 1", (seq,))

    async def ship_pending(self, *, round_only: bool = False) -> int:
        """Ship every event not yet acknowledged; returns the highest seq the brain holds.

        `round_only`: only the events already in the chain when the first batch is read (the shipping loop's round:
        events written while it ships wait for the next round, `SHIP_EVERY_S` on, rather than going out at once in
        batches of one or two, each a request for the brain to take and a commit, on every body calling flat out).

        The audit chain is read, and marked shipped, in worker threads: the database's lock is the audit writer's
        too, held across its syncs, and the event loop must not wait for it (the link hears the brain there)."""
        through = await anyio.to_thread.run_sync(self.shipped_through)
        bound: int | None = None
        while bound is None or through < bound:
            found = await anyio.to_thread.run_sync(self._next_batch, through)
            if found is None:
                return through
            batch, head = found
            if round_only and bound is None:
                bound = head
            try:
                ack = await self.client.ship(batch)
                through = ack.stored_through
            except BrainRejected as exc:
                gap = exc.error.code in (BrainErrorCode.CHAIN_GAP, BrainErrorCode.CHAIN_MISMATCH)
                held = exc.error.stored_through
                if not gap or held is None or held == through:
                    raise
                if held > head:
                    # Not our chain (another body's token shipped under our id?): never skip our events for it.
                    raise
                through = held  # the brain holds more (or less) than we thought: resume there
            await anyio.to_thread.run_sync(self._set_shipped, through)
        return through

    def _next_batch(self, through: int) -> tuple[AuditBatch, int] | None:
        """The next batch to ship after seq `through`, attested, and the chain's head (None: nothing to ship)."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT body FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?", (through, _BATCH)
            ).fetchall()
            start, head = conn.execute("SELECT MIN(seq), MAX(seq) FROM audit_events").fetchone()
        if not rows:
            return None
        attester = self.attester
        events = [
            AuditEvent.model_validate_json(body)
            if attester is None
            else attester.attest(AuditEvent.model_validate_json(body), stored=body)
            for (body,) in rows
        ]
        events = self._fitting(events)
        return AuditBatch(body_id=self.body_id, events=events, log_start_seq=int(start)), int(head)

    def _fitting(self, events: list[AuditEvent]) -> list[AuditEvent]:
        """The first events that fit in one batch under the brain's cap (at least one: an event too large on its
        own is sent alone, and the brain's refusal of it is logged and retried like any other)."""
        room = self.max_batch_bytes - _ENVELOPE_BYTES
        for count, event in enumerate(events):
            room -= len(event.model_dump_json().encode()) + 1
            if room < 0:
                return events[: max(count, 1)]
        return events


class BrainDecisionStore:
    """Decisions of a linked body live in the brain (the same `DecisionStore` protocol as local ones)."""

    def __init__(self, client: BrainClient) -> None:
        self._client = client

    async def create(self, request: DecisionRequest) -> Decision:
        return await self._client.create_decision(request)

    async def get(self, decision_id: str) -> Decision | None:
        return await self._client.get_decision(decision_id)
