# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Attributes shared by the collection's modules."""

    # Every read-only probe: full check mode, no diff, member of the probes action group.
    PROBE = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Probes are read-only; check mode measures exactly as a normal run does.
  read_only:
    description: Never changes its target, so M(emp.deploy.gate) samples it as the task runs, outside check mode.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  action_group:
    description: Use C(group/emp.deploy.probes) in C(module_defaults) to set options once for every probe.
    support: full
    membership:
      - emp.deploy.probes
"""

    # Modules that change something (tunnels, releases): check mode predicts, diff may be shown.
    ACTION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
"""

    # Action plugins that do their work on the controller (gate, watch, report): the attributes they
    # share; each plugin adds its own check_mode, delegation, become and connection entries.
    CONTROLLER_ACTION = r"""
options: {}
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  diff_mode:
    support: none
  platform:
    platforms: posix
"""
