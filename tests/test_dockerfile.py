"""Replay the Dockerfile's install and start steps in a clean virtual environment.

No container engine runs on the CI machines, so this test reads the Dockerfile, lays
out the files its COPY lines name, runs its `pip install` in a fresh venv, starts its
ENTRYPOINT + CMD with its ENV (ports and paths moved to the sandbox), runs its
HEALTHCHECK command and finally sends its STOPSIGNAL. If the Dockerfile and the
project drift apart, this fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import venv
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.proxytools import free_port

REPO = Path(__file__).resolve().parent.parent


def instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def exec_form(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        return list(json.loads(value))
    return shlex.split(value)


def test_dockerfile_shape() -> None:
    kinds = [k for k, _ in instructions()]
    for required in ("FROM", "COPY", "RUN", "USER", "ENV", "STOPSIGNAL", "HEALTHCHECK", "ENTRYPOINT", "CMD"):
        assert required in kinds, required
    base = dict(instructions())["FROM"]
    assert "slim" in base and "python" in base
    user = dict(instructions())["USER"]
    assert user not in ("root", "0")


@pytest.mark.slow
def test_dockerfile_install_and_start_steps_work_in_a_clean_venv(tmp_path: Path) -> None:
    root = tmp_path / "image"
    workdir: Path | None = None
    env: dict[str, str] = {}
    entrypoint: list[str] = []
    cmd: list[str] = []
    health: list[str] = []
    stop_signal = "SIGTERM"
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / "bin"

    def in_image(path: str) -> Path:
        p = Path(path)
        return (root / p.relative_to("/")) if p.is_absolute() else (workdir or root) / p

    for keyword, rest in instructions():
        if keyword == "WORKDIR":
            workdir = in_image(rest)
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, dest = shlex.split(rest)
            target = in_image(dest)
            for src in sources:
                source = REPO / src
                if source.is_dir():
                    shutil.copytree(
                        source,
                        target if not dest.endswith("/") else target / source.name,
                        ignore=shutil.ignore_patterns("__pycache__"),
                    )
                else:
                    final = target / source.name if dest.endswith("/") or len(sources) > 1 else target
                    final.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(source, final)
        elif keyword == "RUN":
            for step in rest.split("&&"):
                argv = shlex.split(step)
                if argv[0] == "pip":
                    argv = [str(bin_dir / "pip"), *[a for a in argv[1:] if a != "--no-cache-dir"], "-q"]
                    subprocess.run(argv, cwd=workdir, check=True, timeout=600)
                else:
                    assert argv[0] in ("useradd", "adduser"), f"unreplayed RUN step: {step}"
        elif keyword == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
        elif keyword == "ENTRYPOINT":
            entrypoint = exec_form(rest)
        elif keyword == "CMD":
            cmd = exec_form(rest)
        elif keyword == "HEALTHCHECK":
            health = exec_form(rest.partition("CMD")[2])
        elif keyword == "STOPSIGNAL":
            stop_signal = rest

    port, admin = free_port(), free_port()
    for key, value in list(env.items()):
        value = value.replace(":8080", f":{port}").replace(":9090", f":{admin}").replace("0.0.0.0", "127.0.0.1")
        if value.startswith("/"):
            value = str(in_image(value))
        env[key] = value
    assert Path(env["TAG_GATE_CONFIG"]).is_file()

    class Site(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"from the site"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    run_env = {
        **os.environ,
        **env,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "TAG_GATE_UPSTREAM": f"http://127.0.0.1:{site.server_address[1]}",
    }
    run_env.pop("VIRTUAL_ENV", None)
    assert entrypoint[0] == "tag-gate"
    proc = subprocess.Popen(
        [str(bin_dir / entrypoint[0]), *entrypoint[1:], *cmd],
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        check = [
            str(bin_dir / "python") if health[0] == "python" else health[0],
            *[a.replace(":9090", f":{admin}") for a in health[1:]],
        ]
        assert subprocess.run(check, timeout=10, env=run_env).returncode == 0
        out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/"], capture_output=True, text=True)
        if out.returncode == 0:
            assert out.stdout == "from the site"
        proc.send_signal(getattr(signal, stop_signal))
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        site.shutdown()
        site.server_close()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    assert sys.executable
