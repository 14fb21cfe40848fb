"""The ComfyUI and Ollama stand-ins a sandbox worker machine runs beside its workers.

They speak the public HTTP APIs the probes read, and only those parts (docs/probes.md, "What the
stand-ins leave out"):

- ComfyUI: ``GET /system_stats`` ({system: {os, python_version, embedded_python, comfyui_version,
  pytorch_version, argv, ram_total, ram_free}, devices: [...]}) and ``GET /object_info``
  ({NodeClassName: {input, output, name, display_name, category, python_module, ...}}): the built-in
  nodes plus the configured custom nodes (``python_module: custom_nodes.<package>``).
- Ollama: ``GET /api/tags`` ({models: [{name, model, modified_at, size, digest, details}]}),
  ``GET /api/version`` ({version}), ``POST /api/generate`` (stream false: one JSON object
  {model, created_at, response, done, done_reason, total_duration, ...}; stream true: NDJSON lines).

Runtime faults (``python -m sandbox fault``): ``comfyui-node-missing`` (the last custom node is not
listed), ``ollama-model-missing`` (the first model is not listed and cannot generate),
``ollama-slow --ms N`` (each generate answers N ms late), ``ollama-down`` (the server answers
nothing: connections are accepted and closed at once).
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any

from sandbox._common import JsonHandler

log = logging.getLogger("emp-worker.standins")

BUILTIN_NODES = ("CheckpointLoaderSimple", "CLIPTextEncode", "KSampler", "EmptyLatentImage", "VAEDecode",
                 "SaveImage", "LoadImage")
DEFAULT_CUSTOM_NODES = "ComfyUI-Impact-Pack:ImpactWildcardProcessor,ComfyUI-KJNodes:ImageResizeKJ,EmProps_Asset_Saver"
DEFAULT_MODELS = "llama3.2:1b,sandbox-sim:latest"
COMFYUI_VERSION = "0.3.40"
OLLAMA_VERSION = "0.6.8"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_custom_nodes(spec: str) -> list[tuple[str, str]]:
    """'Pack:NodeA,NodeB' -> [(package, node class)]; a bare name is its own package."""
    nodes = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        package, _sep, name = item.rpartition(":")
        nodes.append((package or name, name))
    return nodes


def model_entry(name: str) -> dict[str, Any]:
    """One /api/tags entry, as Ollama lists a pulled model (figures made up but stable)."""
    full = name if ":" in name else f"{name}:latest"
    digest = hashlib.sha256(full.encode("utf-8")).hexdigest()
    family = full.split(":", 1)[0].split(".", 1)[0]
    return {"name": full, "model": full, "modified_at": "2026-01-01T00:00:00Z", "size": 1300000000 + len(full),
            "digest": digest, "details": {"parent_model": "", "format": "gguf", "family": family,
                                          "families": [family], "parameter_size": "1.2B",
                                          "quantization_level": "Q8_0"}}


class StandIns:
    """Both stand-ins; ``faults`` is the machine's RuntimeFaults (its fault names are read here)."""

    def __init__(self, custom_nodes: str, models: str, faults) -> None:
        self.custom_nodes = parse_custom_nodes(custom_nodes)
        self.models = [model_entry(m) for m in filter(None, (p.strip() for p in models.split(",")))]
        self.faults = faults
        self.servers: list[ThreadingHTTPServer] = []

    # ------------------------------------------------------------------ ComfyUI
    def system_stats(self) -> dict[str, Any]:
        return {"system": {"os": sys.platform, "ram_total": 8 * 1024 ** 3, "ram_free": 6 * 1024 ** 3,
                           "comfyui_version": COMFYUI_VERSION, "python_version": sys.version,
                           "pytorch_version": "2.5.1+cpu", "embedded_python": False,
                           "argv": ["main.py", "--cpu", "--listen", "127.0.0.1"]},
                "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 0, "vram_free": 0,
                             "torch_vram_total": 0, "torch_vram_free": 0}]}

    def object_info(self) -> dict[str, Any]:
        listed = list(self.custom_nodes)
        if self.faults.active("comfyui-node-missing") and listed:
            listed = listed[:-1]  # the last custom node failed to import
        info = {name: self.node(name, "nodes", "sampling" if name == "KSampler" else "loaders")
                for name in BUILTIN_NODES}
        for package, name in listed:
            info[name] = self.node(name, f"custom_nodes.{package}", package)
        return info

    @staticmethod
    def node(name: str, module: str, category: str) -> dict[str, Any]:
        return {"input": {"required": {}, "optional": {}}, "input_order": {"required": []}, "output": [],
                "output_is_list": [], "output_name": [], "name": name, "display_name": name,
                "description": "", "python_module": module, "category": category, "output_node": False}

    # ------------------------------------------------------------------ Ollama
    def listed_models(self) -> list[dict[str, Any]]:
        if self.faults.active("ollama-model-missing") and self.models:
            return self.models[1:]  # the first model was never pulled (or was removed)
        return list(self.models)

    def find_model(self, name: str) -> dict[str, Any] | None:
        wanted = name if ":" in name else f"{name}:latest"
        return next((m for m in self.listed_models() if m["name"] == wanted), None)

    def generate(self, body: Any) -> tuple[int, Any]:
        """(status, answer) of POST /api/generate with stream false; a list of chunks when streaming."""
        if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
            return 400, {"error": "model is required"}
        model = self.find_model(body["model"])
        if model is None:
            return 404, {"error": f"model '{body['model']}' not found, try pulling it first"}
        started = time.perf_counter()
        slow = self.faults.get("ollama-slow")
        if slow is not None:
            time.sleep(float(slow.get("ms", 5000)) / 1000.0)
        prompt = str(body.get("prompt") or "")
        text = f"OK ({model['name']} sandbox stand-in, {len(prompt.split())} words in)"
        total = int((time.perf_counter() - started) * 1e9) + 1000
        final = {"model": model["name"], "created_at": now_iso(), "response": text, "done": True,
                 "done_reason": "stop", "context": [1, 2, 3], "total_duration": total, "load_duration": 1000,
                 "prompt_eval_count": len(prompt.split()), "prompt_eval_duration": 500,
                 "eval_count": len(text.split()), "eval_duration": max(total - 1500, 1)}
        if body.get("stream", True) is False:
            return 200, final
        words = text.split(" ")
        chunks = [{"model": model["name"], "created_at": now_iso(), "response": w + " ", "done": False}
                  for w in words[:-1]]
        return 200, chunks + [dict(final, response=words[-1])]

    # ------------------------------------------------------------------ servers
    def start(self, host: str, comfyui_port: int, ollama_port: int) -> tuple[int, int]:
        ports = []
        for port, handler in ((comfyui_port, self.comfyui_handler()), (ollama_port, self.ollama_handler())):
            server = ThreadingHTTPServer((host, port), handler)
            server.daemon_threads = True
            self.servers.append(server)
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                             name=f"standin-{server.server_address[1]}", daemon=True).start()
            ports.append(server.server_address[1])
        log.info("ComfyUI stand-in on %s:%d (custom nodes %s), Ollama stand-in on %s:%d (models %s)", host, ports[0],
                 ", ".join(n for _p, n in self.custom_nodes) or "none", host, ports[1],
                 ", ".join(m["name"] for m in self.models) or "none")
        return ports[0], ports[1]

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def comfyui_handler(self):
        standins = self

        class ComfyUI(JsonHandler):
            server_version = "Python/3 aiohttp"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].rstrip("/") or "/"
                if path in ("/system_stats", "/api/system_stats"):
                    self.send_json(200, standins.system_stats())
                elif path in ("/object_info", "/api/object_info"):
                    self.send_json(200, standins.object_info())
                elif path.startswith(("/object_info/", "/api/object_info/")):
                    name = path.rsplit("/", 1)[1]
                    info = standins.object_info()
                    self.send_json(200, {name: info[name]} if name in info else {})
                else:
                    self.send_json(404, {"error": "Not Found"})

        return ComfyUI

    def ollama_handler(self):
        standins = self

        class Ollama(JsonHandler):
            server_version = "ollama"

            def down(self) -> bool:
                if standins.faults.active("ollama-down"):
                    self.close_connection = True  # nothing answered: the connection just closes
                    return True
                return False

            def do_GET(self) -> None:
                if self.down():
                    return
                path = self.path.split("?", 1)[0].rstrip("/") or "/"
                if path == "/api/tags":
                    self.send_json(200, {"models": standins.listed_models()})
                elif path == "/api/version":
                    self.send_json(200, {"version": OLLAMA_VERSION})
                elif path == "/":
                    self.send_text(200, "Ollama is running")
                else:
                    self.send_text(404, "404 page not found")

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_POST(self) -> None:
                if self.down():
                    return
                path = self.path.split("?", 1)[0].rstrip("/")
                if path != "/api/generate":
                    self.send_text(404, "404 page not found")
                    return
                try:
                    body = self.read_json()
                except ValueError:
                    self.send_json(400, {"error": "invalid JSON body"})
                    return
                status, answer = standins.generate(body)
                if isinstance(answer, list):
                    data = b"".join(json.dumps(chunk).encode("utf-8") + b"\n" for chunk in answer)
                    self.send_bytes(status, data, "application/x-ndjson")
                else:
                    self.send_json(status, answer)

            def send_text(self, status: int, text: str) -> None:
                self.send_bytes(status, text.encode("utf-8"), "text/plain; charset=utf-8")

            def send_bytes(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        return Ollama
