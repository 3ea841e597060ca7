"""How many CPUs this process may use, for `server.workers = "auto"`.

Two things bound it. The CPU affinity mask (`os.sched_getaffinity`: `taskset`, cpusets,
Kubernetes' static CPU manager) says which cores the scheduler may run the process on;
the cgroup's CPU quota (a container's CPU limit: cgroup v2 `cpu.max`, cgroup v1
`cpu.cfs_quota_us` over `cpu.cfs_period_us`) says how much time it gets on them. A
container limited to 1.5 CPUs on a 16-core node should run 2 workers, not 16: workers
beyond the quota only get throttled together. The quota is rounded up (1.5 CPUs: two
workers, each busy three quarters of the time, rather than one worker leaving half a
CPU unused), and the answer is never below 1.

`decide_cpus` is the pure rule, over the files' contents; `load_cpus` reads them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
PROC_CGROUP: Final = Path("/proc/self/cgroup")
V1_CPU_MOUNTS: Final = ("cpu", "cpu,cpuacct", "cpuacct,cpu")
"""Where cgroup v1's cpu controller is usually mounted under `CGROUP_ROOT`."""


def parse_cpu_max(text: str) -> int | None:
    """Whole CPUs (rounded up) a cgroup v2 `cpu.max` allows: `"150000 100000"` gives 2,
    `"max 100000"` None (no quota). Anything unreadable is None too: no limit known."""
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    period = fields[1] if len(fields) > 1 else "100000"
    return _ceil_ratio(fields[0], period)


def parse_cfs(quota: str, period: str) -> int | None:
    """Whole CPUs (rounded up) cgroup v1's `cpu.cfs_quota_us` and `cpu.cfs_period_us`
    allow; a quota of -1 (or anything unreadable) is None: no limit known."""
    return _ceil_ratio(quota.strip(), period.strip())


def _ceil_ratio(quota: str, period: str) -> int | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:
        return None
    return -(-q // p)


def decide_cpus(affinity: int, cpu_max: Sequence[str] = (), cfs: Sequence[tuple[str, str]] = ()) -> int:
    """The CPUs a process may use: the number of CPUs in its affinity mask, lowered to
    the tightest quota among the cgroup v2 `cpu.max` contents in `cpu_max` and the v1
    (quota, period) contents in `cfs` (its own cgroup's and its ancestors', each of which
    limits it), each rounded up; at least 1."""
    limits = [n for n in (parse_cpu_max(text) for text in cpu_max) if n is not None]
    limits += [n for n in (parse_cfs(quota, period) for quota, period in cfs) if n is not None]
    return max(1, min([affinity, *limits]))


def load_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """`decide_cpus` for this process: its affinity mask and the quota files of its
    cgroup and every ancestor, v2 and v1, those that exist."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    cpu_max: list[str] = []
    cfs: list[tuple[str, str]] = []
    for line in _read(proc_cgroup).splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            cpu_max += [text for d in _upwards(root, path) if (text := _read(d / "cpu.max"))]
        elif "cpu" in controllers.split(","):
            for mount in V1_CPU_MOUNTS:
                for d in _upwards(root / mount, path):
                    quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
                    if quota and period:
                        cfs.append((quota, period))
    if not cpu_max and (text := _read(root / "cpu.max")):
        cpu_max.append(text)  # no /proc/self/cgroup to go by: the usual container root
    return decide_cpus(affinity, cpu_max, cfs)


def _upwards(top: Path, path: str) -> Iterator[Path]:
    """`top/path` and each of its parents up to `top` itself. Inside a container the
    path named in /proc/self/cgroup may not exist under the container's own mount,
    whose root is then the container's cgroup: it is always included."""
    parts = [p for p in path.strip("/").split("/") if p and p not in (".", "..")]
    for i in range(len(parts), -1, -1):
        yield top.joinpath(*parts[:i])


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
