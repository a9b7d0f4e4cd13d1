#!/usr/bin/env python3
"""Runs `dem bench mailbox` and `dem bench net` with two builds, alternating
round by round, and prints each key's median per build and the ratio
new/base. On a small, noisy machine only numbers from the same run, taken
in turns, can be compared (BENCHMARKS.md says how they were used).

    python3 scripts/bench-ab.py BASE_DEM NEW_DEM [--rounds N] [--lookups N]

BASE_DEM and NEW_DEM are two `dem` binaries (release builds). Each round
runs base then new, or new then base on odd rounds, so neither build
always goes first.
"""

import argparse
import json
import statistics
import subprocess
import sys


def run(binary, bench, extra):
    out = subprocess.run(
        [binary, "bench", bench, "--json", *extra],
        check=True, capture_output=True, text=True, timeout=1800,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lookups", type=int, default=20000)
    args = ap.parse_args()
    benches = {"mailbox": [], "net": ["--lookups", str(args.lookups)]}
    results = {(b, which): [] for b in benches for which in ("base", "new")}
    for r in range(args.rounds):
        order = [("base", args.base), ("new", args.new)]
        if r % 2:
            order.reverse()
        for bench, extra in benches.items():
            for which, binary in order:
                got = run(binary, bench, extra)
                results[(bench, which)].append(got)
                print(f"round {r + 1} {bench} {which}: {json.dumps(got)}", file=sys.stderr)
    print("| bench | key | base median | new median | new/base |")
    print("| --- | --- | --- | --- | --- |")
    for bench in benches:
        base, new = results[(bench, "base")], results[(bench, "new")]
        keys = [k for k, v in base[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for k in keys:
            b = statistics.median(x[k] for x in base if k in x)
            n = statistics.median(x[k] for x in new if k in x)
            ratio = f"{n / b:.2f}" if b else "-"
            print(f"| {bench} | `{k}` | {b:g} | {n:g} | {ratio} |")


if __name__ == "__main__":
    main()
