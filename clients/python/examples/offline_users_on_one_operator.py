#!/usr/bin/env python3
"""Lists the offline users whose replicas are all run by one operator: if
that operator's machines go away together, so does the mailbox.

    offline_users_on_one_operator.py http://127.0.0.1:8080 [--json]

Hosts without an operator label (`dem host --operator`) count as their own
operator each, so only labelled hosts can put a user on this list.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dem_admin import Unit  # noqa: E402


def at_risk(status):
    hosts = {h["id"]: h for h in status["hosts"]}
    out = []
    for user in status["users"]:
        if user["online"] or not user["hosts"]:
            continue
        operators = {hosts.get(h, {}).get("operator") or f"unlabelled:{h}" for h in user["hosts"]}
        if len(operators) == 1:
            (operator,) = operators
            if not operator.startswith("unlabelled:"):
                out.append({"user": user["name"] or user["user"], "operator": operator})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--token")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = at_risk(Unit(args.url, token=args.token).status())
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print(f"{row['user']:<20} all replicas on {row['operator']}")
        print(f"{len(rows)} offline user(s) on one operator")


if __name__ == "__main__":
    main()
