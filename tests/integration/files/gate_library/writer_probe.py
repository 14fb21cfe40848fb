# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test probe for emp.deploy.gate that repairs what it measures, as ngrok_tunnel with state present can.

It reports the content of `path` and, outside check mode, writes `content` there when it differs
(changed: true); in check mode it only says it would (changed: true, nothing written). Its
documentation does not declare it read-only, so the gate must run it in check mode.
"""
from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: writer_probe
short_description: Probe that writes its target outside check mode
description: Measures a file and makes it hold the given content.
options:
  path:
    description: The target file.
    type: path
    required: true
  content:
    description: What the file should hold.
    type: str
    required: true
attributes:
  check_mode:
    description: Predicts the change in check mode.
    support: full
"""


def main() -> None:
    module = AnsibleModule(argument_spec=dict(path=dict(type="path", required=True),
                                              content=dict(type="str", required=True)),
                           supports_check_mode=True)
    path, wanted = module.params["path"], module.params["content"]
    try:
        with open(path, encoding="utf-8") as handle:
            found = handle.read()
    except FileNotFoundError:
        found = None
    changed = found != wanted
    if changed and not module.check_mode:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(wanted)
    module.exit_json(changed=changed, content=found, actions=[f"rewrote {path}"] if changed else [])


if __name__ == "__main__":
    main()
