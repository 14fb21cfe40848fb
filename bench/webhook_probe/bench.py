"""webhook_probe benchmark: receiver capacity and cost per delivery vs an ansible.builtin.uri polling loop.

Same run, same sandbox webhook service (private redis-server on a free loopback port):

1. receiver capacity: signed EMP deliveries POSTed straight at the probe's receiver, a fresh
   connection per delivery as the webhook service does, from a few client threads;
2. the probe: one ansible-playbook task, emp.deploy.webhook_probe with count=N (trigger=test);
3. the baseline a user would otherwise write: ansible.builtin.uri to create a test receiver and
   register a webhook, a uri loop calling POST /webhooks/:id/test N times, then a uri task polling
   GET /webhooks/:id/stats with until/retries until the service counts N successful deliveries.
   It checks neither signatures nor payloads nor latency; it only reads the service's own counter.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "collections")]

from ansible_collections.emp.deploy.plugins.module_utils._webhook_receiver import ProbeReceiver  # noqa: E402
from sandbox.webhook.launch import WebhookService, free_port, write_release  # noqa: E402

BIN = Path(sys.executable).parent


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port", str(port),
                             "--save", "", "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    raise SystemExit("redis-server did not start")


def receiver_capacity(deliveries: int, threads: int) -> float:
    """Deliveries per second the probe's receiver accepts (fresh connection per delivery)."""
    receiver = ProbeReceiver("127.0.0.1", 0, "/emp-webhook-probe/bench").start()
    secret = "bench-secret"
    per_thread = deliveries // threads

    def send(worker: int) -> None:
        for index in range(per_thread):
            body = json.dumps({"event_type": "complete_job", "event_id": f"evt_{worker}_{index}",
                               "timestamp": int(time.time() * 1000), "webhook_id": "wh_bench",
                               "data": {"job_id": f"job_{worker}_{index}", "workflow_id": None}},
                              separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json", "User-Agent": "EMP-Job-Queue-Webhook/1.0",
                       "X-Webhook-Event": "complete_job", "X-Webhook-ID": "wh_bench",
                       "X-Event-ID": f"evt_{worker}_{index}",
                       "X-Webhook-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
            conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=10)
            conn.request("POST", "/emp-webhook-probe/bench", body=body, headers=headers)
            conn.getresponse().read()
            conn.close()

    workers = [threading.Thread(target=send, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    received = len(receiver.snapshot())
    receiver.stop()
    if received != per_thread * threads:
        raise SystemExit(f"receiver recorded {received} of {per_thread * threads} deliveries")
    return received / elapsed


def playbook(env: dict, path: Path, extra_vars: dict) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    run = subprocess.run([str(BIN / "ansible-playbook"), str(path), "-i", str(ROOT / "inventories/sandbox/hosts.yml"),
                          "-e", json.dumps(extra_vars)], capture_output=True, text=True, env=env, cwd=str(ROOT),
                         timeout=3600, check=False)
    elapsed = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"{path.name} failed:\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}")
    return elapsed, run


PROBE_PLAYBOOK = """---
- name: Probe with emp.deploy.webhook_probe
  hosts: sandbox
  gather_facts: false
  tasks:
    - name: Deliver and verify every delivery
      emp.deploy.webhook_probe:
        service_url: "{{ svc }}"
        count: "{{ n | int }}"
        timeout: 300
        max_duplicates: 0
      register: probe
    - name: Keep the figures
      ansible.builtin.copy:
        content: "{{ probe | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""

URI_PLAYBOOK = """---
- name: Baseline - the ansible.builtin.uri polling loop
  hosts: sandbox
  gather_facts: false
  tasks:
    - name: Create a test receiver
      ansible.builtin.uri:
        url: "{{ svc }}/test-receivers"
        method: POST
        status_code: 201
      register: receiver
    - name: Register a webhook
      ansible.builtin.uri:
        url: "{{ svc }}/webhooks"
        method: POST
        body_format: json
        body:
          url: "{{ receiver.json.data.url }}"
          events: [complete_job]
          secret: bench-secret
          retry_config: {max_attempts: 3, initial_delay_ms: 200, backoff_multiplier: 2, max_delay_ms: 2000}
        status_code: 201
      register: hook
    - name: Trigger the test deliveries
      ansible.builtin.uri:
        url: "{{ svc }}/webhooks/{{ hook.json.data.id }}/test"
        method: POST
      loop: "{{ range(n | int) | list }}"
      loop_control:
        label: "{{ item }}"
    - name: Poll until the service counted every delivery
      ansible.builtin.uri:
        url: "{{ svc }}/webhooks/{{ hook.json.data.id }}/stats"
      register: stats
      until: stats.json.data.successful_deliveries | int >= n | int
      retries: 120
      delay: 1
    - name: Delete the webhook
      ansible.builtin.uri:
        url: "{{ svc }}/webhooks/{{ hook.json.data.id }}"
        method: DELETE
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4, help="client threads for the capacity test")
    args = parser.parse_args()
    n = args.deliveries

    work = Path(tempfile.mkdtemp(prefix="bench-webhook-probe-"))
    redis_proc, redis_url = start_redis(work)
    service = WebhookService(redis_url, write_release(work / "release"), log_file=work / "webhook.log")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "EMP_DEPLOY_REPORT_DIR": str(work / "reports"), "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    try:
        service.start()
        capacity = receiver_capacity(n, args.threads)

        probe_book = work / "probe.yml"
        probe_book.write_text(PROBE_PLAYBOOK)
        out = work / "probe.json"
        probe_wall, _run = playbook(env, probe_book, {"svc": service.url, "n": n, "out": str(out)})
        result = json.loads(out.read_text())
        if not result.get("healthy"):
            raise SystemExit(f"the probe run was not healthy: {result.get('problems')}")

        uri_book = work / "uri.yml"
        uri_book.write_text(URI_PLAYBOOK)
        uri_wall, _run = playbook(env, uri_book, {"svc": service.url, "n": n})
    finally:
        service.stop()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    module_s = result["elapsed_s"]
    delivery_s = result["trigger"]["seconds"] + result["wait_s"]
    service_rate = n / delivery_s if delivery_s else float("inf")
    probe_ms = probe_wall * 1000 / n
    uri_ms = uri_wall * 1000 / n
    print(f"webhook_probe bench: {n} deliveries, sandbox webhook service on loopback, {os.cpu_count()} CPUs")
    print(f"  receiver capacity      {capacity:8.0f} deliveries/s  ({args.threads} client threads, fresh connection "
          "per delivery; a lower bound, client and receiver share the CPUs)")
    print(f"  probe (1 task)         {probe_wall:8.2f} s wall, module {module_s:.2f} s, "
          f"{probe_ms:7.2f} ms per delivery; success_rate {result['success_rate']}, "
          f"signatures {result['signatures']['valid']}/{result['signatures']['checked']} valid, "
          f"payloads {result['payload']['valid']}/{result['payload']['checked']} valid, "
          f"p95 latency {result['latency_ms']['p95']} ms")
    print(f"  uri polling loop       {uri_wall:8.2f} s wall, {uri_ms:7.2f} ms per delivery "
          "(counts deliveries via GET /webhooks/:id/stats; no signature, payload or latency check)")
    print(f"  ratio uri loop / probe, cost per delivery:            {uri_ms / probe_ms:6.1f}x")
    print(f"  ratio receiver capacity / service delivery rate ({service_rate:.0f}/s in the probe run): "
          f"{capacity / service_rate:6.1f}x headroom")
    return 0


if __name__ == "__main__":
    sys.exit(main())
