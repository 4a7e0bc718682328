"""The wake-up ladder: page, wait, climb, until a human acknowledges or answers, or the deadline denies.

    start ──▶ step 0 (level 0, at once) ──after_s──▶ step 1 (level 1) ──▶ … last level
          ──repeat_interval_s──▶ the last level again, `repeat` times ──▶ nothing more
    acknowledge: no more pages (someone is on it; a decision still expires at its deadline)
    resolve: the decision was approved, denied, overridden or expired: no more pages

Each step is claimed with compare-and-set before its pages go out, so two sweepers (or a
sweep racing an answer) never page a step twice, and an answer that lands first wins. A step
where nobody could be reached (no channel configured, or every send failed after retries)
climbs to the next at once instead of waiting out the timeout. Every page, failure,
acknowledgement and alert is a line in the brain's append-only log.

This is the one way the brain tells humans anything: a decision that needs one, or an alert.
With no channel configured nothing is started, and the process log says what needed a human.

Channels are given recipients here: a target without an address (`"sms"`) pages the
channel's configured defaults. What a page carries and how its target is logged follow the
registry's `ChannelKind` of its channel, never its name: answer links unless the service's
own buttons answer, a keypad's gather link for a call; logged targets are redacted (phone
numbers and addresses keep only a few characters; an address that is a secret, like an ntfy
topic, none).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from shared_protocol.brain import Decision
from shared_protocol.privacy import redact_tokens
from shared_protocol.wake import EscalationConfig, parse_target

from ..exceptions import NothingToAcknowledge, StateBroken
from ..state import LogEntry, StateEngine
from .base import Channel, ChannelError, Delivery, Page, PageLinks
from .records import AnswerToken, AnswerVerb, Escalation, hash_answer_token, protect_escalation
from .registry import CHANNELS, ChannelRegistry
from .setup import WakeSetup

logger = logging.getLogger(__name__)

ALERT_TOKEN_TTL = timedelta(hours=24)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(kw_only=True, frozen=True)
class Step:
    """One rung as scheduled: which level, which attempt at it, when (seconds after the start)."""

    index: int
    level: int
    attempt: int
    offset_s: float
    targets: list[str]


def ladder_step(config: EscalationConfig, index: int) -> Step | None:
    """The `index`th page of the ladder (levels first, then repeats of the last level); None past the end."""
    levels = config.levels
    if index < len(levels):
        level = levels[index]
        return Step(index=index, level=index, attempt=1, offset_s=level.after_s, targets=list(level.targets))
    repeat = index - len(levels) + 1
    if repeat > config.repeat:
        return None
    last = levels[-1]
    return Step(
        index=index,
        level=len(levels) - 1,
        attempt=repeat + 1,
        offset_s=last.after_s + repeat * config.repeat_interval_s,
        targets=list(last.targets),
    )


def redact(channel: str, address: str, *, registry: ChannelRegistry = CHANNELS) -> str:
    """A target fit for the log: enough to tell recipients apart, not enough to contact them."""
    if not address:
        return channel
    hidden = registry.kind(channel).hide_address_as
    if hidden is not None:
        return f"{channel}:{hidden}"
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{channel}:{local[:1]}…@{domain}"
    return f"{channel}:…{address[-4:]}"


Clock = Callable[[], datetime]


class Escalator:
    """Runs escalations on one state engine. `run()` is its loop; `start_*`, `acknowledge`, `resolve` its inputs."""

    def __init__(
        self,
        state: StateEngine,
        setup: WakeSetup,
        *,
        now: Clock,
        redact: Callable[[str], str] = redact_tokens,
        protect: Callable[[str], str] = str,
    ) -> None:
        """`redact`: what a page's text and the process log's lines go through (`[privacy]`: personal data is never
        paged nor logged); `protect`: what the text of escalation records, the recipients of answer links and a
        service's error go through before they are stored (personal data encrypted)."""
        self.state = state
        self.setup = setup
        self._now = now
        self._redact = redact
        self._protect = protect
        self._wake = anyio.Event()
        self._logged_episodes: set[str] = set()
        """Episodes already logged as alerts nobody could be paged about (no channel)."""

    # -- inputs ----------------------------------------------------------------------------

    @property
    def can_page(self) -> bool:
        """False when no channel is configured: nothing is started, so nothing fails level by level."""
        return bool(self.setup.channels)

    async def start_decision(self, decision: Decision) -> None:
        """A decision needs a human: its ladder starts now (the first page goes out on the next tick)."""
        impact = decision.impact
        logger.log(
            logging.INFO if self.can_page else logging.WARNING,
            "decision %s needs %s by %s: %s (agent %s on body %s, confidence %.2f, %d files, %d API calls, $%.2f)%s",
            decision.id,
            "a human" if decision.needs == "human" else decision.needs,
            decision.deadline.isoformat(timespec="seconds"),
            self._redact(decision.summary),
            decision.agent,
            decision.body_id,
            decision.confidence,
            impact.files,
            impact.api_calls,
            impact.usd,
            "" if self.can_page else " (no wake-up channel is configured)",
        )
        if not self.can_page:
            return
        facts = {
            "Decision": decision.id,
            "Needs": _needs(decision),
            "Agent": decision.agent,
            "Body": decision.body_id,
            "Confidence": f"{decision.confidence:.2f}",
            "Impact": f"{impact.files} files, {impact.api_calls} API calls, ${impact.usd:.2f}",
            "Deadline": decision.deadline.isoformat(timespec="seconds") + " (no answer: denied)",
        }
        summary = decision.summary if not decision.rationale else f"{decision.summary}\n\nWhy: {decision.rationale}"
        await self._start(
            Escalation(
                id=decision.id,
                kind="decision",
                title=_clip(f"Decision needs a {'captain' if decision.ladder else 'human'}: {decision.summary}", 200),
                summary=summary,
                facts=facts,
                body_id=decision.body_id,
                created_at=self._now(),
                deadline=decision.deadline,
                next_at=self._now(),
                updated_at=self._now(),
            ),
            by="rules",
        )

    async def raise_alert(
        self,
        *,
        kind: str,
        body_id: str,
        title: str,
        summary: str,
        facts: Mapping[str, str] | None = None,
        episode: str | None = None,
    ) -> Escalation | None:
        """Page about something that went wrong; an open alert of the same kind for the same body absorbs it.

        With `episode` (what makes this occurrence one event: the heartbeat a lost body was last heard at, the time
        a body's failsafe engaged), there is one alert per episode, ever: raising it again changes nothing, even
        after its ladder ended or the brain restarted (its id is made from the episode), and without a channel it
        is logged once. None (and only a log line) when no channel is configured."""
        key = f"{kind}:{body_id}"
        if not self.can_page:
            once = f"{key}:{episode}"
            if episode is None or once not in self._logged_episodes:
                logger.warning(
                    "alert %s on body %s: %s (no wake-up channel is configured)", kind, body_id, self._redact(title)
                )
            if episode is not None:
                self._logged_episodes.add(once)
            return None
        now = self._now()
        alert_id = f"alr_{time.time_ns():x}{secrets.token_hex(3)}"
        if episode is not None:
            alert_id = "alr_" + hashlib.sha256(f"{key}:{episode}".encode()).hexdigest()[:24]
            if (known := await self.state.escalation(alert_id)) is not None:
                return known  # this episode was alerted already (or joined another alert)
        alert = Escalation(
            id=alert_id,
            kind="alert",
            title=_clip(title, 200),
            summary=summary,
            facts={"Alert": kind, "Body": body_id, **(facts or {})},
            body_id=body_id,
            dedup_key=key,
            created_at=now,
            next_at=now,
            updated_at=now,
        )
        recent = now - timedelta(seconds=self.setup.escalation.dedup_window_s)
        # A ladder still climbing absorbs it whatever its age; one someone acknowledged, only for a while
        # (after that, the same trouble again is news).
        while (open_ := await self.state.open_escalation(key, since=_EPOCH)) is not None and (
            open_.state == "active" or open_.created_at >= recent
        ):
            joined = open_.model_copy(
                update={"occurrences": open_.occurrences + 1, "version": open_.version + 1, "updated_at": now}
            )
            if await self.state.replace_escalation(joined):
                if episode is not None:  # kept, closed, so that this episode is never raised again
                    closed = alert.model_copy(
                        update={"state": "resolved", "next_at": None, "dedup_key": None, "closed_by": "rules"}
                    )
                    await self._start(closed.model_copy(update={"closed_reason": f"joined {open_.id}"}), by="rules")
                return joined
        if not await self._start(alert, by="rules"):
            return await self.state.escalation(alert_id)  # (the same episode, raised at the same moment)
        return alert

    async def acknowledge(self, subject_id: str, *, by: LogEntry) -> Escalation:
        """Stop the climb: someone is on it. A decision stays pending (and is denied at its deadline)."""
        while True:
            current = await self.state.escalation(subject_id)
            if current is None:
                raise NothingToAcknowledge(f"nothing is paging about '{subject_id}'")
            if current.state == "acknowledged":
                return current
            if current.state != "active":
                raise NothingToAcknowledge(f"'{subject_id}' is already {current.state}: nothing to acknowledge")
            acked = current.model_copy(
                update={
                    "state": "acknowledged",
                    "next_at": None,
                    "closed_by": by.by,
                    "closed_reason": by.reason,
                    "version": current.version + 1,
                    "updated_at": by.at,
                }
            )
            if await self.state.replace_escalation(acked, log=by):
                return acked

    async def resolve(self, subject_id: str, *, by: str, reason: str) -> None:
        """The decision was answered (or expired): page no more. Nothing if it was never paged."""
        while True:
            current = await self.state.escalation(subject_id)
            if current is None or current.state not in ("active", "acknowledged"):
                return
            done = current.model_copy(
                update={
                    "state": "resolved",
                    "next_at": None,
                    "closed_by": by,
                    "closed_reason": reason,
                    "version": current.version + 1,
                    "updated_at": self._now(),
                }
            )
            if await self.state.replace_escalation(done):
                return

    # -- the loop --------------------------------------------------------------------------

    async def run(self, *, interval_s: float) -> None:
        """Page whatever is due, then sleep until the next interval or a new escalation, forever."""
        while True:
            try:
                await self.tick()
            except StateBroken:
                return  # the daemon stops
            except Exception:  # one bad tick must not end waking humans; the next tick tries again
                logger.exception("escalation tick failed")
            with anyio.move_on_after(interval_s):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def tick(self) -> int:
        """Send every page that is due now, escalations side by side (one slow channel delays no other
        escalation, one broken escalation stops no other); returns how many pages were delivered."""
        delivered: list[int] = []

        async def advance(escalation: Escalation) -> None:
            try:
                delivered.append(await self._advance(escalation))
            except StateBroken:
                return  # the engine keeps it, and the daemon stops; raised here, the task group would wrap it
            except Exception:  # logged; the others go on, and this one is tried again next tick
                logger.exception("escalation %s failed this tick", escalation.id)

        due = await self.state.due_escalations(self._now())
        async with anyio.create_task_group() as group:
            for escalation in due:
                group.start_soon(advance, escalation)
        return sum(delivered)

    async def _start(self, escalation: Escalation, *, by: str) -> bool:
        """Store and log a new escalation, its text protected (an alert quotes what a body sent); False (nothing
        written) if one with its id exists."""
        escalation = protect_escalation(self._protect, escalation)
        log = LogEntry(
            at=escalation.created_at,
            action="alert" if escalation.kind == "alert" else "escalate",
            by=by,
            reason=escalation.title,
            target=escalation.id,
            detail={
                "escalation": "started" if escalation.state == "active" else escalation.closed_reason,
                "kind": escalation.kind,
                "levels": len(self.setup.escalation.levels),
            },
        )
        if not await self.state.insert_escalation(escalation, log):
            return False
        self._wake.set()
        return True

    async def _advance(self, escalation: Escalation) -> int:
        """Page the due step (claimed first); if nobody was reached, climb straight to the next one."""
        current = escalation
        while True:
            now = self._now()
            step = ladder_step(self.setup.escalation, current.next_step)
            if step is None or (current.deadline is not None and current.deadline <= now):
                return 0
            if current.kind == "decision" and not await self._still_pending(current):
                return 0
            following = ladder_step(self.setup.escalation, current.next_step + 1)
            next_at = None if following is None else current.created_at + timedelta(seconds=following.offset_s)
            if next_at is not None and current.deadline is not None and next_at >= current.deadline:
                next_at = None  # the deadline denies it first: no page after that
            claimed = current.model_copy(
                update={
                    "next_step": current.next_step + 1,
                    "next_at": next_at,
                    "state": "exhausted" if next_at is None and current.kind == "alert" else current.state,
                    "version": current.version + 1,
                    "updated_at": now,
                }
            )
            if not await self.state.replace_escalation(claimed):
                return 0  # answered, acknowledged or advanced by someone else meanwhile
            delivered = await self._page_step(claimed, step)
            if delivered or following is None or following.level == step.level:
                # Reached someone, or the ladder's top: repeats keep their interval (a channel that is
                # down now may be back by then) instead of being used up in one go.
                return delivered
            current = claimed

    async def _still_pending(self, escalation: Escalation) -> bool:
        """Whether the decision still waits for a human; if not, close the ladder (an answer may have landed
        between its commit and the ladder being told, or before the ladder started)."""
        decision = await self.state.decision(escalation.id)
        if decision is not None and decision.state == "pending":
            return True
        answered = "unknown decision" if decision is None else f"decision is {decision.state}"
        await self.resolve(escalation.id, by="escalation", reason=answered)
        return False

    async def _page_step(self, escalation: Escalation, step: Step) -> int:
        delivered = 0
        for target in step.targets:
            channel_name, address = parse_target(target)
            addresses = [address] if address else list(self.setup.recipients.get(channel_name, ()))
            channel = self.setup.channels.get(channel_name)
            if channel is None or not addresses:
                await self._log_failure(escalation, step, channel_name, "", "channel not configured")
                continue
            for to in addresses:
                if await self._page_one(escalation, step, channel, to):
                    delivered += 1
        return delivered

    async def _page_one(self, escalation: Escalation, step: Step, channel: Channel, to: str) -> bool:
        now = self._now()
        page_id = f"pg_{time.time_ns():x}{secrets.token_hex(3)}"
        links = await self._links(escalation, page_id, channel.name, to, now)
        page = Page(
            page_id=page_id,
            kind=escalation.kind,
            subject_id=escalation.id,
            title=self._redact(escalation.title),
            summary=self._redact(escalation.summary),
            facts={label: self._redact(value) for label, value in escalation.facts.items()},
            level=step.level,
            attempt=step.attempt,
            deadline=escalation.deadline,
            target=to,
            links=links,
        )
        try:
            delivery = await self._send(channel, page)
        except ChannelError as exc:
            await self._log_failure(escalation, step, channel.name, to, str(exc))
            return False
        except Exception as exc:  # a channel bug must not stop the ladder; the next level still goes out
            logger.exception("channel %s failed paging about %s", channel.name, escalation.id)
            await self._log_failure(escalation, step, channel.name, to, f"{channel.name}: {type(exc).__name__}")
            return False
        await self.state.append_log(
            LogEntry(
                at=self._now(),
                action="page",
                by="escalation",
                reason=escalation.title,
                target=escalation.id,
                detail=self._detail(step, page_id, channel.name, to, delivery),
            )
        )
        return True

    async def _send(self, channel: Channel, page: Page) -> Delivery:
        """Send, retrying a retryable failure with exponential backoff, or after the service's `Retry-After` when
        it gives one. A send never waits longer in all than its backoff would have: a `Retry-After` past that is
        not waited for, and the error goes up (the ladder moves on rather than stall on one address)."""
        attempts, base = self.setup.retry_attempts, self.setup.retry_wait_s
        backoff = wait_exponential(multiplier=base, max=10 * base)
        budget = sum(min(10 * base, base * 2 ** (n - 1)) for n in range(1, attempts))

        def asked(state: RetryCallState) -> float | None:
            exc = state.outcome.exception() if state.outcome is not None else None
            return exc.retry_after if isinstance(exc, ChannelError) else None

        def wait(state: RetryCallState) -> float:
            delay = asked(state)
            return backoff(state) if delay is None else delay

        def stop(state: RetryCallState) -> bool:
            delay = asked(state)
            return state.attempt_number >= attempts or (delay is not None and state.idle_for + delay > budget)

        retrying = AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, ChannelError) and exc.retryable),
            reraise=True,
            sleep=self.setup.sleep,
        )
        return await retrying(channel.send, page)

    async def _links(
        self, escalation: Escalation, page_id: str, channel: str, to: str, now: datetime
    ) -> PageLinks | None:
        """Single-use answer URLs for what this channel shows (a service's own buttons need none, a keypad takes a
        digit at a gather link)."""
        answers = self.setup.registry.kind(channel).answers
        base = self.setup.public_url.rstrip("/")
        if not base or answers == "buttons":
            return None
        verbs: list[AnswerVerb] = ["ack"]
        if answers == "keypad":
            verbs.append("gather")
        if escalation.kind == "decision" and answers == "links":
            verbs.extend(("approve", "deny"))
        tokens: dict[AnswerVerb, str] = {verb: secrets.token_urlsafe(24) for verb in verbs}
        expires = escalation.deadline or now + ALERT_TOKEN_TTL
        await self.state.add_answer_tokens(
            [
                AnswerToken(
                    token_hash=hash_answer_token(token),
                    page_id=page_id,
                    subject_id=escalation.id,
                    verb=verb,
                    channel=channel,
                    target=self._protect(to),  # (the address paged: read back for the answering page's label)
                    created_at=now,
                    expires_at=expires,
                )
                for verb, token in tokens.items()
            ],
            now=now,
        )

        def url(verb: AnswerVerb) -> str | None:
            return None if verb not in tokens else f"{base}/wake/{tokens[verb]}"

        gather = tokens.get("gather")
        return PageLinks(
            approve=url("approve"),
            deny=url("deny"),
            acknowledge=f"{base}/wake/{tokens['ack']}",
            gather=None if gather is None else f"{base}/twilio/gather?t={gather}",
        )

    def _detail(self, step: Step, page_id: str, channel: str, to: str, delivery: Delivery | None) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "channel": channel,
            "to": redact(channel, to, registry=self.setup.registry),
            "level": step.level,
            "attempt": step.attempt,
            "page_id": page_id,
        }
        if delivery is not None and delivery.provider_id:
            detail["provider_id"] = delivery.provider_id
        return detail

    async def _log_failure(self, escalation: Escalation, step: Step, channel: str, to: str, error: str) -> None:
        """A service's error can quote the address it refused (Twilio's "The 'To' number … is not valid", an SMTP
        server's "<…>: Recipient address rejected"): redacted for the process log, protected where it is kept."""
        logger.warning(
            "page about %s on %s failed: %s",
            escalation.id,
            redact(channel, to, registry=self.setup.registry),
            self._redact(error),
        )
        error = self._protect(error)
        detail = self._detail(step, "", channel, to, None)
        detail["error"] = error
        await self.state.append_log(
            LogEntry(
                at=self._now(), action="page_failed", by="escalation", reason=error, target=escalation.id, detail=detail
            )
        )


def _clip(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _needs(decision: Decision) -> str:
    """What a page says a decision needs of the human it wakes."""
    if decision.needs != "consensus":
        return "a human"
    if decision.ladder:
        return f"consensus: deadlocked ({decision.ladder[0].reason}); a human captain decides"
    return f"consensus ({decision.quorum} of {len(decision.panel)}) and a human's approval"
