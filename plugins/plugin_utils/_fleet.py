# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fleet rollout (docs/fleet.md): the batch size of a phase play and the per-batch GO/NO-GO.

A phase play runs its hosts in batches (``serial: "{{ emp_batch | default(0) }}"``); Ansible starts
the play once per batch. This module checks ``emp_batch`` and ``emp_max_fail_percentage`` before the
run starts, and turns the per-host evidence of one batch (gate records, failed steps, release steps)
into the batch's decision. Pure logic: the recorder feeds it, the tests call it directly.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass, field

from ansible_collections.emp.deploy.plugins.plugin_utils._records import BATCH_VAR, GO, MAX_FAIL_VAR, NO_GO

_PERCENT = re.compile(r"^\s*(\d+)\s*%\s*$")
_NUMBER = re.compile(r"^\s*(\d+)\s*$")


class FleetOptionError(ValueError):
    """emp_batch or emp_max_fail_percentage is malformed; the run stops before any host changes."""


def _batch_item(value: t.Any, where: str) -> int | str:
    """One batch size: a positive integer, or a percentage "N%" with 1 <= N <= 100."""
    if isinstance(value, bool) or value is None:
        raise FleetOptionError(f"{where}: {value!r} is not a batch size (a positive number of hosts or a "
                               f"percentage such as '10%')")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _PERCENT.match(value):
        percent = int(_PERCENT.match(value).group(1))  # type: ignore[union-attr]
        if not 1 <= percent <= 100:
            raise FleetOptionError(f"{where}: {value!r} is not a percentage of hosts between 1% and 100%")
        return f"{percent}%"
    elif isinstance(value, str) and _NUMBER.match(value):
        number = int(value)
    else:
        raise FleetOptionError(f"{where}: {value!r} is not a batch size (a positive number of hosts or a "
                               f"percentage such as '10%')")
    if number < 1:
        raise FleetOptionError(f"{where}: {value!r} is not a batch size: a batch has at least 1 host")
    return number


def parse_batch(value: t.Any) -> list[int | str]:
    """emp_batch as the list a play's serial takes: a number, a percentage, or a non-empty list of them."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise FleetOptionError(f"{BATCH_VAR}: an empty list has no batch; give e.g. [1, '10%', '100%']")
        return [_batch_item(item, f"{BATCH_VAR}[{index}]") for index, item in enumerate(value)]
    return [_batch_item(value, BATCH_VAR)]


def parse_max_fail_percentage(value: t.Any) -> int:
    """emp_max_fail_percentage: the share of a batch's hosts that may fail, 0 to 100 (an integer)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (
            isinstance(value, str) and not _NUMBER.match(value)):
        raise FleetOptionError(f"{MAX_FAIL_VAR}: {value!r} is not a whole percentage between 0 and 100")
    number = int(value)
    if not 0 <= number <= 100:
        raise FleetOptionError(f"{MAX_FAIL_VAR}: {value!r} is out of range (0 to 100)")
    return number


def batch_sizes(batch: t.Sequence[int | str], host_count: int) -> list[int]:
    """The host count of each batch, as Ansible splits host_count hosts by this serial list."""
    sizes: list[int] = []
    left, index = host_count, 0
    while left > 0:
        item = batch[min(index, len(batch) - 1)]
        size = max(1, host_count * int(item[:-1]) // 100) if isinstance(item, str) else int(item)
        sizes.append(min(size, left))
        left -= sizes[-1]
        index += 1
    return sizes


def is_fleet_serial(serial: t.Any) -> bool:
    """A play runs in batches when its serial holds a positive size (serial 0, the default, is one batch)."""
    items = serial if isinstance(serial, (list, tuple)) else [serial]
    for item in items:
        try:
            if isinstance(item, str) and item.strip().endswith("%"):
                return int(item.strip()[:-1]) > 0
            if int(item) > 0:
                return True
        except (TypeError, ValueError):
            return False
    return False


# --- one batch's evidence and decision ----------------------------------------------------------------


@dataclass
class HostEvidence:
    """What one host of a batch showed: its gate decisions and failures."""

    gates: list[str] = field(default_factory=list)  # decisions of the gates that count (GO, or NO-GO in warn)
    nogo: list[str] = field(default_factory=list)  # enforced NO-GO gates and failed steps, as sentences
    released: bool = False  # a release step changed something on this host


@dataclass
class Batch:
    """One batch of a phase play: its hosts, their evidence, and (once ended) its decision."""

    phase: str | None
    component: str | None
    play: str
    number: int
    hosts: list[str]
    max_fail_percentage: int = 0
    evidence: dict[str, HostEvidence] = field(default_factory=dict)
    decision: str | None = None
    reason: str = ""

    def host(self, name: str) -> HostEvidence:
        return self.evidence.setdefault(name, HostEvidence())

    def released_hosts(self) -> list[str]:
        return [h for h in self.hosts if self.evidence.get(h, HostEvidence()).released]

    def outcome(self) -> dict[str, t.Any]:
        """The batch's decision from its hosts' evidence (also stored on the batch)."""
        nogo = [h for h in self.hosts if self.host(h).nogo]
        no_data = [h for h in self.hosts if not self.host(h).nogo and not self.host(h).gates]
        # as Ansible's max_fail_percentage: the batch stops when failed / size > percentage
        tolerated = len(nogo) * 100 <= self.max_fail_percentage * len(self.hosts)
        if nogo and not tolerated:
            first = self.host(nogo[0]).nogo[0]
            self.decision, self.reason = NO_GO, (f"{len(nogo)} of {len(self.hosts)} hosts said NO-GO "
                                                 f"(more than {self.max_fail_percentage} %); {nogo[0]}: {first}")
        elif no_data:
            self.decision, self.reason = NO_GO, (f"no gate evidence from {len(no_data)} of {len(self.hosts)} hosts "
                                                 f"({', '.join(no_data[:5])}{', ...' if len(no_data) > 5 else ''}): "
                                                 f"nothing passes for lack of data")
        else:
            self.decision = GO
            self.reason = (f"{len(self.hosts) - len(nogo)} of {len(self.hosts)} hosts said GO"
                           + (f" ({len(nogo)} NO-GO within {self.max_fail_percentage} %)" if nogo else ""))
        return {"phase": self.phase, "component": self.component, "play": self.play, "batch": self.number,
                "size": len(self.hosts), "decision": self.decision, "reason": self.reason,
                "hosts_go": len(self.hosts) - len(nogo) - len(no_data), "nogo_hosts": nogo, "no_data_hosts": no_data,
                "released_hosts": len(self.released_hosts()), "max_fail_percentage": self.max_fail_percentage}


HostsAndSizes = tuple[dict[str, list[str]], dict[str, list[int]]]


def rollback_targets(batches: t.Sequence[Batch], components: t.Iterable[str]) -> HostsAndSizes:
    """Per fleet component: the hosts released so far, newest batch first, and those batches' sizes."""
    hosts: dict[str, list[str]] = {}
    sizes: dict[str, list[int]] = {}
    for component in components:
        released = [b.released_hosts() for b in reversed(batches) if b.component == component]
        released = [group for group in released if group]
        hosts[component] = [h for group in released for h in group]
        sizes[component] = [len(group) for group in released]
    return hosts, sizes
