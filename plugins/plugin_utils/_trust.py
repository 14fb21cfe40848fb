# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Template trust across ansible-core versions: 2.19+ templates only strings marked trusted; 2.18 trusts every string."""

from __future__ import annotations

import typing as t

try:  # ansible-core 2.19+: a template written by a plugin must be trusted explicitly
    from ansible.template import is_trusted_as_template, trust_as_template
except ImportError:  # pragma: no cover - ansible-core 2.18 trusts every string
    def trust_as_template(value: t.Any) -> t.Any:
        return value

    def is_trusted_as_template(value: t.Any) -> bool:
        del value
        return True


def trusted_like(original: t.Any, derived: str) -> t.Any:
    """A string derived from a written one (a criterion's shorthand expanded) is as trusted as the original:
    trusted when it was, never laundering one that was not."""
    return trust_as_template(derived) if is_trusted_as_template(original) else derived
