"""`tag-gate serve --workers N`: a supervisor and N worker processes on one port.

Real processes, signals and sockets, as an operator runs them (tests/test_cli_functional.py
has the single-process behaviour, which `--workers 1` keeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import Gauge

from proxy.core.config import ConfigError, parse_config
from proxy.core.running import merge_reload
from proxy.cpus import decide_cpus, load_cpus
from proxy.logs import MAX_RELAY_LINE, LineWriter, relay_lines
from proxy.metrics import Metrics
from tests.proxytools import free_port
from tests.test_cli_functional import CLI, run_cli, serve_process, upstream

# --------------------------------------------------------------------------- "auto"

Q = "100000"


@pytest.mark.parametrize(
    ("affinity", "cpu_max", "cfs", "expected"),
    [
        (8, [], [], 8),  # no quota anywhere: the affinity mask decides
        (8, ["max 100000"], [], 8),  # v2, unlimited
        (8, ["200000 100000"], [], 2),
        (8, ["150000 100000"], [], 2),  # 1.5 CPUs: rounded up
        (8, ["50000 100000"], [], 1),  # half a CPU: never below 1
        (8, ["1000 100000"], [], 1),
        (2, ["400000 100000"], [], 2),  # the quota allows more than the mask: the mask decides
        (8, ["max 100000", "300000 100000"], [], 3),  # a parent's quota limits too
        (8, ["300000 100000", "200000 100000"], [], 2),  # the tightest wins
        (8, ["max"], [], 8),
        (8, ["garbage"], [], 8),  # unreadable: no limit known
        (8, ["", "0 100000", "100000 0"], [], 8),
        (8, [], [("-1", Q)], 8),  # v1, unlimited
        (8, [], [("300000", Q)], 3),
        (8, [], [("250000\n", "100000\n")], 3),
        (8, [], [("20000", Q)], 1),
        (8, [], [("x", Q), ("300000", "y")], 8),
        (8, ["400000 100000"], [("300000", Q)], 3),  # v1 and v2 both present: the tighter
        (1, [], [], 1),
        (0, [], [], 1),  # an empty mask cannot happen; still at least 1
    ],
)
def test_auto_is_the_affinity_mask_lowered_to_the_cgroup_quota(
    affinity: int, cpu_max: list[str], cfs: list[tuple[str, str]], expected: int
) -> None:
    assert decide_cpus(affinity, cpu_max, cfs) == expected


def test_auto_reads_the_quota_of_the_cgroup_and_its_parents(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("0::/kubepods/pod1/ctr\n")
    for folder, text in (("kubepods", "300000 100000"), ("kubepods/pod1", "max 100000"), ("kubepods/pod1/ctr", "")):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        if text:
            (tmp_path / folder / "cpu.max").write_text(text + "\n")
    assert load_cpus(tmp_path, proc) == min(3, len(os.sched_getaffinity(0)))
    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("100000\n")  # a container's own root
    (v1 / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    proc.write_text("4:cpu,cpuacct:/docker/abc\n1:memory:/docker/abc\n")
    assert load_cpus(v1, proc) == 1
    assert load_cpus(tmp_path / "nothing", tmp_path / "nothing") == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("value", "expected"), [(1, 1), (4, 4), (1024, 1024), ("auto", "auto")])
def test_server_workers_takes_a_count_or_auto(value: object, expected: object) -> None:
    assert parse_config({"server": {"workers": value}}).server.workers == expected
    assert parse_config({}).server.workers == 1


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (0, "server.workers: expected from 1 to 1024 worker processes, got 0"),
        (1025, "server.workers: expected from 1 to 1024 worker processes, got 1025"),
        ("2", 'server.workers: expected a whole number of worker processes or "auto", got a string'),
        (True, 'server.workers: expected a whole number of worker processes or "auto", got a boolean'),
        (2.0, 'server.workers: expected a whole number of worker processes or "auto", got a number'),
    ],
)
def test_server_workers_problems_name_the_key(value: object, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"server": {"workers": value}})
    assert info.value.problems == [problem]


@pytest.mark.parametrize("value", ["0", "two", "-1", "2000"])
def test_a_bad_workers_flag_is_one_clear_line(value: str) -> None:
    result = run_cli("serve", "--upstream", "http://127.0.0.1:1", "--workers", value)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("tag-gate: --workers: ")


@pytest.mark.parametrize("role", ["public", "admin"])
def test_an_address_in_use_is_one_clear_line_before_any_worker_starts(role: str) -> None:
    """Also when the port is held by SO_REUSEPORT sockets (another tag-gate's workers):
    joining their group would split the traffic with a stranger."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = free_port()
        listen, admin = (port, other) if role == "public" else (other, port)
        result = run_cli(
            "serve",
            "--workers",
            "2",
            "--upstream",
            "http://127.0.0.1:1",
            "--listen",
            f"127.0.0.1:{listen}",
            "--admin-listen",
            f"127.0.0.1:{admin}",
        )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"tag-gate: cannot listen on 127.0.0.1:{port} ({role} listener): ")


