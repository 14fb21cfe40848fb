"""The checklist the collection ships (plugin_utils/_checklist.py) says what docs/checklist.md says, line for
line; every line says what covers it; and the free-text checklist_ref of every deploy gate and every final
watch check names a line."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from ansible_collections.emp.deploy.plugins.plugin_utils import _checklist as C

ROOT = Path(__file__).resolve().parents[4]
ROW = re.compile(r"^\| `(?P<id>[^`]+)` \| (?P<text>.*?) \| (?P<note>.*?) \|$")


def docs_lines() -> list[tuple[str, str, str, str, str]]:
    """(section, group, id, text, note) of every row of docs/checklist.md, in order."""
    found, section, group = [], None, None
    for line in (ROOT / "docs/checklist.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section, group = line[3:].strip(), None
        elif line.startswith("### "):
            group = line[4:].strip()
        elif match := ROW.match(line):
            found.append((section, group, match["id"], match["text"].strip(), match["note"].strip()))
    return found


def test_docs_copy_and_machine_form_agree_line_for_line():
    shipped = [(line.section, line.group, line.id, line.text, line.note) for line in C.LINES]
    assert docs_lines() == shipped


def test_ids_are_unique_and_in_their_section():
    assert len(C.BY_ID) == len(C.LINES)
    prefixes = {C.TESTING: "testing/", C.GO_NO_GO: "gonogo/", C.SUCCESS: "success/", C.TARGETS: "target/",
                C.MANUAL: "manual/"}
    for line in C.LINES:
        assert line.id.startswith(prefixes[line.section]), line.id
        assert re.fullmatch(r"[a-z]+(/[a-z0-9-]+)+", line.id), line.id


def test_the_testing_section_has_every_line_of_the_checklist():
    groups = {}
    for line in C.LINES:
        if line.section == C.TESTING:
            groups.setdefault(line.group, []).append(line.id)
    assert {group: len(ids) for group, ids in groups.items()} == {
        "Redis & Database Layer / Redis Connection Test": 4, "Redis & Database Layer / Database Operations": 4,
        "Redis & Database Layer / Job Queue Integrity": 3, "Telemetry & Monitoring / OTEL Direct Integration": 4,
        "Telemetry & Monitoring / Service Health Monitoring": 3, "Webhook System / Webhook Processing": 4,
        "Webhook System / External Integration": 3, "Worker & Job Processing / Ollama Connector (NEW)": 4,
        "Worker & Job Processing / Existing Connectors": 3, "Development Tools / Ngrok Health System": 4}


def test_every_line_says_what_covers_it_or_why_nothing_can():
    for line in C.LINES:
        assert bool(line.covered_by) + bool(line.manual) + bool(line.derived_from) == 1, line.id
        assert all(ref in C.BY_ID and not C.BY_ID[ref].derived_from for ref in line.derived_from), line.id


def test_refs_resolve_to_lines():
    assert C.lines_of("testing/db/migrations") == ("testing/db/migrations",)
    assert C.lines_of(" testing/db/migrations ") == ("testing/db/migrations",)
    assert C.lines_of("testing/db/nope") == () and C.lines_of(None) == () and C.lines_of(3) == ()
    assert set(C.lines_of("Success criteria / All services running stable for 24 hours; Service Uptime 99.9%")) == {
        "success/stable-24h", "target/uptime"}


def role_gate_refs(predeploy: bool = False) -> dict[str, str]:
    """gate task name -> checklist_ref of every emp.deploy.gate task of the deploy roles (or of the predeploy role)."""
    refs = {}
    for path in sorted(ROOT.glob("roles/*/tasks/*.yml")):
        if (path.parent.parent.name == "predeploy") != predeploy:
            continue
        for task in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            args = task.get("emp.deploy.gate") if isinstance(task, dict) else None
            if isinstance(args, dict) and args.get("checklist_ref"):
                refs[f"{path.parent.parent.name}: {task['name']}"] = args["checklist_ref"]
    return refs


def test_every_deploy_gate_ref_names_a_go_no_go_line():
    refs = role_gate_refs()
    assert len(refs) >= 6, refs
    for task, ref in refs.items():
        if ref.startswith("Rollback Procedures"):  # readiness and rollback verification: not a GO/NO-GO line
            continue
        ids = C.lines_of(ref)
        assert ids and all(i.startswith("gonogo/") for i in ids), (task, ref)


def test_every_predeploy_gate_ref_names_a_testing_line():
    refs = role_gate_refs(predeploy=True)
    assert len(refs) >= 20, refs
    for task, ref in refs.items():
        if "{{" in ref:  # one task for several lines, e.g. testing/ngrok/{{ check.key }}: judged when run
            continue
        assert C.lines_of(ref) == (ref,) and ref.startswith("testing/"), (task, ref)


def test_every_final_watch_check_ref_names_a_success_or_target_line():
    defaults = yaml.safe_load((ROOT / "roles/watch/defaults/main.yml").read_text(encoding="utf-8"))
    finals = [c for c in defaults["watch_final_checks"] + defaults["watch_telemetry_checks"] if c["layer"] == "final"]
    assert len(finals) >= 10
    covered = set()
    for check in finals:
        ids = C.lines_of(check["checklist_ref"])
        assert ids and all(i.split("/")[0] in ("success", "target") for i in ids), check["name"]
        covered.update(ids)
        for line_id in ids:
            assert check["name"] in " ".join(C.BY_ID[line_id].covered_by), (line_id, check["name"])
    # every success line and target that a check can decide is decided by one
    decidable = {line.id for line in C.LINES if line.section in (C.SUCCESS, C.TARGETS) and not line.manual}
    assert covered == decidable
