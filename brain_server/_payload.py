"""Request bodies, read with a cap: never more than the cap is read, and nothing is kept whole beyond it.

Every route has a cap (`[brain] max_request_bytes`, 64 KB; audit batches `max_audit_request_bytes`,
1 MB; the public wake-up endpoints their own 64 KB). A declared `Content-Length` over it is
refused before a byte is read; a body without one is read chunk by chunk, and refused as soon
as it passes the cap.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from .exceptions import InvalidRequest, PayloadTooLarge


def declared_too_large(request: Request, limit: int) -> PayloadTooLarge | None:
    """The refusal for a request whose `Content-Length` is over `limit`, or None."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return PayloadTooLarge(f"request body of {declared} bytes is over {limit}")
    return None


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, or `PayloadTooLarge` as soon as it is known to be over `limit` bytes."""
    if (too_large := declared_too_large(request, limit)) is not None:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # The client went away mid-body (a body killed while shipping its audit): a refusal nobody reads, not
        # a server error with a traceback in the brain's log. Nothing was parsed, so nothing was written.
        raise InvalidRequest(f"the client disconnected after {size} bytes of its request body") from None
    return b"".join(chunks)
