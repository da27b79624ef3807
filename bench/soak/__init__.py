"""Soak: the real server under node faults and every kind of client, for minutes.

    python -m bench.soak --minutes 10

starts ``python -m orderbook.sim`` (a separate process writing rotating hourly
node files) and ``twistd -n orderbook`` over TLS with permessage-deflate,
then, at the same time: well-behaved clients keep their own L4 books and
trades of several coins; others churn, stall, flood past the rate limit,
leave handshakes half open and send hypothesis-generated garbage; the
simulator is driven through every fault it has. At the end it checks books,
trades, RSS and the server's log (see :mod:`bench.soak.run`) and prints its
figures and checks; the exit code is 0 only when every check passed.
``tests/e2e/test_soak.py`` runs a short variant.
"""
