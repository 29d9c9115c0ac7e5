"""Start a real ComfyUI server for integration tests and talk to it over loopback HTTP.

``start_comfyui`` runs ``main.py --cpu --listen 127.0.0.1`` on a free port with an
``extra_model_paths`` file that adds a custom-node folder and model folders, waits until
``/object_info`` answers and yields a ``ComfyUIClient``; the server is always stopped and its
temporary folders removed afterwards. Input, output, temp and user folders and the database live
in that temporary folder, so the ComfyUI checkout is left untouched. No traffic leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

HOST = "127.0.0.1"
# Proxies configured in the environment must never see loopback test traffic.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ComfyUIError(RuntimeError):
    """The server could not be started or did not answer as expected; the message ends with its log."""


class ComfyUIValidationError(Exception):
    """``POST /prompt`` answered HTTP 400: the graph failed validation.

    ``error`` is the prompt-level error and ``node_errors`` maps node ids to their errors.
    """

    def __init__(self, status: int, body: dict) -> None:
        self.status = status
        self.error = body.get("error", {})
        self.node_errors = body.get("node_errors", {})
        super().__init__(f"HTTP {status}: {json.dumps(body, indent=1)}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def write_extra_model_paths(
    path: Path, custom_nodes_dir: str | os.PathLike | None, model_paths: Mapping[str, str | os.PathLike | list]
) -> Path:
    """Write an ``extra_model_paths.yaml`` (JSON, which YAML reads) under one section.

    ComfyUI reads every top-level section; inside it ``custom_nodes`` adds a custom-node folder and
    any other key (``rsedit``, ``checkpoints``, ...) adds folders to that model folder name. Several
    folders for one key are given as a list (ComfyUI's file separates them with newlines).
    """
    section: dict[str, str] = {}
    if custom_nodes_dir is not None:
        section["custom_nodes"] = str(Path(custom_nodes_dir).resolve())
    for key, value in model_paths.items():
        paths = value if isinstance(value, list | tuple) else [value]
        section[key] = "\n".join(str(Path(p).resolve()) for p in paths)
    path.write_text(json.dumps({"rsedit_tests": section}, indent=2), encoding="utf-8")
    return path


class ComfyUIClient:
    """A small client of ComfyUI's HTTP API."""

    def __init__(self, base_url: str, log_path: Path) -> None:
        self.base_url = base_url
        self.log_path = log_path
        self.client_id = uuid.uuid4().hex

    def log(self) -> str:
        """The server's output so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def _request(self, method: str, path: str, data: dict | None = None, timeout: float = 30.0) -> tuple[int, object]:
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(
            self.base_url + path, data=body, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def get_bytes(self, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
        """``GET path``: the status and the raw body (for files the server serves)."""
        try:
            with _OPENER.open(self.base_url + path, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def object_info(self, node_class: str | None = None) -> dict:
        """``GET /object_info`` (every node, or one node's entry keyed by its class)."""
        status, body = self._request("GET", "/object_info" + (f"/{node_class}" if node_class else ""))
        if status != 200:
            raise ComfyUIError(f"GET /object_info answered {status}: {body}")
        return body

    def queue(self, api_graph: dict, extra_data: dict | None = None) -> str:
        """``POST /prompt``; returns the prompt id or raises ``ComfyUIValidationError`` on HTTP 400."""
        payload = {"prompt": api_graph, "client_id": self.client_id}
        if extra_data:
            payload["extra_data"] = extra_data
        status, body = self._request("POST", "/prompt", payload)
        if status == 400:
            raise ComfyUIValidationError(status, body)
        if status != 200:
            raise ComfyUIError(f"POST /prompt answered {status}: {body}")
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300.0, poll: float = 0.2) -> dict:
        """Poll ``/history/<prompt_id>`` until the prompt has finished; return its history entry.

        The entry has ``status`` (``status_str`` "success" or "error", ``completed``, ``messages``
        as ``[event, data]`` pairs), ``outputs`` (each output node's ``ui`` data) and ``prompt``.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self._request("GET", f"/history/{prompt_id}")
            if status == 200 and isinstance(body, dict) and prompt_id in body:
                return body[prompt_id]
            time.sleep(poll)
        raise ComfyUIError(
            f"prompt {prompt_id} did not finish within {timeout:.0f} s\n--- server log ---\n{self.log()}"
        )

    def run(self, api_graph: dict, timeout: float = 300.0) -> dict:
        """Queue ``api_graph`` and wait for its history entry."""
        return self.wait(self.queue(api_graph), timeout=timeout)

    def interrupt(self, prompt_id: str | None = None) -> None:
        """``POST /interrupt``: cancel the running prompt (only ``prompt_id`` if given)."""
        status, body = self._request("POST", "/interrupt", {"prompt_id": prompt_id} if prompt_id else {})
        if status != 200:
            raise ComfyUIError(f"POST /interrupt answered {status}: {body}")

    @staticmethod
    def messages(entry: dict, event: str) -> list[dict]:
        """The data of every ``event`` message (e.g. "execution_error") in a history entry."""
        return [data for name, data in entry["status"]["messages"] if name == event]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


@contextlib.contextmanager
def start_comfyui(
    comfyui_dir: str | os.PathLike,
    python: str | os.PathLike,
    custom_nodes_dir: str | os.PathLike | None,
    model_paths: Mapping[str, str | os.PathLike | list] | None = None,
    port: int | None = None,
    startup_timeout: float = 120.0,
    extra_args: tuple[str, ...] = (),
) -> Iterator[ComfyUIClient]:
    """Run ComfyUI from ``comfyui_dir`` with ``python`` and yield a client once it answers.

    ``custom_nodes_dir`` is a folder whose sub-folders are custom-node packages (ComfyUI also
    loads its own ``custom_nodes``). ``model_paths`` maps model folder names (``"rsedit"``) to
    folders. Raises ``ComfyUIError`` with the server log if it exits or does not answer in time.
    """
    comfyui_dir = Path(comfyui_dir).resolve()
    if not (comfyui_dir / "main.py").is_file():
        raise ComfyUIError(f"{comfyui_dir} is not a ComfyUI checkout (no main.py)")
    work = Path(tempfile.mkdtemp(prefix="comfyui_test_"))
    try:
        for name in ("input", "output", "temp", "user"):
            (work / name).mkdir()
        config = write_extra_model_paths(work / "extra_model_paths.yaml", custom_nodes_dir, model_paths or {})
        port = port or free_port()
        command = [
            str(python),
            "main.py",
            "--cpu",
            "--listen",
            HOST,
            "--port",
            str(port),
            "--disable-api-nodes",
            "--extra-model-paths-config",
            str(config),
            "--input-directory",
            str(work / "input"),
            "--output-directory",
            str(work / "output"),
            "--temp-directory",
            str(work / "temp"),
            "--user-directory",
            str(work / "user"),
            "--database-url",
            "sqlite:///:memory:",
            *extra_args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        log_path = work / "server.log"
        client = ComfyUIClient(f"http://{HOST}:{port}", log_path)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                cwd=comfyui_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if process.poll() is not None:
                    raise ComfyUIError(
                        f"ComfyUI exited with code {process.returncode} during start-up\n"
                        f"command: {' '.join(command)}\n--- server log ---\n{client.log()}"
                    )
                try:
                    if client._request("GET", "/object_info", timeout=10)[0] == 200:
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise ComfyUIError(
                        f"ComfyUI did not answer on port {port} within {startup_timeout:.0f} s\n"
                        f"--- server log ---\n{client.log()}"
                    )
                time.sleep(0.5)
            yield client
        finally:
            _stop(process)
    finally:
        shutil.rmtree(work, ignore_errors=True)
