"""A tiny Twisted HTTP client for the tests: POST JSON, get (code, body)."""

from __future__ import annotations

import json
import warnings
from io import BytesIO
from typing import Any

from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers


async def post(reactor: Any, url: str, body: Any) -> tuple[int, bytes]:
    """POST ``body`` (bytes as is, anything else as JSON) and return (status, body)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = Headers({b"content-type": [b"application/json"]})
    response = await Agent(reactor).request(
        b"POST", url.encode(), headers, FileBodyProducer(BytesIO(data))
    )
    with warnings.catch_warnings():
        # Agent's transports lack abortConnection; readBody only warns about it.
        warnings.simplefilter("ignore", DeprecationWarning)
        body = readBody(response)
    return response.code, await body


async def wait_for(
    reactor: Any, condition: Any, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``condition()`` every 10 ms until true; fail after ``timeout`` seconds."""
    from twisted.internet.task import deferLater

    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.01, lambda: None)
