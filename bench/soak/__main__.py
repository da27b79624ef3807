"""``python -m bench.soak [--minutes M | --seconds S] [--json]``: run one soak, print the report.

``kill -USR1 <pid>`` prints every thread's Python stack to stderr (a stuck soak).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import signal
import sys
from dataclasses import fields
from typing import Any

from twisted.internet import task

from bench.soak.run import Options, run


def parse(argv: list[str]) -> tuple[Options, bool]:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, help="duration of the abuse phase")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    defaults = Options()
    for option in fields(Options):
        if option.name == "coins":
            parser.add_argument("--coins", default=",".join(defaults.coins))
            continue
        kind = type(getattr(defaults, option.name))
        kind = str if kind is type(None) else kind
        parser.add_argument(
            f"--{option.name.replace('_', '-')}", type=kind, default=getattr(defaults, option.name)
        )
    args = parser.parse_args(argv)
    values = {option.name: getattr(args, option.name) for option in fields(Options)}
    values["coins"] = tuple(args.coins.split(","))
    if args.minutes is not None:
        values["seconds"] = args.minutes * 60
    return Options(**values), args.json


def show(report: dict[str, Any]) -> None:
    """The report for a person: figures first, then one line per check."""
    rss = report.get("rss_mb", {})
    print(
        f"duration {report.get('duration_s')} s, blocks {report.get('blocks')} "
        f"(in fills files {report.get('blocks_in_fills_files')}), server resyncs {report.get('server_resyncs')}"
    )
    print(f"server time per health state (s): {report.get('health_seconds')}")
    print(f"faults injected {report.get('faults', {}).get('injected')}")
    print(f"faults missing in the simulator {report.get('faults', {}).get('missing')}")
    for kind, tally in report.get("clients", {}).items():
        print(f"clients {kind}: {json.dumps(tally)}")
    for name, value in report.get("metrics", {}).items():
        print(f"server metric {name} {value:g}")
    fuzz = report.get("fuzz", {})
    print(f"fuzz: {fuzz.get('cases')} cases {json.dumps(fuzz.get('by_kind'))}")
    print(
        f"RSS MB: start {rss.get('start')} peak {rss.get('peak_sampled')} final {rss.get('final')} (bound {rss.get('bound')})"
    )
    for check in report["checks"]:
        print(
            f"{'PASS' if check['ok'] else 'FAIL'} {check['name']}: {json.dumps(check['detail'], default=str)}"
        )
    print("soak " + ("passed" if report["ok"] else "FAILED") + f" (work dir {report['work']})")


def main(argv: list[str]) -> int:
    options, as_json = parse(argv)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: every thread's stack
    outcome: dict[str, Any] = {}

    async def soak(reactor: Any) -> None:
        outcome.update(await run(reactor, options))

    try:
        task.react(
            lambda reactor: __import__(
                "twisted.internet.defer", fromlist=["Deferred"]
            ).Deferred.fromCoroutine(soak(reactor))
        )
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            print(f"soak crashed (exit {exit_.code})", file=sys.stderr)
            return 2
    if as_json:
        print(json.dumps(outcome, default=str))
    else:
        show(outcome)
    return 0 if outcome.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