def test_every_gauge_says_how_workers_combine() -> None:
    """A gauge without a multiprocess mode would show one series per worker pid, dead
    ones included (prometheus-client's default, 'all'): every gauge must choose."""
    for metrics in (Metrics(), Metrics(worker=True)):
        gauges = [value for value in vars(metrics).values() if isinstance(value, Gauge)]
        assert len(gauges) >= 5
        for gauge in gauges:
            if gauge._name in ("tag_gate_ready",):
                continue  # the supervisor's own, never in a worker
            assert gauge._multiprocess_mode in ("livesum", "livemax"), gauge._name
    worker = Metrics(worker=True)
    assert not hasattr(worker, "ready") and not hasattr(worker, "reloads")


async def test_relayed_output_arrives_a_whole_line_at_a_time() -> None:
    for keep_partial, expected, dropped in [
        (False, ['{"a":1}', '{"b":2}', "x" * MAX_RELAY_LINE, "tail"], 1),
        (True, ['{"a":1}', '{"b":2}', "x" * MAX_RELAY_LINE, "tail", '{"c":'], 0),
    ]:
        reader = asyncio.StreamReader()
        for piece in (b'{"a":1}\n{"b"', b":2}\n", b"x" * (MAX_RELAY_LINE + 4) + b"\n", b'tail\n{"c":'):
            reader.feed_data(piece)
        reader.feed_eof()
        out = io.StringIO()
        writer = LineWriter(out, capacity=4 * MAX_RELAY_LINE, name="test relay")
        await relay_lines(reader, writer, keep_partial=keep_partial)
        assert writer.drain(5)
        lines = out.getvalue().split("\n")
        assert lines[-1] == ""
        assert lines[:-1] == expected[:2] + ["x" * MAX_RELAY_LINE, "xxxx"] + expected[3:]
        assert writer.dropped == dropped
        writer.close()


def test_reloads_merge_against_the_starting_config_however_many_there_were() -> None:
    """A worker (re)started after several reloads builds `merge_reload(base, latest)`;
    the running process got there reload by reload: the same config."""
    base = parse_config({"server": {"listen": "127.0.0.1:8080", "upstream": "http://127.0.0.1:1"}})
    first = parse_config(
        {
            "server": {"listen": "127.0.0.1:9000", "upstream": "http://127.0.0.1:2", "workers": 4},
            "timeouts": {"grace": 3},
            "limits": {"max_request_body": 10, "max_headers": 5},
            "html": {"action": "defer"},
        }
    )
    second = parse_config(
        {"server": {"listen": "127.0.0.1:8080", "upstream": "http://127.0.0.1:3"}, "limits": {"max_request_body": 20}}
    )
    step, changed = merge_reload(merge_reload(base, first)[0], second)
    direct, _ = merge_reload(base, second)
    assert step == direct
    assert step.server.listen == base.server.listen and step.server.upstream == base.server.upstream
    assert step.limits.max_request_body == 20 and step.limits.max_headers == base.limits.max_headers
    assert step.html.action == "remove"
    assert merge_reload(base, first)[1] == ("server.listen", "server.upstream", "server.workers", "timeouts", "limits")
    assert changed == ("server.upstream",)


