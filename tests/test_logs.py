"""Log observers: text or newline-delimited JSON, filtered by level."""

from __future__ import annotations

import io
import json

from twisted.logger import Logger

from orderbook import logs
from orderbook.config import LogSettings


def emit(settings: LogSettings) -> str:
    stream = io.StringIO()
    observer = logs.make_observer(settings, stream)
    log = Logger(namespace="test", observer=observer)
    log.debug("hidden {height}", height=1)
    log.info("block {height} applied", height=985148213)
    log.warn("stale {coin}", coin="BTC")
    return stream.getvalue()


def test_json_format_is_one_object_per_line():
    """format = json writes one JSON event per line with its named fields."""
    lines = emit(LogSettings(format="json", level="info")).splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["log_format"] for e in events] == ["block {height} applied", "stale {coin}"]
    assert events[0]["height"] == 985148213


def test_level_filters_lower_levels():
    """level = warn drops info and debug."""
    text = emit(LogSettings(format="text", level="warn"))
    assert "stale BTC" in text
    assert "applied" not in text and "hidden" not in text


def test_use_config_names_a_factory_twistd_can_resolve():
    """twistd resolves the returned dotted name to a factory of our observer."""
    from twisted.python.reflect import namedAny

    name = logs.use_config(LogSettings(format="json", level="error"), None)
    assert namedAny(name) is logs.configured_observer
