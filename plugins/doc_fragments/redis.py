# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Connection options shared by every module that talks to Redis."""

    DOCUMENTATION = r"""
options:
  url:
    description:
      - Redis URL, C(redis://[[username]:[password]@]host[:port][/db]), C(rediss://...) for TLS or
        C(unix:///path/to/redis.sock[?db=N]).
      - Mutually exclusive with O(host), O(port), O(db) and O(tls). O(username) and O(password)
        given as options take precedence over credentials in the URL.
      - An IPv6 address goes in brackets, C(redis://[::1]:6379/0).
      - Characters with a meaning in URLs (C(@), C(:), C(/), C(?), C(#), C(%)) are best percent-encoded in a
        password (C(#) as C(%23)). Unencoded, they are still read correctly whenever the URL can be read only
        one way. Messages never quote the URL's credentials, not even when it cannot be read.
    type: str
  host:
    description: Redis host name or address.
    type: str
    default: 127.0.0.1
  port:
    description: Redis TCP port.
    type: int
    default: 6379
  username:
    description: ACL user name (Redis 6+). Without it the C(default) user is used.
    type: str
  password:
    description:
      - Password (C(requirepass) or the ACL user's password).
      - It never appears in results, messages or problems.
    type: str
  db:
    description: Database number.
    type: int
    default: 0
  tls:
    description: Connect with TLS when O(host) and O(port) are used. With O(url) use the C(rediss://) scheme.
    type: bool
    default: false
  ca_path:
    description: CA bundle (PEM) used to verify the server certificate.
    type: path
  client_cert_path:
    description: Client certificate (PEM) for mutual TLS.
    type: path
  client_key_path:
    description: Private key (PEM) of O(client_cert_path).
    type: path
  validate_certs:
    description:
      - Verify the server certificate and host name over TLS.
      - Set to V(false) only for throwaway test servers.
    type: bool
    default: true
  connect_timeout:
    description:
      - Seconds the whole connection may take - name resolution, TCP connect and TLS handshake together.
    type: float
    default: 5.0
  command_timeout:
    description:
      - Seconds each command's whole reply may take, however slowly its bytes arrive (a pipelined round
        trip counts as one command).
    type: float
    default: 5.0
  client_name:
    description:
      - Name the probe's own connection announces with C(CLIENT SETNAME), so that people can tell it apart.
        Connections with this name (other probes) are left out of client counts too.
      - An empty string leaves the connection unnamed (no C(CLIENT SETNAME)). Either way the probe leaves
        its own connection out of client counts, by its connection id.
      - Printable ASCII without spaces, as Redis requires.
    type: str
    default: emp-deploy-probe
notes:
  - No Python library is needed on the target. The probes speak RESP2 over one connection with a
    small built-in client, so every task avoids the 100-180 ms import of redis-py 8, and no call is
    ever retried behind the probe's back (redis-py 6 and later retry with backoff by default, which
    hides outages and stretches timeouts). Each step is bound by a deadline, not by a per-read timeout -
    O(connect_timeout) for the connection, O(command_timeout) for each whole reply - so a server that
    drips its answer one byte at a time cannot hold the task.
"""
