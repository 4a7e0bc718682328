"""Answers that come back from a page: a digit pressed on a call, or a single-use link followed.

`POST /twilio/gather?t=TOKEN`: Twilio posts the digit pressed. The request must carry a valid
`X-Twilio-Signature` over the brain's `public_url` + path + query and the form fields (403
otherwise). 1 approves a decision (acknowledges an alert), 2 denies; anything else is asked
again. The answer is TwiML read to the caller.

`/wake/TOKEN`: the links in SMS, ntfy and email. GET shows what the link would do and a button
(so a mail scanner that follows links changes nothing); POST does it (ntfy's `http` actions
POST directly). Each token is single-use, expires with its decision, and answers only the
one subject it was made for. Who answered is recorded as the channel and redacted target it
was sent to. Both act as an approver (a paged human proves no more than holding the phone): at a deadlock's
`human_captain` step, where only a human captain's approval counts, Approve records nothing and says so (403 page,
the link left unused); an approval that is only a vote (the panel's quorum still missing) says it is still pending.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .. import governance
from ..auth import Principal
from ..exceptions import ApiError
from ..state import LogEntry
from .escalator import redact
from .intake import BodyTooLarge, RefusalLog, read_body
from .records import AnswerToken, hash_answer_token
from .twilio import reply_twiml, verify_twilio_signature

if TYPE_CHECKING:
    from ..service import Brain

logger = logging.getLogger(__name__)

LinkVerb = Literal["approve", "deny", "ack"]
_LABELS: dict[str, str] = {"approve": "Approve", "deny": "Deny", "ack": "Acknowledge"}


def _principal(brain: Brain, token: AnswerToken) -> Principal:
    """Who answers through a page's link: its recipient, shortened (the stored recipient is protected, `[privacy]`;
    an erased one is named so)."""
    to = brain.privacy.reveal(token.target)
    erased = "[pii:" in to
    label = f"{token.channel}:(erased)" if erased else redact(token.channel, to, registry=brain.wake.registry)
    return Principal(token_id=f"page:{token.page_id}", role="approver", label=label)


async def _cannot(brain: Brain, token: AnswerToken, verb: LinkVerb) -> str | None:
    """Why this answer would change nothing, said before the link is used up (None: it can act). An answer link or
    call approves as an approver, whoever was paged: at a deadlock's `human_captain` step only a human captain's
    approval breaks it, so its Approve says so and records nothing (its Deny still denies)."""
    if verb != "approve":
        return None
    try:
        decision = await brain.decision(token.subject_id)
    except ApiError:
        return None  # (not a decision, or gone: `_perform` says why)
    if decision.state != "pending" or governance.stage(decision) != "human_captain":
        return None
    return (
        f"Nothing was recorded: decision {decision.id} is deadlocked and waits for a human captain, and this link "
        "approves as an approver, which does not break a deadlock. A human captain approves it with their own "
        f"token: swarm approve {decision.id} --reason … (or the dashboard's Approve). The Deny link still denies it; "
        "with no answer it is denied at its deadline."
    )


async def _perform(brain: Brain, token: AnswerToken, verb: LinkVerb, reason: str) -> str:
    """Do what the answer says; the sentence to tell the human. `ApiError` when it comes too late."""
    who = _principal(brain, token)
    if verb == "ack":
        await brain.acknowledge(who, token.subject_id, reason)
        return f"Acknowledged {token.subject_id}: paging stops."
    decision = await brain.answer(who, token.subject_id, verb, reason)
    if decision.state == "pending":  # a vote that settled nothing: say so, never "done"
        return (
            f"Your {verb} was recorded as a vote, but decision {decision.id} is still pending: it also needs its "
            "panel's quorum (see swarm decisions list --pending)."
        )
    return f"Decision {decision.id} is now {decision.state}."


async def _refuse(refusals: RefusalLog, brain: Brain, reason: str, *, channel: str, target: str | None = None) -> None:
    """Rate-limited, all of them: a link can be replayed by whoever saw it (a mail scanner, a preview), and
    Twilio's requests carry no timestamp."""
    entry = LogEntry(at=brain.now(), action="answer_refused", by=channel, reason=reason, target=target)
    await refusals.record(entry)


def _xml(text: str, status: int = 200) -> Response:
    return Response(reply_twiml(text), status_code=status, media_type="text/xml")


