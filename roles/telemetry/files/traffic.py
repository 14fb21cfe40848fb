# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Probe traffic for the telemetry step, in one process on the target (one round trip, not one per request).

Argument: a JSON object {"get": [url, ...], "get_status": [200, 404], "post": {"url": ..., "body": {...}} or
null, "post_status": [200, 201], "timeout": 10, "settle": 2}. GETs every URL once, POSTs the job, then waits
``settle`` seconds so the services' span exporters flush. Prints one JSON line with each request's status
and ``started_at`` (this host's clock, seconds since the epoch, before the first request); exits 1 when a request fails or answers a status it should not.
"""
from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request


def request(url: str, timeout: float, body: object = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def main() -> int:
    started_at = time.time()
    spec = json.loads(sys.argv[1])
    timeout = float(spec.get("timeout", 10))
    done, problems = [], []
    calls = [(url, None, spec.get("get_status", [200])) for url in spec.get("get", [])]
    if spec.get("post"):
        calls.append((spec["post"]["url"], spec["post"].get("body", {}), spec.get("post_status", [200, 201])))
    for url, body, expected in calls:
        try:
            status = request(url, timeout, body)
        except (OSError, ValueError) as exc:
            problems.append(f"{'POST' if body is not None else 'GET'} {url}: {exc}")
            continue
        done.append({"url": url, "method": "POST" if body is not None else "GET", "status": status})
        if status not in expected:
            problems.append(f"{url} answered {status}, expected one of {expected}")
    time.sleep(float(spec.get("settle", 0)))
    print(json.dumps({"requests": done, "problems": problems, "started_at": started_at}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
