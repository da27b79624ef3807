"""Headless Chromium running the ``autobahn-browser`` bundle against the server.

The test serves tests/js/wamp_page.html and the bundle itself (not shipped)
on a plain HTTP port; the page joins the real server over wss. Skips when
chromium or the npm bundle are absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import threads
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import File

from tests.e2e.browser import Browser
from tests.e2e.procs import REPO
from tests.server.harness import until
from tests.server.test_wamp_protocol import TRADE, WampHarness

JS = REPO / "tests" / "js"
BUNDLE = JS / "node_modules" / "autobahn-browser" / "autobahn.min.js"


def page_site() -> Site:
    root = Resource()
    root.putChild(b"wamp_page.html", File(str(JS / "wamp_page.html")))
    root.putChild(b"autobahn.min.js", File(str(BUNDLE)))
    return Site(root)


@pytest_twisted.ensureDeferred
async def test_browser_bundle_receives_events(reactor: Any, tmp_path: Path) -> None:
    """The autobahn-browser bundle in Chromium joins, calls and receives a trades event."""
    if not BUNDLE.exists():
        pytest.skip(
            "npm package autobahn-browser missing in tests/js (run scripts/install-test-tools)"
        )
    harness = WampHarness(reactor, tmp_path)
    await harness.start()
    pages = reactor.listenTCP(0, page_site(), interface="127.0.0.1")
    browser: Browser | None = None
    try:
        browser = await threads.deferToThread(Browser.launch)
        wss = f"wss://localhost:{harness.port_number}/ws"
        page = f"http://127.0.0.1:{pages.getHost().port}/wamp_page.html?coin=BTC&url={wss}"
        await threads.deferToThread(browser.navigate, page)
        await threads.deferToThread(browser.wait_for, "window.results.joined", 20)
        harness.registry.trades_paired({"BTC": [TRADE]})
        events = await threads.deferToThread(
            browser.wait_for, "window.results.events", 20, None, lambda v: bool(v)
        )
        assert events == [[TRADE]]
        assert await threads.deferToThread(browser.evaluate, "window.results.coins") == [
            "BTC",
            "ETH",
        ]
        assert await threads.deferToThread(browser.js_errors) == []
    finally:
        if browser is not None:
            await threads.deferToThread(browser.close)
        await pages.stopListening()
        await until(reactor, lambda: True)
        await harness.stop()
