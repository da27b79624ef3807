"""WAMP topic and procedure URIs <-> the feed's :class:`Subscription` keys.

Topics (one per JSON channel; see ../shared/docs/ws-api.md)::

    orderbook.l2book.<coin>[.sig<N>[.man<M>]][.lev<L>]
    orderbook.trades.<coin>    orderbook.bbo.<coin>    orderbook.l4book.<coin>
    orderbook.allmids[.<dex>]  orderbook.status

``<coin>`` (and ``<dex>``) is the name with every character outside
``[A-Za-z0-9_-]`` written as ``%XX``, uppercase hex of its UTF-8 bytes
(``@107`` -> ``%40107``), so any coin name is one loose WAMP URI component.
Each view has exactly one spelling: defaults are left out (``lev20``,
``man1``), numbers have no leading zeros; :func:`parse_topic` refuses any
other spelling, so one topic URI is one subscription.
"""

from __future__ import annotations

import re

from orderbook.feed.subscriptions import (
    DEFAULT_LEVELS,
    Subscription,
    SubscriptionError,
    parse_subscription,
)

PREFIX = "orderbook."
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ENCODED = re.compile(r"(?:[A-Za-z0-9_-]|%[0-9A-F]{2})+")
_NUMBER = r"([1-9][0-9]*)"
_L2_SUFFIX = re.compile(rf"(?:\.sig{_NUMBER}(?:\.man{_NUMBER})?)?(?:\.lev{_NUMBER})?")
_COIN_TOPICS = {"l2book": "l2Book", "trades": "trades", "bbo": "bbo", "l4book": "l4Book"}
_TOPIC_NAMES = {channel: name for name, channel in _COIN_TOPICS.items()}


class InvalidTopic(ValueError):
    """Not one of our topics; ``str()`` says why (sent as the ERROR's args[0])."""


def encode_component(name: str) -> str:
    """``name`` as one URI component: ``%XX`` for every byte outside [A-Za-z0-9_-]."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in name.encode("utf-8"))


def decode_component(text: str) -> str:
    """The name a component encodes; :class:`InvalidTopic` unless canonically encoded."""
    if not _ENCODED.fullmatch(text):
        raise InvalidTopic(f"{text!r} is not a percent-encoded name (%XX, uppercase hex)")
    raw = bytearray()
    index = 0
    while index < len(text):
        if text[index] == "%":
            raw.append(int(text[index + 1 : index + 3], 16))
            index += 3
        else:
            raw.append(ord(text[index]))
            index += 1
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidTopic(f"{text!r} does not encode UTF-8") from None
    if encode_component(name) != text:
        raise InvalidTopic(
            f"{text!r} encodes {name!r}, whose topic form is {encode_component(name)!r}"
        )
    return name


def topic_uri(sub: Subscription) -> str:
    """The one topic URI of ``sub``."""
    if sub.channel == "status":
        return PREFIX + "status"
    if sub.channel == "allMids":
        return PREFIX + "allmids" + (f".{encode_component(sub.dex)}" if sub.dex else "")
    uri = f"{PREFIX}{_TOPIC_NAMES[sub.channel]}.{encode_component(sub.coin or '')}"
    if sub.n_sig_figs is not None:
        uri += f".sig{sub.n_sig_figs}"
        if sub.mantissa is not None:
            uri += f".man{sub.mantissa}"
    if sub.channel == "l2Book" and sub.n_levels != DEFAULT_LEVELS:
        uri += f".lev{sub.n_levels}"
    return uri


def parse_topic(uri: str) -> Subscription:
    """The subscription a topic URI names, or :class:`InvalidTopic`."""
    if not isinstance(uri, str) or not uri.startswith(PREFIX):
        raise InvalidTopic(f"unknown topic {uri!r}: topics start with {PREFIX!r}")
    parts = uri[len(PREFIX) :].split(".", 2)
    name = parts[0]
    if name == "status" and len(parts) == 1:
        request: dict[str, object] = {"type": "status"}
    elif name == "allmids" and len(parts) <= 2:
        request = {"type": "allMids"}
        if len(parts) == 2:
            request["dex"] = decode_component(parts[1])
    elif name in _COIN_TOPICS and len(parts) >= 2:
        request = {"type": _COIN_TOPICS[name], "coin": decode_component(parts[1])}
        if len(parts) == 3:
            if name != "l2book":
                raise InvalidTopic(f"unknown topic {uri!r}: only l2book topics take options")
            request.update(_l2_options(uri, "." + parts[2]))
    else:
        raise InvalidTopic(f"unknown topic {uri!r}")
    try:
        sub = parse_subscription(request)
    except SubscriptionError as exc:
        raise InvalidTopic(f"{uri!r}: {exc}") from None
    if topic_uri(sub) != uri:
        raise InvalidTopic(f"{uri!r} is spelled {topic_uri(sub)!r} (defaults are left out)")
    return sub


def _l2_options(uri: str, suffix: str) -> dict[str, int]:
    match = _L2_SUFFIX.fullmatch(suffix)
    if match is None:
        raise InvalidTopic(f"unknown topic {uri!r}: l2book options are .sig<N>[.man<M>][.lev<L>]")
    sig, man, lev = match.groups()
    options = {}
    if sig is not None:
        options["nSigFigs"] = int(sig)
    if man is not None:
        options["mantissa"] = int(man)
    if lev is not None:
        options["nLevels"] = int(lev)
    return options
