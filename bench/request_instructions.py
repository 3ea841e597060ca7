"""Instructions per request: tag-gate under valgrind's callgrind, N sequential requests.

Throughput on the shared 2-core machine moves by 10-30 % between runs (other sessions'
load, and the batching that load causes: a starved server handles more requests per
loop turn, each one cheaper). The instructions the server executes per request do not:
the same run repeated agrees within about 0.5 %. They leave out the kernel's work (the
socket writes), so they compare the Python-side cost of two trees, not throughput.

Method: an origin nginx serves the bench pages (`pages.py`; `/pass/` as text/plain,
`/html/` as text/html); one tag-gate per tree runs under `valgrind --tool=callgrind`;
after 100 warm-up requests the counters are zeroed (`callgrind_control -z`), N requests
go over one keep-alive connection, one after the other, and the counters are dumped.

Usage:  python bench/request_instructions.py [--page 2KB] [--kind pass] [--requests 300]
            [--config TOML] [--keep PATH] TREE [TREE ...]
e.g. `python bench/request_instructions.py --kind html --page listing . /tmp/old-tree`
(a TREE is a source checkout: `git worktree add --detach /tmp/old-tree b9a083e`).
Trees run in parallel (each is one process); starting under valgrind takes a minute.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages
from proxy_bench import free_port, nginx_bin, origin_conf, wait_port


def dumped_instructions(prefix: str, before: set[Path], keep: Path | None = None) -> int:
    """The `summary:` (total Ir) of the newest callgrind dump not in `before` (copied to
    `keep` when given, for `callgrind_annotate`)."""
    folder = Path(prefix).parent
    fresh = sorted((p for p in folder.glob(Path(prefix).name + ".*") if p not in before), key=os.path.getmtime)
    if keep is not None:
        shutil.copyfile(fresh[-1], keep)
    for line in fresh[-1].read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in {fresh[-1]}")


def measure(
    tree: Path, origin_port: int, url_path: str, config: Path, requests: int, scratch: Path, keep: Path | None = None
) -> float:
    port = free_port()
    prefix = str(scratch / f"callgrind-{port}")
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}.%p", sys.executable, "-m", "proxy"]
    command += ["serve", "--listen", f"127.0.0.1:{port}", "--upstream", f"http://127.0.0.1:{origin_port}"]
    command += ["--admin-listen", "off", "--log-level", "warning", "--config", str(config)]
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONMALLOC="malloc")
    proc = subprocess.Popen(command, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_port(port, timeout=600)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

        def send(n: int) -> None:
            for _ in range(n):
                conn.request("GET", url_path, headers={"Host": "shop.example"})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{tree}: status {resp.status}")

        send(100)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True)
        send(requests)
        before = set(Path(prefix).parent.glob(Path(prefix).name + ".*"))
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
        time.sleep(0.5)
        return dumped_instructions(prefix, before, keep) / requests
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--page", choices=("2KB", "100KB", "listing"), default="2KB")
    ap.add_argument("--kind", choices=("pass", "html"), default="pass")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--config", default="", help="TOML for every tree (\\n: newline)")
    ap.add_argument("--keep", type=Path, help="copy each tree's callgrind dump to KEEP.<n> (n: the tree's place)")
    ap.add_argument("trees", nargs="+", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tg-instr-") as tmp:
        scratch = Path(tmp)
        www, run = scratch / "www", scratch / "run"
        for folder in (www / "pass", www / "html", run):
            folder.mkdir(parents=True)
        for folder in (scratch, www, www / "pass", www / "html", run):
            folder.chmod(0o755)  # nginx workers run unprivileged
        files = {
            "2KB": pages.make_small_page(),
            "100KB": pages.make_page(100 * 1024),
            "listing": pages.make_listing_page(),
        }
        for kind in ("pass", "html"):
            (www / kind / f"{args.page}.html").write_bytes(files[args.page])
        config = scratch / "tag-gate.toml"
        config.write_text(args.config.replace("\\n", "\n"))  # `\n` written on the command line
        origin_port = free_port()
        origin = origin_conf(run, www, origin_port)
        nginx = subprocess.Popen([nginx_bin(), "-c", str(origin), "-e", str(run / "nginx-stderr.log")])
        try:
            wait_port(origin_port)
            path = f"/{args.kind}/{args.page}.html"
            with ThreadPoolExecutor(len(args.trees)) as pool:
                results = list(
                    pool.map(
                        lambda n, t: measure(
                            t.resolve(),
                            origin_port,
                            path,
                            config,
                            args.requests,
                            scratch,
                            None if args.keep is None else args.keep.with_name(f"{args.keep.name}.{n}"),
                        ),
                        range(len(args.trees)),
                        args.trees,
                    )
                )
        finally:
            nginx.terminate()
            nginx.wait()
    print(f"instructions per request, {args.page} {args.kind}, {args.requests} sequential requests (callgrind)")
    for tree, ir in zip(args.trees, results, strict=True):
        print(f"  {str(tree):40s} {ir:12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
