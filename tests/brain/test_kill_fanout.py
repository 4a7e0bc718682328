"""The kill reaches the event streams without waiting for its commit; a release waits for it; the answer waits too."""

from __future__ import annotations

import anyio
import pytest

from brain_server import Brain, BrainSettings, LogEntry, MemoryStateEngine
from brain_server.auth import Principal
from shared_protocol.brain import KillState, RegisterRequest

pytestmark = pytest.mark.anyio

CAPTAIN = Principal(token_id="tok_c", role="captain", label="captain-1")


class HeldCommit(MemoryStateEngine):
    """A state engine whose kill-state writes wait until `commit` is set (the writers queued ahead of a kill: every
    body's audit batches, under load), or fail when `fail` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = anyio.Event()
        self.commit = anyio.Event()
        self.fail = False

    async def set_kill_state(self, state: KillState, log: LogEntry) -> None:
        self.writing.set()
        await self.commit.wait()
        if self.fail:
            raise OSError(28, "No space left on device")
        await super().set_kill_state(state, log)


async def test_a_kill_reaches_every_stream_before_its_commit_and_is_answered_after_it() -> None:
    state = HeldCommit()
    brain = Brain(BrainSettings(), state=state)
    answered = anyio.Event()

    async def kill() -> None:
        await brain.set_kill(CAPTAIN, engaged=True, reason="runaway")
        answered.set()

    async with brain.running():
        with brain.hub.subscribe("body-a") as a, brain.hub.subscribe("body-b") as b:
            async with anyio.create_task_group() as group:
                group.start_soon(kill)
                with anyio.fail_after(5):
                    heard = [await a.receive(), await b.receive()]
                    assert [e.name for e in heard] == ["kill", "kill"]
                    await state.writing.wait()
                assert not answered.is_set()  # (the commit is held: the captain is not told yet)
                assert (await state.kill_state()).engaged is False
                state.commit.set()
                with anyio.fail_after(5):
                    await answered.wait()
                for stream in (a, b):  # (heard once: published again only to the streams that subscribed meanwhile)
                    with pytest.raises(anyio.WouldBlock):
                        stream.receive_nowait()
    assert (await state.kill_state()).engaged is True


async def test_a_stream_that_subscribes_while_the_kill_commits_is_sent_the_kill_at_once_and_only_once() -> None:
    state = HeldCommit()
    brain = Brain(BrainSettings(), state=state)
    answered = anyio.Event()

    async def kill() -> None:
        await brain.set_kill(CAPTAIN, engaged=True, reason="runaway")
        answered.set()

    async with brain.running(), anyio.create_task_group() as group:
        with brain.hub.subscribe("early") as early:
            group.start_soon(kill)
            with anyio.fail_after(5):
                await state.writing.wait()
            with brain.hub.subscribe("late") as late:
                # What `GET /v1/events` sends first: the state read now, the kill being committed (the database still
                # holds the state from before it).
                first = await brain.kill_state()
                assert (first.engaged, first.reason) == (True, "runaway")
                assert (await state.kill_state()).engaged is False
                state.commit.set()
                with anyio.fail_after(5):
                    await answered.wait()
                assert early.receive_nowait().name == "kill"
                for stream in (early, late):  # (each heard it once: the late one by its first event)
                    with pytest.raises(anyio.WouldBlock):
                        stream.receive_nowait()


async def test_heartbeats_and_registrations_answered_while_a_kill_commits_carry_the_kill() -> None:
    """A body that heard the kill on its stream and heartbeats before the commit is told it is killed, not what the
    database still says (which would lift the kill until its next heartbeat); once a failed commit ends, answers say
    what the database holds again."""
    state = HeldCommit()
    state.fail = True
    brain = Brain(BrainSettings(), state=state)
    failed = anyio.Event()

    async def kill() -> None:
        with pytest.raises(OSError, match="No space left"):
            await brain.set_kill(CAPTAIN, engaged=True, reason="runaway")
        failed.set()

    async with brain.running(), anyio.create_task_group() as group:
        await brain.register(RegisterRequest(body_id="body-a", workspace="/w", hostname="h", version="1"))
        assert (await brain.heartbeat("body-a")).kill.engaged is False
        group.start_soon(kill)
        with anyio.fail_after(5):
            await state.writing.wait()
        assert (await brain.heartbeat("body-a")).kill.engaged is True
        assert (await brain.heartbeat("body-a", agent="agent-1")).kill.engaged is True
        registered = await brain.register(RegisterRequest(body_id="body-b", workspace="/w", hostname="h", version="1"))
        assert (registered.kill.engaged, registered.kill.reason) == (True, "runaway")
        state.commit.set()
        with anyio.fail_after(5):
            await failed.wait()
        assert (await brain.heartbeat("body-a")).kill.engaged is False  # (fail closed until now, then the truth)


async def test_a_release_is_published_only_once_committed() -> None:
    state = HeldCommit()
    state.commit.set()
    brain = Brain(BrainSettings(), state=state)
    async with brain.running():
        await brain.set_kill(CAPTAIN, engaged=True, reason="runaway")
        state.commit = anyio.Event()
        state.writing = anyio.Event()
        with brain.hub.subscribe("body-a") as events:
            async with anyio.create_task_group() as group:
                group.start_soon(lambda: brain.set_kill(CAPTAIN, engaged=False, reason="fixed"))
                with anyio.fail_after(5):
                    await state.writing.wait()
                with pytest.raises(anyio.WouldBlock):  # (the publish would have happened before the write began)
                    events.receive_nowait()
                state.commit.set()
                with anyio.fail_after(5):
                    assert (await events.receive()).name == "resume"


async def test_a_kill_whose_commit_fails_has_stopped_the_bodies_and_answers_the_error() -> None:
    state = HeldCommit()
    state.fail = True
    brain = Brain(BrainSettings(), state=state)
    async with brain.running():
        with brain.hub.subscribe("body-a") as events:
            state.commit.set()
            with pytest.raises(OSError, match="No space left"):
                await brain.set_kill(CAPTAIN, engaged=True, reason="runaway")
            assert events.receive_nowait().name == "kill"  # fail closed: stopped, until a heartbeat says otherwise
            with pytest.raises(anyio.WouldBlock):
                events.receive_nowait()
    assert (await state.kill_state()).engaged is False


async def test_a_kill_is_noted_before_any_stream_hears_it_and_a_release_is_not_noted() -> None:
    """`note_kill` (the engine's durable note: a crash between publication and commit cannot un-kill the bodies)
    comes before the publication; a release, published only once committed, needs none."""
    published_when_noted: list[int] = []

    class Noting(MemoryStateEngine):
        async def note_kill(self, state: KillState, log: LogEntry) -> None:
            published_when_noted.append(brain.hub.published)

    brain = Brain(BrainSettings(), state=Noting())
    async with brain.running():
        with brain.hub.subscribe("body-a") as events:
            before = brain.hub.published
            await brain.set_kill(CAPTAIN, engaged=True, reason="runaway")
            assert published_when_noted == [before]  # (noted while nothing of it was published yet)
            assert events.receive_nowait().name == "kill"
            await brain.set_kill(CAPTAIN, engaged=False, reason="fixed")
            assert events.receive_nowait().name == "resume"
    assert published_when_noted == [before]


async def test_a_kill_whose_note_fails_is_published_and_committed_all_the_same(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full or failing disk under the note does not keep the bodies running: the kill goes out and is committed."""

    class Failing(MemoryStateEngine):
        async def note_kill(self, state: KillState, log: LogEntry) -> None:
            raise OSError(28, "No space left on device")

    state = Failing()
    brain = Brain(BrainSettings(), state=state)
    async with brain.running():
        with brain.hub.subscribe("body-a") as events:
            await brain.set_kill(CAPTAIN, engaged=True, reason="runaway")
            assert events.receive_nowait().name == "kill"
    assert (await state.kill_state()).engaged is True
    assert "could not be noted ahead of its commit" in caplog.text
