# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Options that reach and, when asked, start the ngrok agent."""

    DOCUMENTATION = r"""
options:
  api_url:
    description:
      - Base URL of the ngrok agent's local API (its C(web_addr)). C(/api) is appended to reach
        C(/api/tunnels) and C(/api/status); a trailing C(/api) given here is accepted too.
      - The API has no authentication, so ngrok serves it on loopback only.
    type: str
    default: http://127.0.0.1:4040
  timeout:
    description:
      - Seconds each network operation may take at most; every call to the agent API, the check
        that the upstream listens and each health request is bounded by it as a whole (connect,
        headers and body), so a peer that answers one byte at a time cannot hold the task longer.
    type: float
    default: 10.0
  ngrok_binary:
    description:
      - The ngrok executable, as a path or a command name looked up in E(PATH). Defaults to C(ngrok)
        on E(PATH).
      - Used to report the agent version and, with O(start_agent=true), to start the agent.
      - Nothing is ever downloaded. A path that does not exist fails the task; with
        O(start_agent=true) so does a command that is not on E(PATH).
    type: str
  config_path:
    description:
      - The agent configuration file used to start the agent.
      - With O(authtoken) set (or E(NGROK_AUTHTOKEN) in the environment) the module owns this file and
        writes it as a v3 configuration holding C(agent.authtoken) and an C(agent.web_addr) derived
        from O(api_url), readable by its owner only; it is rewritten only when its content or mode differ.
        Without an authtoken the file is used as it is.
      - Required when O(start_agent=true).
    type: path
  authtoken:
    description:
      - The ngrok authtoken written to O(config_path).
      - It never appears in results, messages, diffs or logs.
      - If not set, the environment variable E(NGROK_AUTHTOKEN) is used.
    type: str
  start_agent:
    description:
      - Start the agent when its API does not answer, with C(ngrok start --config FILE --log stdout),
        detached from the task so it outlives it, and wait until the API answers.
      - The agent starts with C(--none) when the module wrote O(config_path), with C(--all) otherwise, so
        tunnels declared in a configuration you manage come up too.
    type: bool
    default: false
  agent_start_timeout:
    description: Seconds to wait for a started agent's API to answer.
    type: float
    default: 15.0
  agent_log_path:
    description:
      - Where a started agent writes its log. Defaults to C(ngrok-agent.log) next to O(config_path).
      - When the agent fails to start, the end of this log is part of the failure message.
    type: path
"""