# --------------------------------------------------------------------------- helpers


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (the supervisor's workers)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return sorted(int(p) for p in text.split())


def owner_of(client_port: int, server_port: int, pids: list[int]) -> int | None:
    """Which of `pids` holds the accepted end of the connection from `client_port`."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if local == server_port and remote == client_port:
            inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
    return None


async def fetch(port: int, path: str = "/", *, timeout: float = 10) -> tuple[int, str]:
    """GET on a new connection (so the kernel picks a worker for each); (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        return 0, ""
    return int(head.split()[1]), body.decode("utf-8", "replace")


class Pending:
    """A request sent on its own connection, answered later."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.client_port = int(writer.get_extra_info("sockname")[1])

    @classmethod
    async def send(cls, port: int, path: str) -> Pending:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        return cls(reader, writer)

    async def answer(self, timeout: float = 15) -> tuple[int, str]:
        try:
            data = await asyncio.wait_for(self.reader.read(), timeout)
        except (ConnectionError, OSError):
            data = b""
        finally:
            self.writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return (int(head.split()[1]), body.decode()) if head else (0, "")


async def admin_get(admin: int, path: str) -> tuple[int, str]:
    return await fetch(admin, path, timeout=5)


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if await check():
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def wait_ready(admin: int, timeout: float = 20) -> None:
    async def ready() -> bool:
        return (await admin_get(admin, "/readyz"))[0] == 200

    await wait_for(ready, timeout, "/readyz 200")


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one series in an exposition (0 when absent)."""
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def metrics_text(admin: int) -> str:
    return (await admin_get(admin, "/metrics"))[1]


def access_lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def finish(proc: subprocess.Popen[str], timeout: float = 15) -> tuple[int, str, str]:
    """Wait for the process, reading both pipes meanwhile; (status, stdout, stderr)."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@contextlib.asynccontextmanager
async def site(**routes: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[int]:
    app = web.Application()
    for name, handler in routes.items():
        app.router.add_get("/slow" if name == "slow" else "/{tail:.*}", handler)
    async with upstream(app) as server:
        assert server.port is not None
        yield server.port


async def page(request: web.Request) -> web.Response:
    return web.Response(
        text='<html><body><iframe src="https://www.youtube.com/embed/x"></iframe><p>hello</p></body></html>',
        content_type="text/html",
    )


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "2")))
    return web.Response(text="finished")


def config_file(tmp_path: Path, port: int, extra: str = "") -> Path:
    cfg = tmp_path / "tag-gate.toml"
    cfg.write_text(f'[server]\nupstream = "http://127.0.0.1:{port}"\n{extra}')
    return cfg


# --------------------------------------------------------------------------- serving


@pytest.mark.slow
async def test_two_workers_share_the_port_and_the_metrics_count_every_request() -> None:
    async with site(slow=slow, page=page) as origin:
        with serve_process("--workers", "2", "--upstream", f"http://127.0.0.1:{origin}") as (proc, port, admin):
            await wait_ready(admin)
            workers = children(proc.pid)
            assert len(workers) == 2
            results = await asyncio.gather(*(fetch(port, f"/n{i}") for i in range(200)))
            assert all(status == 200 and "hello" in body for status, body in results)
            text = await metrics_text(admin)
            assert metric(text, "tag_gate_requests_total", 'status_class="2xx"') == 200
            assert metric(text, "tag_gate_request_duration_seconds_count") == 200
            assert metric(text, "tag_gate_elements_total", 'action="remove",category="social"') == 200
            assert metric(text, "tag_gate_workers", 'state="ready"') == 2
            assert metric(text, "tag_gate_ready") == 1
            assert metric(text, "tag_gate_worker_restarts_total") == 0
            assert text.count("# TYPE tag_gate_requests_total counter") == 1
            assert text.count("# TYPE tag_gate_log_dropped_total counter") == 1
            proc.send_signal(signal.SIGTERM)
            status, out, err = await asyncio.to_thread(finish, proc)
    assert status == 0, err
    lines = [line for line in access_lines(out) if str(line["path"]).startswith("/n")]
    assert len(lines) == 200
    served_by = {line["pid"] for line in lines}
    assert served_by == set(workers), "both workers serve"
    assert "Traceback" not in err
    assert re.search(r"INFO tag_gate \[worker 1\]: ", err) and re.search(r"INFO tag_gate \[worker 2\]: ", err)


async def test_workers_1_is_one_process_as_before() -> None:
    async with site(page=page) as origin:
        with serve_process("--workers", "1", "--upstream", f"http://127.0.0.1:{origin}") as (proc, port, admin):
            await wait_ready(admin)
            assert children(proc.pid) == []
            assert (await fetch(port))[0] == 200
            text = await metrics_text(admin)
            assert "tag_gate_workers" not in text and "tag_gate_worker_restarts" not in text
            proc.send_signal(signal.SIGTERM)
            status, out, _ = await asyncio.to_thread(finish, proc)
    assert status == 0
    assert [set(line) for line in access_lines(out)] == [{"ts", "remote", "method", "path", "status", "ms"}]


@pytest.mark.slow
async def test_auto_follows_the_affinity_mask() -> None:
    if load_cpus() < 2:
        pytest.skip("fewer than 2 CPUs for this process")
    async with site(page=page) as origin:
        up = f"http://127.0.0.1:{origin}"
        with serve_process("--workers", "auto", "--upstream", up, env={"TAG_GATE_WORKERS": "1"}) as (proc, _, admin):
            await wait_ready(admin)
            assert len(children(proc.pid)) == load_cpus()  # the flag wins over the variable
            proc.send_signal(signal.SIGTERM)
            assert (await asyncio.to_thread(finish, proc))[0] == 0
        admin = free_port()
        pinned = subprocess.Popen(
            ["taskset", "-c", "0", *CLI, "serve", "--upstream", up, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TAG_GATE_WORKERS": "auto", "TAG_GATE_ADMIN_LISTEN": f"127.0.0.1:{admin}"},
        )
        try:
            await wait_ready(admin)
            assert children(pinned.pid) == []  # one CPU: one process, no supervisor
        finally:
            pinned.send_signal(signal.SIGTERM)
            status, _, err = await asyncio.to_thread(finish, pinned)
        assert status == 0, err
        assert "workers" not in err


@pytest.mark.slow
async def test_lines_from_every_worker_stay_whole() -> None:
    """Access-log lines longer than PIPE_BUF (4 KiB: a path of backslashes, each escaped
    in JSON) from two workers at once, into a pipe read only at the end: each arrives
    whole, on a line of its own."""
    async with site(page=page) as origin:
        with serve_process("--workers", "2", "--upstream", f"http://127.0.0.1:{origin}") as (proc, port, admin):
            await wait_ready(admin)
            path = "/" + "\\" * 2200
            for _ in range(4):
                results = await asyncio.gather(*(fetch(port, path) for _ in range(50)))
                assert all(status in (200, 404) for status, _ in results)
            proc.send_signal(signal.SIGTERM)
            status, out, err = await asyncio.to_thread(finish, proc)
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 200
    assert all(len(line) > 4096 for line in lines)
    records = [json.loads(line) for line in lines]
    assert all(r["path"] == path[:2048] for r in records)
    assert len({r["pid"] for r in records}) == 2
    for line in err.splitlines():
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+( \[worker \d\])?: ", line), line


# --------------------------------------------------------------------------- readiness and stopping


@pytest.mark.slow
async def test_readyz_waits_for_every_worker_and_drops_at_sigterm(tmp_path: Path) -> None:
    async with site(slow=slow, page=page) as origin:
        cfg = config_file(tmp_path, origin, "[timeouts]\nshutdown_delay = 1.0\ngrace = 1.0\n")
        with serve_process("--config", str(cfg), "--workers", "2") as (proc, port, admin):
            first = (await admin_get(admin, "/readyz"))[0]
            assert first == 503, "ready before the workers started"
            assert (await admin_get(admin, "/healthz"))[0] == 200
            await wait_ready(admin)
            stuck = await Pending.send(port, "/slow?s=30")
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            await asyncio.sleep(0.2)
            assert (await admin_get(admin, "/readyz"))[0] == 503
            assert metric(await metrics_text(admin), "tag_gate_ready") == 0
            assert (await fetch(port))[0] == 200, "still accepting during shutdown_delay"
            status, _, err = await asyncio.to_thread(finish, proc)
            took = time.monotonic() - stopped_at
            assert (await stuck.answer())[0] == 0, "cut at the grace deadline"
    assert status == 0, err
    assert took < 1.0 + 1.0 + 1.0, f"exited {took:.2f} s after SIGTERM"
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigint", "second signal"])
async def test_sigint_skips_the_delay_and_a_second_signal_stops_at_once(tmp_path: Path, how: str) -> None:
    async with site(slow=slow, page=page) as origin:
        cfg = config_file(tmp_path, origin, "[timeouts]\nshutdown_delay = 5.0\ngrace = 5.0\n")
        with serve_process("--config", str(cfg), "--workers", "2") as (proc, port, admin):
            await wait_ready(admin)
            stuck = await Pending.send(port, "/slow?s=30")
            await asyncio.sleep(0.3)
            started = time.monotonic()
            if how == "sigint":
                proc.send_signal(signal.SIGINT)
                await asyncio.sleep(0.5)
                assert (await admin_get(admin, "/readyz"))[0] == 503
                with pytest.raises(OSError):
                    await fetch(port)  # no delay: the workers stopped listening at once
                proc.send_signal(signal.SIGINT)
            else:
                proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.3)
                proc.send_signal(signal.SIGTERM)
            status, _, err = await asyncio.to_thread(finish, proc)
            took = time.monotonic() - started
            await stuck.answer()
    assert status == 0, err
    assert took < 2.0, f"took {took:.2f} s"
    assert "second signal: stopping without waiting" in err


# --------------------------------------------------------------------------- a worker dies


@pytest.mark.slow
async def test_a_killed_worker_is_restarted_and_the_other_finishes_its_requests() -> None:
    async with site(slow=slow, page=page) as origin:
        with serve_process("--workers", "2", "--upstream", f"http://127.0.0.1:{origin}") as (proc, port, admin):
            await wait_ready(admin)
            workers = children(proc.pid)
            pending = [await Pending.send(port, "/slow?s=2") for _ in range(16)]
            await asyncio.sleep(0.5)
            owners = [owner_of(p.client_port, port, workers) for p in pending]
            assert set(owners) == set(workers), owners  # 16 connections: both workers have some
            victim = owners[0]
            assert victim is not None
            os.kill(victim, signal.SIGKILL)

            async def unready() -> bool:
                return (await admin_get(admin, "/readyz"))[0] == 503

            await wait_for(unready, 2, "/readyz 503 with a worker down")
            answers = await asyncio.gather(*(p.answer() for p in pending))
            survivors = [a for a, owner in zip(answers, owners, strict=True) if owner != victim]
            assert survivors and all(a == (200, "finished") for a in survivors), answers
            await wait_ready(admin)
            now = children(proc.pid)
            assert len(now) == 2 and victim not in now and len(set(now) & set(workers)) == 1
            text = await metrics_text(admin)
            assert metric(text, "tag_gate_worker_restarts_total") == 1
            survivors_count = len(survivors)
            assert metric(text, "tag_gate_requests_total", 'status_class="2xx"') >= survivors_count
            results = await asyncio.gather(*(fetch(port, f"/after{i}") for i in range(30)))
            assert all(status == 200 for status, _ in results)
            proc.send_signal(signal.SIGTERM)
            status, out, err = await asyncio.to_thread(finish, proc)
    assert status == 0
    assert (
        f"worker 1 (pid {victim}) exited with SIGKILL" in err or f"worker 2 (pid {victim}) exited with SIGKILL" in err
    )
    after = {line["pid"] for line in access_lines(out) if str(line["path"]).startswith("/after")}
    assert after == set(now), "the restarted worker serves too"


BREAK_WORKERS = """
import os
if b"proxy.worker" in open("/proc/self/cmdline", "rb").read() and os.path.exists(os.environ["TG_TEST_BREAK"]):
    os._exit(3)
"""
"""A sitecustomize that makes a worker die as it starts while the file TG_TEST_BREAK exists."""


@pytest.fixture
def breakable(tmp_path: Path) -> tuple[dict[str, str], Path]:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BREAK_WORKERS)
    flag = tmp_path / "break"
    root = str(Path(__file__).resolve().parent.parent)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), root]), "TG_TEST_BREAK": str(flag)}
    return env, flag


def test_a_worker_that_cannot_start_is_one_clear_line(breakable: tuple[dict[str, str], Path]) -> None:
    env, flag = breakable
    flag.touch()
    result = run_cli("serve", "--workers", "2", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0", env=env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(r"tag-gate: worker [12] could not start: exited with status 3 before it was ready", lines[0])


@pytest.mark.slow
async def test_workers_dying_at_start_again_and_again_end_the_supervisor(
    breakable: tuple[dict[str, str], Path],
) -> None:
    env, flag = breakable
    async with site(page=page) as origin:
        with serve_process("--workers", "2", "--upstream", f"http://127.0.0.1:{origin}", env=env) as (
            proc,
            port,
            admin,
        ):
            await wait_ready(admin)
            flag.touch()
            os.kill(children(proc.pid)[0], signal.SIGKILL)
            started = time.monotonic()
            status, _, err = await asyncio.to_thread(finish, proc, 30)
    took = time.monotonic() - started
    assert status == 1
    assert re.search(r"worker [12] failed to start 5 times in a row: exited with status 3 before it was ready", err)
    assert err.strip().splitlines()[-1].startswith("tag-gate: worker")
    assert 0.1 + 0.2 + 0.4 + 0.8 < took < 15, "backoff between the starts, and a bounded end"
    assert "Traceback" not in err


# --------------------------------------------------------------------------- reload


async def _placeholders(port: int, prefix: str, n: int = 40) -> list[bool]:
    results = await asyncio.gather(*(fetch(port, f"/{prefix}{i}") for i in range(n)))
    assert all(status == 200 for status, _ in results)
    return ["data-tg-placeholder" in body for _, body in results]


@pytest.mark.slow
async def test_sighup_reloads_every_worker_and_a_bad_file_none(tmp_path: Path) -> None:
    async with site(page=page) as origin:
        cfg = config_file(tmp_path, origin)
        with serve_process("--config", str(cfg), "--workers", "2") as (proc, port, admin):
            await wait_ready(admin)
            assert not any(await _placeholders(port, "before"))
            cfg.write_text(cfg.read_text() + '[html.category.social]\naction = "placeholder"\n')
            proc.send_signal(signal.SIGHUP)

            async def applied() -> bool:
                return metric(await metrics_text(admin), "tag_gate_config_reloads_total", 'result="applied"') == 1

            await wait_for(applied, 10, "the reload")
            assert all(await _placeholders(port, "good"))
            cfg.write_text("[html]\naction = 'explode'\n")
            proc.send_signal(signal.SIGHUP)

            async def refused() -> bool:
                return metric(await metrics_text(admin), "tag_gate_config_reloads_total", 'result="refused"') == 1

            await wait_for(refused, 10, "the refusal")
            assert all(await _placeholders(port, "bad"))
            text = await metrics_text(admin)
            assert metric(text, "tag_gate_config_reloads_total", 'result="applied"') == 1, "once per reload"
            proc.send_signal(signal.SIGTERM)
            status, out, err = await asyncio.to_thread(finish, proc)
    assert status == 0
    lines = access_lines(out)
    for prefix in ("good", "bad"):
        assert len({line["pid"] for line in lines if str(line["path"]).startswith(f"/{prefix}")}) == 2, prefix
    assert "reload refused, keeping the running config" in err and "html.action" in err
    assert err.count("reloaded config from") == 1 and "Traceback" not in err


@pytest.mark.slow
async def test_a_reload_one_worker_cannot_take_applies_on_none(tmp_path: Path) -> None:
    """A worker that does not answer `prepare` (stopped here with SIGSTOP) makes every
    worker keep the running config; the next reload, with all answering, applies."""
    async with site(page=page) as origin:
        cfg = config_file(tmp_path, origin)
        with serve_process("--config", str(cfg), "--workers", "2") as (proc, port, admin):
            await wait_ready(admin)
            frozen = children(proc.pid)[0]
            cfg.write_text(cfg.read_text() + '[html.category.social]\naction = "placeholder"\n')
            os.kill(frozen, signal.SIGSTOP)
            try:
                proc.send_signal(signal.SIGHUP)

                async def refused() -> bool:
                    text = await metrics_text(admin)
                    return metric(text, "tag_gate_config_reloads_total", 'result="refused"') == 1

                await wait_for(refused, 15, "the refusal")
            finally:
                os.kill(frozen, signal.SIGCONT)
            await asyncio.sleep(0.3)  # the thawed worker reads its late prepare, then the abort
            assert not any(await _placeholders(port, "none"))
            proc.send_signal(signal.SIGHUP)

            async def applied() -> bool:
                return metric(await metrics_text(admin), "tag_gate_config_reloads_total", 'result="applied"') == 1

            await wait_for(applied, 10, "the second reload")
            assert all(await _placeholders(port, "all"))
            proc.send_signal(signal.SIGTERM)
            status, out, err = await asyncio.to_thread(finish, proc)
    assert status == 0
    lines = access_lines(out)
    for prefix in ("none", "all"):
        assert len({line["pid"] for line in lines if str(line["path"]).startswith(f"/{prefix}")}) == 2, prefix
    assert re.search(rf"reload refused, keeping the running config: worker \d \(pid {frozen}\) did not answer", err)


def test_the_worker_module_is_not_for_hand_use() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy.worker"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2 and "not by hand" in result.stderr


@pytest.fixture(autouse=True)
def _no_stray_metrics_dirs() -> Iterator[None]:
    """Every supervisor removes its private metrics directory at exit."""
    import tempfile

    root = Path(tempfile.gettempdir())
    before = {p.name for p in root.glob("tag-gate-metrics-*")}
    yield
    after = {p.name for p in root.glob("tag-gate-metrics-*")}
    assert after <= before, after - before