async def twilio_gather(brain: Brain, request: Request, refusals: RefusalLog) -> Response:
    auth_token = brain.wake.twilio_auth_token
    base = brain.wake.public_url.rstrip("/")
    if auth_token is None or not base:
        return Response("Twilio callbacks are not configured ([twilio] auth_token, [brain] public_url)", 404)
    try:
        raw = (await read_body(request)).decode("utf-8", errors="replace")
    except BodyTooLarge as exc:
        await _refuse(refusals, brain, str(exc), channel="twilio")
        return _xml("This request is too large.", 413)
    form = parse_qsl(raw, keep_blank_values=True)
    params: dict[str, list[str]] = {}
    for name, value in form:
        params.setdefault(name, []).append(value)
    url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    signature = request.headers.get("x-twilio-signature", "")
    if not verify_twilio_signature(auth_token.reveal(), url, params, signature):
        await _refuse(refusals, brain, "invalid X-Twilio-Signature", channel="twilio")
        return _xml("This request could not be verified.", 403)
    token_hash = hash_answer_token(request.query_params.get("t", ""))
    token = await brain.state.answer_token(token_hash)
    if token is None or token.verb != "gather":
        await _refuse(refusals, brain, "unknown gather token", channel="twilio")
        return _xml("This call cannot answer anything.")
    escalation = await brain.state.escalation(token.subject_id)
    digits = (params.get("Digits") or [""])[0]
    choices: dict[str, LinkVerb] = {"1": "approve", "2": "deny"}
    if escalation is not None and escalation.kind == "alert":
        choices = {"1": "ack"}
    verb = choices.get(digits)
    if verb is None:
        return _xml("That key is not an answer. Nothing was recorded; answer on Discord or wait for the next call.")
    if (why := await _cannot(brain, token, verb)) is not None:
        return _xml(why)
    used = await brain.state.use_answer_token(token_hash, brain.now())
    if used is None:
        await _refuse(refusals, brain, "gather token already used or expired", channel="call", target=token.subject_id)
        return _xml("This call's answer was already recorded, or the decision's deadline has passed.")
    try:
        said = await _perform(brain, used, verb, f"pressed {digits} on a call")
    except ApiError as exc:
        return _xml(f"Nothing changed: {exc.message}")
    return _xml(f"{said} Thank you. Goodbye.")


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        f"<title>{html.escape(title)}</title><body style='font-family:sans-serif;max-width:40em;margin:2em auto'>"
        f"<h1>{html.escape(title)}</h1>{body}</body>",
        status_code=status,
    )


async def answer_link(brain: Brain, request: Request, refusals: RefusalLog) -> Response:
    secret = request.path_params["token"]
    token_hash = hash_answer_token(secret)
    token = await brain.state.answer_token(token_hash)
    now = brain.now()
    if token is None or token.verb == "gather":
        await _refuse(refusals, brain, "unknown answer link", channel="link")
        return _page("Unknown link", "<p>This link does not answer anything.</p>", 404)
    if token.used_at is not None or token.expires_at <= now:
        await _refuse(
            refusals, brain, "answer link already used or expired", channel=token.channel, target=token.subject_id
        )
        return _page("Link used or expired", "<p>This link was already used, or its deadline has passed.</p>", 410)
    verb: LinkVerb = token.verb  # type: ignore[assignment]  # gather was handled above
    label = _LABELS[verb]
    if (why := await _cannot(brain, token, verb)) is not None:  # (the link stays unused: nothing happened)
        return _page("Needs a human captain", f"<p>{html.escape(why)}</p>", 403)
    if request.method == "GET":
        escalation = await brain.state.escalation(token.subject_id)
        redact = brain.privacy.redact  # (a page to a human: personal data redacted, never decrypted)
        about = "" if escalation is None else f"<p><b>{html.escape(redact(escalation.title))}</b></p>"
        about += "" if escalation is None else f"<p>{html.escape(redact(escalation.summary))}</p>"
        form = (
            f"<form method=post><button style='font-size:1.5em'>{label} {html.escape(token.subject_id)}</button></form>"
        )
        return _page(f"{label}?", about + form)
    used = await brain.state.use_answer_token(token_hash, now)
    if used is None:
        return _page("Link used or expired", "<p>This link was already used, or its deadline has passed.</p>", 410)
    try:
        said = await _perform(brain, used, verb, f"{label.lower()} link from {used.channel}")
    except ApiError as exc:
        return _page("Nothing changed", f"<p>{html.escape(exc.message)}</p>", exc.status)
    return _page("Recorded, still pending" if "still pending" in said else "Done", f"<p>{html.escape(said)}</p>")
