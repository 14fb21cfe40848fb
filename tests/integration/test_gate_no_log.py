"""A gate under no_log shows nothing it measured, in any output, while still recording its decision
(issue 17, item 3).

The secret is vault-encrypted in the playbook and echoed by the probes; the whole -vvv output, every
file the go_no_go callback writes and the registered gate records must not contain it.
"""
from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, run_playbook

LIBRARY = Path(__file__).parent / "files" / "gate_library"


def vault_encrypted(tmp_path: Path, value: str) -> tuple[str, Path]:
    password_file = tmp_path / "vault-password"
    password_file.write_text(secrets.token_hex(16))
    proc = subprocess.run([str(BIN / "ansible-vault"), "encrypt_string", "--vault-password-file", str(password_file),
                           value, "--name", "secret"], capture_output=True, text=True, check=True, timeout=120)
    return proc.stdout, password_file


def gate(name: str, probe: str, criteria: list[str], **options: object) -> str:
    extra = "".join(f"\n        {key}: {json.dumps(value)}" for key, value in options.items())
    return f"""
    - name: gate {name}
      emp.deploy.gate:
        name: {name}
        component: secrets
        probe: {probe}
        samples: 1
        criteria: {json.dumps(criteria)}{extra}
      no_log: true
      ignore_errors: true
      register: r_{name.replace('-', '_')}
"""


ECHO = '{module: ansible.builtin.command, args: {argv: [echo, "{{ secret }}"]}, check_mode: false}'
STDERR = ('{module: ansible.builtin.command, check_mode: false, '
          'args: {argv: [sh, -c, "echo \\"$0\\" >&2; exit 3", "{{ secret }}"]}}')
CHANGED = '{module: sequence_probe, args: {script: [{changed: "{{ secret }}", ok: {n: 1}}], calls: "{{ calls }}"}}'


@pytest.mark.compat
def test_no_log_gates_show_no_measured_value_anywhere(tmp_path):
    secret = f"S3CRET-{secrets.token_hex(8)}"
    encrypted, password_file = vault_encrypted(tmp_path, secret)
    out = tmp_path / "gates.json"
    names = ["nolog-go", "nolog-nogo", "nolog-warn", "nolog-error", "nolog-changed"]
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(f"""---
- name: Gates over a secret
  hosts: sandbox
  gather_facts: false
  vars:
    calls: "{tmp_path / 'calls'}"
    {encrypted.strip().replace(chr(10), chr(10) + '    ')}
  tasks:
{gate("nolog-go", ECHO, ["result.stdout == secret"])}
{gate("nolog-nogo", ECHO, ["result.stdout == 'other'", "result.rc == 0"])}
{gate("nolog-warn", STDERR, ["result.stderr == ''"], mode="warn")}
{gate("nolog-error", ECHO, ["result.stdout is version('1.0', '>')"])}
{gate("nolog-changed", CHANGED, ["result.n == 1"])}
    - name: Save the gate records
      ansible.builtin.copy:
        content: "{{{{ {{{", ".join(f"'{n}': r_{n.replace('-', '_')}.emp_gate" for n in names)}}} | to_json }}}}"
        dest: "{out}"
        mode: "0600"
""")
    reports = tmp_path / "reports"
    proc = run_playbook(playbook, args=["-vvv", "--vault-password-file", str(password_file)],
                        env={"ANSIBLE_LIBRARY": str(LIBRARY), "EMP_DEPLOY_REPORT_DIR": str(reports)})
    assert out.exists(), proc.stdout[-4000:] + proc.stderr[-2000:]

    assert secret not in proc.stdout and secret not in proc.stderr
    written = [path for path in reports.rglob("*") if path.is_file()]
    assert any(path.name == "journal.jsonl" for path in written), written
    for path in written + [out]:
        assert secret not in path.read_text(errors="replace"), path

    gates = json.loads(out.read_text())
    expected = {"nolog-go": "GO", "nolog-nogo": "NO-GO", "nolog-warn": "NO-GO", "nolog-error": "NO-GO",
                "nolog-changed": "NO-GO"}
    for name, decision in expected.items():
        record = gates[name]
        assert record["redacted"] is True and record["name"] == name and record["decision"] == decision, record
        assert record["duration_s"] >= 0 and record["started"] and record["ended"]
        assert all(sample["figures"] == {} for sample in record["samples"]), record["samples"]
    # the criteria's outcomes are shown, without the values
    nogo = gates["nolog-nogo"]
    outcomes = [(c["criterion"], c["outcome"]) for c in nogo["criteria"]]
    assert outcomes == [("result.stdout == 'other'", "failed"), ("result.rc == 0", "held")]
    assert nogo["reason"] == "result.stdout == 'other' did not hold in 1 of 1 measured sample (failure_limit 0)"
    assert "gate nolog-nogo [sandbox] sample 1/1: FAILED result.stdout == 'other'" in proc.stdout
    assert f"gate nolog-nogo [sandbox]: NO-GO (enforce) - {nogo['reason']}" in proc.stdout
    assert gates["nolog-error"]["criteria"][0]["error"] == "withheld (no_log)"
    assert gates["nolog-changed"]["reason"].startswith("the probe changed the target: sequence_probe withheld (no_log)")
