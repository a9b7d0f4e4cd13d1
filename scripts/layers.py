#!/usr/bin/env python3
"""The layer check: reads `cargo metadata` and fails when a crate of the
workspace depends on something its layer forbids.

The crates form layers (ARCHITECTURE.md, "Crates"): a crate may use the
workspace crates below it, never the ones above, and the sans-IO crates may
not name an I/O runtime at all. Cargo already refuses cycles between
crates; this check refuses the edges that would let a lower layer reach up
or let I/O leak into the logic. Only normal dependencies count:
dev-dependencies are for tests, which may drive anything.

`--self-test` feeds the check a workspace with one forbidden edge added per
rule and fails unless every one is caught, so the check itself is tested
wherever it runs.
"""

import json
import subprocess
import sys

# The workspace crates each crate may depend on (normal dependencies).
ALLOWED_WORKSPACE = {
    "dem-identity": set(),
    "dem-proto": {"dem-identity"},
    "dem-core": {"dem-proto", "dem-identity"},
    # RFC 5322 messages kept as their exact bytes: compose, parse, split
    # and rebuild. Pure logic, beside dem-core.
    "dem-message": {"dem-identity"},
    # End-to-end sealing: encryption keys, sealed contents and
    # attachments. Pure logic, beside dem-message.
    "dem-seal": {"dem-identity"},
    "dem-runtime": {"dem-proto", "dem-wit"},
    "dem-store": {"dem-proto"},
    "dem-net": {"dem-proto", "dem-identity"},
    "dem-client": {"dem-proto", "dem-identity", "dem-net", "dem-message", "dem-seal"},
    "dem-builtin": set(),
    "dem-node": {
        "dem-proto", "dem-identity", "dem-core", "dem-runtime", "dem-store",
        "dem-net", "dem-client", "dem-builtin", "dem-wit", "dem-message", "dem-seal",
    },
    "dem": {
        "dem-proto", "dem-identity", "dem-core", "dem-runtime", "dem-store",
        "dem-net", "dem-client", "dem-node", "dem-builtin", "dem-message", "dem-seal",
    },
}

# Outside crates that do I/O or run guests: each layer names the ones it
# must never depend on. `anyhow` is for the binary and tests only.
IO = {"tokio", "quinn", "rustls", "rcgen", "redb", "wasmtime", "wasmtime-wasi", "libc"}
FORBIDDEN_EXTERNAL = {
    "dem-identity": IO | {"anyhow"},
    "dem-proto": IO | {"anyhow", "ed25519-dalek"},
    "dem-core": IO | {"anyhow"},
    "dem-message": IO | {"anyhow"},
    "dem-seal": IO | {"anyhow"},
    "dem-runtime": {"quinn", "rustls", "rcgen", "redb", "anyhow"},
    "dem-store": {"quinn", "rustls", "rcgen", "wasmtime", "wasmtime-wasi", "anyhow"},
    "dem-net": {"redb", "wasmtime", "wasmtime-wasi", "anyhow"},
    "dem-client": {"redb", "wasmtime", "wasmtime-wasi", "anyhow"},
    "dem-builtin": IO | {"anyhow"},
    "dem-node": {"anyhow"},
    "dem": set(),
}


def violations(packages):
    """Every forbidden edge among `packages` ({name: [(dep, kind)]})."""
    found = []
    workspace = set(packages)
    for name, deps in sorted(packages.items()):
        if name not in ALLOWED_WORKSPACE:
            # Test-only crates (dem-tests, hostile guests) and the guests
            # themselves are not layers.
            continue
        for dep, kind in deps:
            if kind is not None:  # dev- or build-dependency
                continue
            if dep in ALLOWED_WORKSPACE:
                if dep not in ALLOWED_WORKSPACE[name]:
                    found.append(f"{name} depends on {dep}, a crate of a higher layer or a sibling it may not use")
            elif dep in FORBIDDEN_EXTERNAL[name]:
                found.append(f"{name} depends on {dep}, which its layer forbids")
    return found


def workspace_packages():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"],
        check=True, capture_output=True, text=True,
    ).stdout
    meta = json.loads(out)
    members = set(meta["workspace_members"])
    return {
        p["name"]: [(d["name"], d["kind"]) for d in p["dependencies"]]
        for p in meta["packages"] if p["id"] in members
    }


def self_test(packages):
    """Adds one forbidden edge at a time; each must be reported."""
    failures = []
    cases = [
        ("dem-core", "tokio"), ("dem-core", "dem-store"), ("dem-proto", "dem-core"),
        ("dem-proto", "wasmtime"), ("dem-identity", "dem-proto"), ("dem-client", "dem-node"),
        ("dem-client", "redb"), ("dem-store", "dem-runtime"), ("dem-runtime", "quinn"),
        ("dem-node", "anyhow"), ("dem-net", "dem-store"),
        ("dem-message", "tokio"), ("dem-message", "dem-proto"), ("dem-message", "anyhow"),
    ]
    cases = [(c, d) for c, d in cases if c in packages]
    if len(cases) < 6:
        failures.append(f"self-test: only {len(cases)} cases apply to this workspace")
    for crate, dep in cases:
        broken = {k: list(v) for k, v in packages.items()}
        broken[crate].append((dep, None))
        if not violations(broken):
            failures.append(f"self-test: {crate} -> {dep} was not caught")
    # A dev-dependency is allowed anywhere.
    relaxed = {k: list(v) for k, v in packages.items()}
    relaxed["dem-core"].append(("tokio", "dev"))
    if violations(relaxed) != violations(packages):
        failures.append("self-test: a dev-dependency was reported")
    return failures


def main():
    packages = workspace_packages()
    found = violations(packages)
    if "--self-test" in sys.argv[1:]:
        found += self_test(packages)
    for line in found:
        print(f"layers: {line}", file=sys.stderr)
    if found:
        sys.exit(1)
    print(f"layers: {sum(1 for p in packages if p in ALLOWED_WORKSPACE)} crates checked, no forbidden dependency")


if __name__ == "__main__":
    main()
