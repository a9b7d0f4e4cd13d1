#!/usr/bin/env python3
"""Waits until every mailbox has R replicas in sync; exits 1 (printing
what is still out of sync) if that takes longer than --timeout.

    wait_in_sync.py http://127.0.0.1:8080 [--timeout 60]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dem_admin import Unit  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--token")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    try:
        report = Unit(args.url, token=args.token).wait_in_sync(timeout=args.timeout)
    except TimeoutError as e:
        print(e, file=sys.stderr)
        sys.exit(1)
    print(f"{report['in_sync']} of {report['mailboxes']} mailboxes at R = {report['replicas']} in sync")


if __name__ == "__main__":
    main()
