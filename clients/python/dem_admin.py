"""A small client of a DEM dispatch unit's JSON API (`dem dispatch --http`).

Standard library only, so it runs wherever Python 3.8+ does. The API:

- reads (open to loopback, else the admin token): `/api/status`,
  `/api/view`, `/api/inspect/{host|mailbox|attachment|unit}/{id}`,
  `/api/sync`, `/api/replicas/{mailbox}`, `/api/logs`;
- actions (always the admin token): `POST /api/act/drain`,
  `POST /api/act/replication`.

    from dem_admin import Unit
    unit = Unit("http://127.0.0.1:8080", token=open("admin.token").read())
    for host in unit.status()["hosts"]:
        print(host["id"], host["online"], len(host["mailboxes"]))

Errors from the unit raise `DemError` with its HTTP status and message.
"""

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["Unit", "DemError"]

# Longest answer read, as the Rust client.
ANSWER_MAX = 64 << 20


class DemError(Exception):
    """The unit refused or failed a request."""

    def __init__(self, status, message):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Unit:
    """One dispatch unit's HTTP listener, e.g. `http://127.0.0.1:8080`."""

    def __init__(self, url, token=None, timeout=30.0):
        if not url.startswith("http://"):
            raise ValueError(f"give http://HOST:PORT, not {url!r}")
        self.url = url.rstrip("/")
        if token is None:
            token = os.environ.get("DEM_ADMIN_TOKEN")
        self.token = token.strip() if token else None
        self.timeout = timeout

    # --- reads -----------------------------------------------------------

    def status(self):
        """Units, hosts (online, load, capacity, operator, what each
        holds), users (online, where their mailbox is) and attachments."""
        return self._call("GET", "/api/status")

    def view(self, q="", page=0, size=None):
        """One page of each list, searched by `q`."""
        params = {"q": q, "page": page}
        if size is not None:
            params["size"] = size
        return self._call("GET", "/api/view?" + urllib.parse.urlencode(params))

    def inspect(self, kind, ident):
        """What the tables know about one host, mailbox, attachment or
        unit; never mail content."""
        if kind not in ("host", "mailbox", "attachment", "unit"):
            raise ValueError(f"inspect host, mailbox, attachment or unit, not {kind!r}")
        return self._call("GET", f"/api/inspect/{kind}/{urllib.parse.quote(ident, safe='')}")

    def replicas(self, mailbox):
        """One mailbox's version vectors as its holders report them, and
        whether they agree."""
        return self._call("GET", "/api/replicas/" + urllib.parse.quote(mailbox, safe=""))

    def sync(self):
        """Whether every mailbox has R replicas in sync (the unit asks
        every host for its replicas' version vectors)."""
        return self._call("GET", "/api/sync")

    def wait_in_sync(self, timeout=60.0, poll=0.5):
        """Polls `sync()` until every mailbox is in sync; returns the last
        report, or raises `TimeoutError` with it."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.sync()
            if report["all_in_sync"]:
                return report
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{report['in_sync']} of {report['mailboxes']} mailboxes in sync "
                    f"after {timeout} s: {report['unsynced'][:5]}"
                )
            time.sleep(poll)

    # --- actions ---------------------------------------------------------

    def drain(self, host, by):
        """Orders `host` (hex id) to move everything away and leave."""
        return self._call("POST", "/api/act/drain", {"host": host, "by": by})

    def set_replication(self, replicas, write_quorum, by):
        """Sets R and W for the whole network."""
        body = {"replicas": replicas, "write_quorum": write_quorum, "by": by}
        return self._call("POST", "/api/act/replication", body)

    # --- helpers ---------------------------------------------------------

    def hosts_by_id(self, status=None):
        """The status's hosts, by id."""
        status = status or self.status()
        return {h["id"]: h for h in status["hosts"]}

    def _call(self, method, path, body=None):
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                raw = answer.read(ANSWER_MAX + 1)
        except urllib.error.HTTPError as e:
            raw = e.read(ANSWER_MAX + 1)
            try:
                message = json.loads(raw).get("error", "no reason given")
            except ValueError:
                message = raw[:200].decode(errors="replace")
            raise DemError(e.code, message) from None
        if len(raw) > ANSWER_MAX:
            raise DemError(0, f"the answer is over {ANSWER_MAX} bytes")
        return json.loads(raw)
