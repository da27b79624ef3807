"""WAMP v2 for Autobahn|JS clients, and the publisher into an external Crossbar.io router.

uri.py         topic URIs <-> the feed's Subscription keys
errors.py      WAMP error and close URIs
wire.py        client messages parsed, replies encoded
auth.py        anonymous, or WAMP-Ticket against the access tokens
envelope.py    one EVENT per topic and block, shared by every subscriber
procedures.py  the callable procedures (l2book.get, l4book.snapshot, ...)
parts.py       an L4 snapshot in parts of at most 1 MiB
calls.py       a result in parts, paced by the client's reading
session.py     WampHub, and WampSession: one client's session (join, dispatch, end)
broker.py      a session's topics: subscribe, unsubscribe; the registry's Client
dealer.py      a session's calls: results at once or in parts, cancel
protocol.py    the WebSocket protocol and factory that carry a WampSession
publisher.py   CrossbarPublisher: joins a Crossbar.io router, publishes there
crossbar.py    CrossbarSession: the publisher's session on the router
"""
