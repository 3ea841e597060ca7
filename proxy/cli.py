"""The `tag-gate` command: argument parsing and sub-commands only.

Every failure an operator can cause (bad flag, bad config, port in use) ends with one
clear line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from . import __version__
from .control import ConfigSource
from .core.addresses import parse_address
from .core.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from .logs import EventLogHandler

ENV_VARS = {
    "config": "TAG_GATE_CONFIG",
    "listen": "TAG_GATE_LISTEN",
    "upstream": "TAG_GATE_UPSTREAM",
    "admin_listen": "TAG_GATE_ADMIN_LISTEN",
    "workers": "TAG_GATE_WORKERS",
}
"""Environment variables read by `serve`, for containers; flags win over them."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command's --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="tag-gate",
        description=(
            "A consent-aware reverse proxy. It sits in front of a website, reads the visitor's "
            "consent from the cookie their consent manager writes, and removes refused trackers "
            "and cookies on the wire."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tag-gate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    serve = sub.add_parser(
        "serve",
        help="run the proxy",
        description=(
            "Run the proxy in front of UPSTREAM. Settings come from the config file, then the "
            "environment, then flags (flags win). Without a config file, built-in defaults apply: "
            "listen 0.0.0.0:8080, admin (health, readiness, metrics) on 127.0.0.1:9090."
        ),
    )
    serve.add_argument("--config", metavar="FILE", help=f"TOML config file (env {ENV_VARS['config']})")
    serve.add_argument("--listen", metavar="HOST:PORT", help=f"public address (env {ENV_VARS['listen']})")
    serve.add_argument(
        "--upstream", metavar="URL", help=f"the site, e.g. http://127.0.0.1:8000 (env {ENV_VARS['upstream']})"
    )
    serve.add_argument(
        "--admin-listen",
        metavar="HOST:PORT",
        help=f"admin address for /healthz /readyz /metrics, or 'off' (env {ENV_VARS['admin_listen']})",
    )
    serve.add_argument(
        "--workers",
        metavar="N",
        help=(
            "worker processes sharing the port under a supervisor, or 'auto' for one per CPU this process may "
            f"use; 1 (the default) serves in this one process (env {ENV_VARS['workers']})"
        ),
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    demo = sub.add_parser(
        "demo",
        help="run a demo shop behind tag-gate on this machine",
        description=(
            "Start a demo shop page carrying real-world tags (analytics, advertising pixels, video embeds, chat, "
            "payments) behind tag-gate, with a local stand-in for every vendor so nothing leaves this machine. "
            "Prints the URL to open and, for each consent state, what was removed, deferred and kept."
        ),
    )
    demo.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:8080", help="tag-gate's address")
    demo.add_argument("--once", action="store_true", help="print the report and exit")

    explain = sub.add_parser(
        "explain",
        help="show what tag-gate does to a page, element by element",
        description=(
            "Run the HTML gate over a page for a given consent and print every tracker element and cookie "
            "with its vendor, category, decision and the rule that decided, then the third-party hosts and "
            "cookies nothing classified. SOURCE is a URL (fetched with the consent cookie; fetch the site "
            "directly, not through tag-gate, to see every tag), a local HTML file, or - for stdin."
        ),
    )
    explain.add_argument("source", metavar="SOURCE", nargs="?")
    explain.add_argument(
        "--consent", metavar="COOKIE", help="a Cookie header, e.g. 'tg_consent=analytics' or any CMP cookie"
    )
    explain.add_argument("--gpc", action="store_true", help="as if the browser sent Sec-GPC: 1")
    explain.add_argument("--config", metavar="FILE", help="the TOML config (default: built-in defaults)")
    explain.add_argument("--host", metavar="HOST", help="the site's host name (what counts as first-party)")
    explain.add_argument(
        "--set-cookie",
        metavar="LINE",
        action="append",
        default=[],
        help="a Set-Cookie line to classify too (repeatable)",
    )
    explain.add_argument(
        "--guard",
        action="store_true",
        help="also show the runtime guard's rules and the CSP layer's header for this consent (SOURCE optional)",
    )
    explain.add_argument(
        "--admin",
        metavar="URL",
        help="also list the catalogue gaps and runtime leaks browsers reported to a live tag-gate, read from"
        " its admin listener, e.g. http://127.0.0.1:9901 (SOURCE optional)",
    )
    explain.add_argument("--json", action="store_true", help="one JSON object for machines")

    consent_cmd = sub.add_parser(
        "explain-consent",
        help="show the consent tag-gate reads from a Cookie header",
        description="Print the consent state a Cookie header (and Sec-GPC) gives, and which source decided.",
    )
    consent_cmd.add_argument("cookie", metavar="COOKIE_HEADER", help="the visitor's Cookie header ('' for none)")
    consent_cmd.add_argument("--gpc", action="store_true", help="as if the browser sent Sec-GPC: 1")
    consent_cmd.add_argument("--config", metavar="FILE", help="the TOML config (default: built-in defaults)")
    consent_cmd.add_argument("--json", action="store_true", help="one JSON object for machines")

    catalogue = sub.add_parser(
        "catalogue",
        help="list or search what tag-gate knows about vendors, hosts, URLs and cookies",
        description=(
            "Show what tag-gate believes before you deploy it: the built-in vendors, the Open Cookie Database's "
            "cookie names (asked only for names no vendor claims) and the [[vendor]] tables of --config, each "
            "with its category and source. Without a question, list the vendors. Answers come from the same "
            "lookups the proxy uses."
        ),
    )
    question = catalogue.add_mutually_exclusive_group()
    question.add_argument(
        "--list", dest="listing", choices=["vendors", "hosts", "urls", "cookies"], help="list every entry of a kind"
    )
    question.add_argument("--vendor", metavar="TEXT", help="vendors whose id or name contains TEXT, in full")
    question.add_argument("--host", metavar="HOST", help="which vendor owns HOST (its longest listed parent domain)")
    question.add_argument("--url", metavar="URL", help="what decides URL: the catalogue entry and the decision")
    question.add_argument("--cookie", metavar="NAME", help="which vendor owns the cookie NAME (exact name or pattern)")
    catalogue.add_argument("--category", metavar="CATEGORY", help="only vendors of this category (lists, --vendor)")
    catalogue.add_argument(
        "--page-host", metavar="HOST", help="with --url: the site's host name (what counts as first-party)"
    )
    catalogue.add_argument("--config", metavar="FILE", help="the TOML config (default: built-in defaults)")
    catalogue.add_argument("--json", action="store_true", help="one JSON object for machines")

    check = sub.add_parser(
        "check-config",
        help="validate a config file",
        description="Validate a config file and print every problem with its TOML path. Exit 1 on any problem.",
    )
    check.add_argument("file", metavar="FILE")
    return parser


def _setup_logging(level: str) -> EventLogHandler:
    """The event log on stderr: one line per event, written by a thread (see proxy/logs.py).
    The caller closes the returned handler at exit (a bounded drain)."""
    from .logs import install_event_log

    return install_event_log(getattr(logging, level.upper()))


def _fail(message: str, status: int = 1) -> int:
    sys.stderr.write(f"tag-gate: {message}\n")
    return status


def _serve_source(args: argparse.Namespace, environ: dict[str, str]) -> ConfigSource:
    """The config file's text as read now, with the environment's and flags' overrides."""
    path = args.config or environ.get(ENV_VARS["config"]) or None
    overrides: dict[str, tuple[str, str]] = {}
    for key in ("listen", "upstream", "admin_listen", "workers"):
        flag = getattr(args, key)
        if flag is not None:
            overrides[key] = (f"--{key.replace('_', '-')}", flag)
        elif environ.get(ENV_VARS[key]):
            overrides[key] = (ENV_VARS[key], environ[ENV_VARS[key]])
    return ConfigSource.read(path, overrides)


def _serve_config(args: argparse.Namespace, environ: dict[str, str]) -> Config:
    return _serve_source(args, environ).build()


def _cmd_serve(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    try:
        source = _serve_source(args, environ)
        config = source.build()
    except ConfigError as exc:
        for line in exc.problems:
            sys.stderr.write(f"tag-gate: {line}\n")
        return 1
    workers = config.server.workers
    if workers == "auto":
        from .cpus import load_cpus

        workers = load_cpus()
    if workers > 1:
        # The supervisor's own metrics stay in memory; only its workers write the
        # multiprocess files, in a directory of its own (prometheus-client chooses its
        # mode from these variables when it is first imported).
        for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"):
            os.environ.pop(name, None)
    events = _setup_logging(args.log_level)
    try:
        import uvloop

        from .startup import ServeError, tune_allocator

        tuned = tune_allocator(environ)
        if tuned:
            logging.getLogger("tag_gate").debug("%s", tuned)
        try:
            if workers > 1:
                from .supervisor import supervise

                return uvloop.run(
                    supervise(
                        source,
                        config,
                        workers,
                        reread=lambda: _serve_source(args, environ),
                        events=events,
                        log_level=args.log_level,
                    )
                )
            from .service import serve

            def rebuild() -> Config:
                return _serve_config(args, environ)

            return uvloop.run(serve(config, reload=rebuild))
        except ServeError as exc:
            problem = str(exc)
        except KeyboardInterrupt:
            return 130
    finally:
        events.close()
    return _fail(problem)


def _cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for line in exc.problems:
            print(line)
        print(f"{len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''} found")
        return 1
    print(f"{config.source}: ok")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        listen = parse_address(args.listen)
    except (TypeError, ValueError) as exc:
        return _fail(f"--listen: {exc}")
    events = _setup_logging("warning")
    try:
        import uvloop

        from .demo import run
        from .service import ServeError

        try:
            return uvloop.run(run(listen, args.once))
        except ServeError as exc:
            problem = str(exc)
        except KeyboardInterrupt:
            return 130
    finally:
        events.close()
    return _fail(problem)


def _load_or_fail(path: str | None) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.problems:
            sys.stderr.write(f"tag-gate: {line}\n")
        return None


def _cmd_explain(args: argparse.Namespace) -> int:
    if args.source is None and not args.guard and args.admin is None:
        return _fail("explain: give a SOURCE (URL, file or -), --guard, or --admin URL", 2)
    config = _load_or_fail(args.config)
    if config is None:
        return 1
    from .explain import run_explain

    try:
        return run_explain(
            config,
            args.source,
            consent_cookie=args.consent,
            gpc=args.gpc,
            host=args.host,
            set_cookies=args.set_cookie,
            as_json=args.json,
            guard=args.guard,
            admin=args.admin,
        )
    except OSError as exc:
        return _fail(f"cannot read {args.source or args.admin or 'the output'}: {exc.strerror or exc}")
    except Exception as exc:  # a fetch or gate failure: one line, not a traceback
        return _fail(f"explain failed for {args.source or args.admin or 'the output'}: {type(exc).__name__}: {exc}")


def _cmd_explain_consent(args: argparse.Namespace) -> int:
    config = _load_or_fail(args.config)
    if config is None:
        return 1
    from .explain import run_explain_consent

    return run_explain_consent(config, args.cookie, gpc=args.gpc, as_json=args.json, out=sys.stdout)


def _cmd_catalogue(args: argparse.Namespace) -> int:
    config = _load_or_fail(args.config)
    if config is None:
        return 1
    from .catalogue import CatalogueError, Query, run_catalogue

    query = Query(
        listing=args.listing,
        vendor=args.vendor,
        host=args.host,
        url=args.url,
        cookie=args.cookie,
        category=args.category,
        page_host=args.page_host,
    )
    try:
        return run_catalogue(config, query, as_json=args.json, out=sys.stdout)
    except CatalogueError as exc:
        return _fail(f"catalogue: {exc}", 2)
    except BrokenPipeError:
        # The reader (`| head`) is gone: stop quietly, and keep the exit-time flush quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "explain": _cmd_explain,
    "explain-consent": _cmd_explain_consent,
    "serve": _cmd_serve,
    "demo": _cmd_demo,
    "check-config": _cmd_check_config,
    "catalogue": _cmd_catalogue,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tag-gate` console script; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
