#!/usr/bin/env python3
"""Drains the busiest online host: the one holding the most replicas
(mailboxes and attachments) for its capacity. It moves everything away and
leaves; `--wait` then waits until every mailbox is back at R in sync.

    drain_busiest_host.py http://127.0.0.1:8080 --token T --by alice [--wait 120]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dem_admin import Unit  # noqa: E402


def busiest(status):
    live = [h for h in status["hosts"] if h["online"] and h["state"] == "active"]
    if not live:
        return None
    return max(live, key=lambda h: ((len(h["mailboxes"]) + h["attachments"]) / max(h["capacity"], 1), h["id"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--token")
    parser.add_argument("--by", default=os.environ.get("USER") or "admin")
    parser.add_argument("--wait", type=float, help="seconds to wait for every mailbox at R in sync")
    args = parser.parse_args()
    unit = Unit(args.url, token=args.token)
    host = busiest(unit.status())
    if host is None:
        sys.exit("no online active host to drain")
    unit.drain(host["id"], by=args.by)
    print(f"draining {host['id']} ({len(host['mailboxes'])} mailboxes, {host['attachments']} attachments)")
    if args.wait:
        report = unit.wait_in_sync(timeout=args.wait)
        print(f"{report['in_sync']} of {report['mailboxes']} mailboxes in sync")


if __name__ == "__main__":
    main()
