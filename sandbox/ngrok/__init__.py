"""A stand-in for the ngrok agent, on loopback only, for the demo and the tests.

It plays the agent surface that emp.deploy.ngrok_tunnel and the sandbox rely on:

- ``ngrok version``, ``ngrok start --all|--none|NAME... --config FILE [--config FILE2]``,
  ``ngrok http ADDR``, ``ngrok tcp ADDR``, ``ngrok config check``,
  ``ngrok config add-authtoken TOKEN``;
- a v3 configuration (``version: 3``, ``agent: {authtoken, web_addr}``, ``endpoints:``) and
  the deprecated ``tunnels:`` map (and the v2 top-level ``authtoken`` / ``web_addr``);
- the local agent API on ``agent.web_addr`` (127.0.0.1 only): ``GET|POST /api/tunnels``,
  ``GET|DELETE /api/tunnels/:name``, ``GET /api/status``;
- each tunnel's public URL is a loopback port (``http://127.0.0.1:<port>`` or
  ``tcp://127.0.0.1:<port>``) that forwards to the upstream: an HTTP reverse proxy
  (WebSocket upgrades relayed raw) or a raw TCP relay;
- ngrok's error pages: ERR_NGROK_8012 (502, upstream refused), ERR_NGROK_3004 (502,
  invalid upstream response), ERR_NGROK_3200 (404, endpoint offline: a deleted tunnel's
  URL keeps answering this until the agent exits), ERR_NGROK_6024 (the free-plan browser
  interstitial, for browser user agents without ``ngrok-skip-browser-warning``);
- ERR_NGROK_4018 when started without an authtoken.

What it does not do: reach any network but loopback (an upstream on another host answers
ERR_NGROK_8012), TLS on the public side, traffic inspection, the cloud API. When the agent
process is gone its public ports close (connection refused), where ngrok's cloud edge would
answer ERR_NGROK_3200.

Stand-in only (not in ngrok): ``PUT /api/_sandbox/tunnels/:name/fault`` with
``{"fault": "offline"}`` makes a listed tunnel's URL answer ERR_NGROK_3200, the way a
stale tunnel session does, so tests can prove that recreating a tunnel recovers it;
``{"fault": null}`` clears it.

Run it as ``sandbox/bin/ngrok ...``, ``python sandbox/bin/ngrok ...`` or
``python -m sandbox.ngrok ...``. It keeps no state between runs except what its
configuration declares (an endpoint ``url`` / tunnel ``remote_addr`` on 127.0.0.1 pins the
public port).
"""
from __future__ import annotations

# What `ngrok version` prints; the suffix says this is not the real agent.
VERSION = "3.24.0-emp-sandbox"
