"""The runtime guard's cost: code size, rule-table weight and build time, and install
time in Chromium measured with performance marks.

    python bench/guard_bench.py --runs 15
    python bench/guard_bench.py --runs 25 --compare HEAD~1   # side by side with a revision
    python bench/guard_bench.py --runs 7 --dom               # what it adds to DOM work

Install time is read in the page: a mark in a script just before the guard's (so the
figure includes parsing and compiling it), a mark as the guard script's first statement
and one after the guard returns; medians over fresh browser contexts. Long tasks are
listed with a buffered PerformanceObserver. The page's first decision, which parses and
indexes the rule table, is marked in guard/decision.html; it and the install are also
read from a Chromium trace (`traced_loads`). Nothing here is asserted: the figures are
printed, for the README and reviews.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.core.config import make_policy
from proxy.core.consent import consent_cookie_names, read_consent
from proxy.html.guard import GuardRules, decode_table, guard_sizes
from proxy.html.guard_code import RULES_PLACEHOLDER, load_guard_source, minify_js

CONSENTS = ("", "analytics", "analytics.social", "functional.analytics.social")

INTERFACES = (
    "Function HTMLScriptElement HTMLImageElement HTMLSourceElement HTMLIFrameElement HTMLFrameElement"
    " HTMLEmbedElement HTMLObjectElement HTMLLinkElement HTMLMediaElement HTMLVideoElement HTMLTrackElement"
    " HTMLInputElement Attr Element Node Document CharacterData Range ShadowRoot Navigator XMLHttpRequest"
    " WebSocket EventSource Worker SharedWorker NamedNodeMap Audio FontFace HTMLBodyElement Worklet SVGAnimatedString"
    " DocumentFragment HTMLTableElement HTMLBaseElement HTMLAnchorElement HTMLAreaElement HTMLElement"
    " WebSocketStream WebTransport Cache"
).split()
"""The interfaces whose prototypes (or constructors) the guard's install touches."""


def table_figures() -> None:
    policy = make_policy(None)
    print("rule tables for the built-in catalogue (page host 'www.shop.example'):")
    print("| consent | vendors | bytes | gzip | first build | memoised |")
    print("| --- | --- | --- | --- | --- | --- |")
    guard = GuardRules(policy, cmp_cookies=consent_cookie_names())  # as tag-gate serve makes it
    for granted in CONSENTS:
        consent = read_consent(f"tg_consent={granted}" if granted else None, None)
        t0 = time.perf_counter()
        text = guard.rules_json(consent, "www.shop.example")
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(1000):
            guard.rules_json(consent, "www.shop.example")
        again = (time.perf_counter() - t0) / 1000
        vendors = len(decode_table(json.loads(text))[0])
        print(
            f"| {granted or 'none'} | {vendors} | {len(text):,} | {len(gzip.compress(text.encode(), 9)):,} |"
            f" {first * 1000:.2f} ms | {again * 1e6:.1f} µs |"
        )


_MARKS = """() => { const t = n => performance.getEntriesByName(n)[0].startTime;
                  const end = t("tg-guard-end");
                  return [end - t("tg-guard-0"), end - t("tg-guard-run")]; }"""
"""In the page: [parse + compile + run, run only] of the guard, from its marks."""


def shipped_halves(source: str) -> tuple[str, str]:
    """A guard.js source as the script builder ships it: minified, split at the rule
    table's placeholder."""
    before, _, after = minify_js(source).partition(RULES_PLACEHOLDER)
    return before, after


TRACED = (
    "run",
    "run cpu",
    "again run",
    "again run cpu",
    "decision",
    "decision cpu",
    "again decision",
    "again decision cpu",
)
"""What `traced_loads` measures: the guard's run on a first and a second page, and the
page's first decision on a first and a second page, each on the trace's microsecond
clock and as the main thread's CPU time."""


async def traced_loads(world: Any, query: str) -> dict[str, float]:
    """The same performance marks read from a Chromium trace (category
    blink.user_timing): each mark there has a microsecond timestamp (`ts`) and the main
    thread's CPU clock (`tts`), so a span is known to the microsecond and apart from the
    time the thread waited or was preempted, which on a loaded two-core machine is much
    of the wall-clock figure. Keys: `TRACED`; a decision missing when the guard's own
    first task had built the table first."""
    install = world.url(world.site.port, "guard/install.html") + query
    decision = world.url(world.site.port, "guard/decision.html") + query.replace("marks=1", "guard=1")
    valid: list[bool] = []
    async with world.tab() as tab:
        browser = tab.page.context.browser
        await browser.start_tracing(page=tab.page, categories=["blink.user_timing"])
        try:
            await tab.page.goto(install, wait_until="load")
            await tab.page.goto(install + "&again=1", wait_until="load")
            for url in (decision, decision + "&again=1"):
                await tab.page.goto(url, wait_until="load")
                valid.append(await tab.page.evaluate("() => window.tgDecisionFirst"))
        finally:
            events = json.loads(await browser.stop_tracing())["traceEvents"]
    marks: dict[str, list[dict[str, Any]]] = {}
    for e in sorted(events, key=lambda e: e.get("ts", 0)):
        if e.get("cat") == "blink.user_timing" and e.get("name", "").startswith(("tg-guard-", "tg-decide-")):
            marks.setdefault(e["name"], []).append(e)
    out: dict[str, float] = {}

    def span(key: str, start: str, end: str, i: int) -> None:
        a, b = marks[start][i], marks[end][i]
        out[key] = (b["ts"] - a["ts"]) / 1000
        out[key + " cpu"] = (b["tts"] - a["tts"]) / 1000

    span("run", "tg-guard-run", "tg-guard-end", 0)
    span("again run", "tg-guard-run", "tg-guard-end", 1)
    for i, key in enumerate(("decision", "again decision")):
        if valid[i]:
            span(key, "tg-decide-0", "tg-decide-1", i)
    return out


async def open_world(what: str) -> Any:
    """tests/e2e's world (site and Chromium) started, the site's "default" guard policy
    the built-in one; None, said, when Chromium is not installed."""
    from tests.e2e.world import World, find_chromium

    chromium = find_chromium()
    if chromium is None:
        print(f"chromium is not installed: {what} not measured")
        return None
    world = World(chromium)
    await world.start()
    world.site.guard_policies["default"] = make_policy(None)
    return world


async def install_figures(runs: int) -> None:
    world = await open_world("install time")
    if world is None:
        return
    try:
        script = GuardRules(world.site.guard_policies["default"], cmp_cookies=consent_cookie_names()).script(
            read_consent(None, None), None
        )
        total: list[float] = []
        run: list[float] = []
        realm: list[float] = []
        touch: list[float] = []
        probe: list[float] = []
        warm: list[float] = []
        hooks: list[float] = []
        again: list[list[float]] = []
        traced: dict[str, list[float]] = {k: [] for k in TRACED}
        long_tasks = 0
        for i in range(runs):
            consent = CONSENTS[i % 2]
            query = "?marks=1" + (f"&consent={consent}" if consent else "")
            async with world.tab() as tab:
                await tab.page.goto(world.url(world.site.port, "guard/install.html") + query, wait_until="load")
                m = await tab.page.evaluate(
                    """() => new Promise(done => {
                        const t = n => performance.getEntriesByName(n)[0].startTime;
                        const out = {total: t("tg-guard-end") - t("tg-guard-0"),
                                     run: t("tg-guard-end") - t("tg-guard-run"), long: 0};
                        try {
                          new PerformanceObserver(l => { out.long = l.getEntries().length; })
                            .observe({type: "longtask", buffered: true});
                        } catch (e) {}
                        setTimeout(() => done(out), 50);
                    })"""
                )
            # The same page without the guard, whose first script only reads the
            # interfaces the guard touches (tests/e2e/pages/guard/probe.html).
            async with world.tab() as tab:
                await tab.page.goto(world.url(world.site.port, "guard/probe.html") + "?guard=0", wait_until="load")
                probe.append(
                    await tab.page.evaluate(
                        """() => { const t = n => performance.getEntriesByName(n)[0].startTime;
                                   return t("tg-probe-end") - t("tg-probe-run"); }"""
                    )
                )
                # install() alone into fresh same-origin realms: 80 frames made before the
                # guard runs on this page (made after, the guard's markup and insertion
                # hooks install it at once), then the guard; many realms per page, so the
                # browser's coarse timer (100 µs steps without cross-origin isolation)
                # averages out. window.frames[i] does not go through a hooked getter.
                await tab.page.evaluate(
                    """() => document.body.insertAdjacentHTML("beforeend", "<iframe></iframe>".repeat(80))"""
                )
                await tab.page.evaluate(script)
                realms = await tab.page.evaluate(
                    """() => {
                        const t0 = performance.now();
                        for (let i = 0; i < 40; i++) __tagGateGuard.i(window.frames[i]);
                        return (performance.now() - t0) / 40;
                    }"""
                )
                # The same in two steps, in the other 40: first only reading the
                # interfaces' prototypes (Blink creates interface objects lazily, at
                # first use), then install() into that realm: the hooks alone.
                split = await tab.page.evaluate(
                    """names => {
                        let touch = 0, hooks = 0;
                        for (let i = 40; i < 80; i++) {
                          const w = window.frames[i];
                          let t0 = performance.now();
                          for (const n of names) { const c = w[n]; if (c) c.prototype; }
                          touch += performance.now() - t0;
                          t0 = performance.now();
                          __tagGateGuard.i(w);
                          hooks += performance.now() - t0;
                        }
                        return [touch / 40, hooks / 40];
                    }""",
                    list(INTERFACES),
                )
            # The guard again, on a page whose interfaces an init script (run before any
            # of the page's scripts) already created: the guard's own run.
            async with world.tab() as tab:
                await tab.page.add_init_script(
                    script=f"for (const n of {list(INTERFACES)!r}) {{ const c = window[n]; if (c) c.prototype; }}"
                )
                await tab.page.goto(world.url(world.site.port, "guard/install.html") + query, wait_until="load")
                warm.append(
                    await tab.page.evaluate(
                        """() => { const t = n => performance.getEntriesByName(n)[0].startTime;
                                   return t("tg-guard-end") - t("tg-guard-run"); }"""
                    )
                )
            # A second page of the site in the same tab: the renderer process is the same,
            # so Blink's interface templates exist already (what every page after a
            # visitor's first costs).
            async with world.tab() as tab:
                url = world.url(world.site.port, "guard/install.html") + query
                await tab.page.goto(url, wait_until="load")
                await tab.page.goto(url + "&again=1", wait_until="load")
                again.append(await tab.page.evaluate(_MARKS))
            for key, value in (await traced_loads(world, query)).items():
                traced[key].append(value)
            total.append(m["total"])
            run.append(m["run"])
            realm.append(realms)
            touch.append(split[0])
            hooks.append(split[1])
            long_tasks += m["long"]
        print(f"install in Chromium over {runs} page loads (consent none / analytics alternating):")
        print(f"  parse + compile + run: median {statistics.median(total):.3f} ms, max {max(total):.3f} ms")
        print(f"  run only:              median {statistics.median(run):.3f} ms, max {max(run):.3f} ms")
        print(
            "  install() into a fresh realm (hooks only, mean of 40 per page):"
            f" median {statistics.median(realm):.3f} ms"
        )
        print(
            f"  of which, in other fresh realms: reading the {len(INTERFACES)} interfaces' prototypes"
            f" median {statistics.median(touch):.3f} ms, then install() (the hooks alone)"
            f" median {statistics.median(hooks):.3f} ms"
        )
        print(
            f"  probe page (no guard), its first script reading the same {len(INTERFACES)} interfaces:"
            f" median {statistics.median(probe):.3f} ms"
        )
        print(
            f"  run only, the interfaces created beforehand by an init script: median {statistics.median(warm):.3f} ms"
        )
        print(
            "  a second page of the site in the same tab (same renderer process):"
            f" parse + compile + run median {statistics.median(a[0] for a in again):.3f} ms,"
            f" run only median {statistics.median(a[1] for a in again):.3f} ms"
        )
        print(f"  long tasks on those pages: {long_tasks}")
        print("the same marks read from a trace (microsecond clock; the main thread's CPU time), medians in ms:")
        print("| span | first page | CPU | second page | CPU |")
        print("| --- | --- | --- | --- | --- |")
        for label, key in (("the guard's run", "run"), ("the page's first decision", "decision")):
            row = [traced[key], traced[key + " cpu"], traced["again " + key], traced["again " + key + " cpu"]]
            print(f"| {label} | " + " | ".join(f"{statistics.median(v):.3f}" if v else "-" for v in row) + " |")
        print(f"  (load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    finally:
        await world.stop()


PHASES = (
    ("  const within = ", "top", "the first declarations (document.currentScript, Element.prototype, ...)"),
    ("  install(W);", "defs", "the other declarations"),
    ('        each("Function:toString"', "realm", "install(): Node.prototype, realm bookkeeping"),
    ('        each("Attr:value"', "setters", "Function.prototype.toString and the element URL setters"),
    ('        each("Element:innerHTML', "insert", "Attr, setAttribute(NS), the insertion methods"),
    ('        each(":fetch"', "markup", "the markup methods, document.write, contentWindow"),
    ('  D.addEventListener("tag-gate:consent"', "net", "fetch, sendBeacon, XHR, WebSocket, EventSource, workers"),
)
"""Where `--phases` puts a performance mark (before the line starting with the text),
its name, and what runs between it and the mark before."""


async def phase_figures(runs: int) -> None:
    """The guard's run in the main window split by performance marks written into a copy
    of guard.js (marks inside install() only for the page's own window)."""
    import proxy.html.guard as guard_module

    lines = load_guard_source().split("\n")
    for anchor, name, _ in PHASES:
        i = next(i for i, line in enumerate(lines) if line.startswith(anchor))
        inside = anchor.startswith("        ")
        lines.insert(i, ("        if (w == W) " if inside else "  ") + f'performance.mark("tg-phase-{name}");')
    code = shipped_halves("\n".join(lines))
    patched: Any = guard_module  # the script builder reads the code through this name
    patched.split_guard_code = lambda: code
    world = await open_world("phases")
    if world is None:
        return
    names = ["tg-guard-run", *(f"tg-phase-{name}" for _, name, _ in PHASES), "tg-guard-end"]
    spans: list[list[float]] = [[] for _ in names[1:]]
    try:
        for _ in range(runs):
            async with world.tab() as tab:
                await tab.page.goto(world.url(world.site.port, "guard/install.html") + "?marks=1", wait_until="load")
                marks = await tab.page.evaluate(
                    "names => names.map(n => performance.getEntriesByName(n)[0].startTime)", names
                )
            for i, (a, b) in enumerate(zip(marks, marks[1:], strict=False)):
                spans[i].append(b - a)
    finally:
        await world.stop()
    print(f"the guard's run in the main window by phase (medians of {runs} page loads):")
    labels = [what for _, _, what in PHASES] + ["after install(): listeners, the consent timer"]
    for label, values in zip(labels, spans, strict=True):
        print(f"  {statistics.median(values):6.3f} ms  {label}")
    print(f"  (load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


async def compare_figures(runs: int, rev: str) -> None:
    """This checkout's guard and guard.js of git revision `rev` (minified by this
    checkout's minifier), loaded alternately in fresh contexts of one browser, first
    one then the other in each run: install time of a first page and of a second page
    in the same tab, with the same marks as `install_figures`."""
    import subprocess

    import proxy.html.guard as guard_module

    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{rev}:proxy/data/public/guard.js"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    reference = shipped_halves(source)
    world = await open_world("install time")
    if world is None:
        return
    names = {"this checkout": "default", rev: "reference"}
    keys = ("total", "run", "again", "again run")
    traced: dict[str, dict[str, list[float]]] = {n: {k: [] for k in TRACED} for n in names}
    figures: dict[str, dict[str, list[float]]] = {n: {k: [] for k in keys} for n in names}
    try:
        world.site.guard_policies["reference"] = make_policy(None)
        # The reference policy's scripts are built (and memoised per consent) with the
        # reference code; the pages ask for them by `policy=reference`.
        patched: Any = guard_module
        own = patched.split_guard_code
        patched.split_guard_code = lambda: reference
        try:
            guard = guard_module.make_guard(world.site.guard_policies["reference"])
            for granted in CONSENTS[:2]:
                guard.script(read_consent(f"tg_consent={granted}" if granted else None, None), None)
        finally:
            patched.split_guard_code = own
        for i in range(runs):
            consent = CONSENTS[i % 2]
            for name, policy in names.items() if i % 4 < 2 else reversed(names.items()):
                query = f"?marks=1&policy={policy}" + (f"&consent={consent}" if consent else "")
                url = world.url(world.site.port, "guard/install.html") + query
                async with world.tab() as tab:
                    await tab.page.goto(url, wait_until="load")
                    first = await tab.page.evaluate(_MARKS)
                    await tab.page.goto(url + "&again=1", wait_until="load")
                    second = await tab.page.evaluate(_MARKS)
                f = figures[name]
                f["total"].append(first[0])
                f["run"].append(first[1])
                f["again"].append(second[0])
                f["again run"].append(second[1])
                for key, value in (await traced_loads(world, query)).items():
                    traced[name][key].append(value)
    finally:
        await world.stop()
    print(f"install in Chromium, {runs} runs, the two guards alternating (medians, ms):")
    print("| guard | parse + compile + run | run only | second page: parse + compile + run | run only |")
    print("| --- | --- | --- | --- | --- |")
    for name, f in figures.items():
        print(f"| {name} | " + " | ".join(f"{statistics.median(f[k]):.3f}" for k in f) + " |")
    print("the same marks read from a trace (microsecond clock; the main thread's CPU time), medians in ms:")
    print("| guard | run | CPU | second page: run | CPU | first decision | CPU | second page: first decision | CPU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, f in traced.items():
        print(f"| {name} | " + " | ".join(f"{statistics.median(f[k]):.3f}" if f[k] else "-" for k in TRACED) + " |")
    print(f"  (load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


DOM_OPS = """n => {
    const out = {},
      time = (name, f) => {
        const t0 = performance.now();
        f();
        out[name] = ((performance.now() - t0) / n) * 1000;
      };
    const ul = document.createElement("ul");
    document.body.appendChild(ul);
    time("createElement, className, classList, id (not hooked)", () => {
      for (let i = 0; i < n; i++) {
        const d = document.createElement("div");
        d.className = "a" + (i & 7);
        d.classList.add("b");
        d.id = "x" + i;
      }
    });
    time("createElement, textContent, appendChild of a leaf", () => {
      for (let i = 0; i < n; i++) {
        const li = document.createElement("li");
        li.textContent = "item " + i;
        ul.appendChild(li);
      }
    });
    time("setAttribute of a data- attribute", () => {
      for (let i = 0; i < n; i++) ul.firstChild.setAttribute("data-i", i);
    });
    time("img.src of a first-party URL", () => {
      for (let i = 0; i < n; i++) document.createElement("img").src = "/img/" + (i & 63) + ".png";
    });
    time("innerHTML of a small fragment", () => {
      for (let i = 0; i < n; i++) document.createElement("div").innerHTML = '<b class="x">hi</b><i>there</i>';
    });
    time("innerHTML of a fragment with links", () => {
      for (let i = 0; i < n; i++)
        document.createElement("div").innerHTML = '<ul><li><a href="/a">a</a></li><li><a href="/b">b</a></li></ul>';
    });
    time("innerHTML of a fragment with an image", () => {
      for (let i = 0; i < n; i++) document.createElement("div").innerHTML = '<p><img src="/i.png" alt=""> hi</p>';
    });
    // as a framework renders: children made and put into their parent before it goes
    // into its own (3 levels of 3 divs per level, 6 deep, an <a> in each leaf: 1,822
    // nodes a tree), then the tree into the document; µs per node
    const build = (depth) => {
      const el = document.createElement(depth ? "div" : "li");
      if (!depth) {
        const a = document.createElement("a");
        a.href = "/p/" + depth;
        a.textContent = "x";
        el.appendChild(a);
      } else for (let k = 0; k < 3; k++) el.appendChild(build(depth - 1));
      return el;
    };
    time("a tree built bottom-up, then inserted (per node)", () => {
      for (let made = 0; made < n; made += 1822) {
        const tree = build(6);
        document.body.appendChild(tree);
        tree.remove();
      }
    });
    return out;
}"""
"""In the page: µs per operation of common DOM work, n times each (warm)."""


async def dom_figures(runs: int) -> None:
    """What the guard adds to the page's own DOM work: the same operations in a page
    with the guard and without it (install.html, `guard=0`), alternating."""
    world = await open_world("DOM work")
    if world is None:
        return
    figures: dict[str, dict[str, list[float]]] = {"with": {}, "without": {}}
    try:
        for _ in range(runs):
            for name, query in (("with", ""), ("without", "?guard=0")):
                async with world.tab() as tab:
                    await tab.page.goto(world.url(world.site.port, "guard/install.html") + query, wait_until="load")
                    await tab.page.evaluate(DOM_OPS, 2_000)  # a first pass: the loops compiled, the heap grown
                    for op, value in (await tab.page.evaluate(DOM_OPS, 20_000)).items():
                        figures[name].setdefault(op, []).append(value)
    finally:
        await world.stop()
    print(f"the page's own DOM work, µs per operation (medians of {runs} page loads, 20,000 each, warm):")
    print("| operation | without the guard | with the guard |")
    print("| --- | --- | --- |")
    for op, values in figures["without"].items():
        print(f"| {op} | {statistics.median(values):.2f} | {statistics.median(figures['with'][op]):.2f} |")
    print(f"  (load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--phases", action="store_true", help="only: the main-window run split by phase")
    parser.add_argument("--compare", metavar="REV", help="only: install time beside guard.js of git revision REV")
    parser.add_argument("--dom", action="store_true", help="only: the page's own DOM work with and without the guard")
    args = parser.parse_args()
    if args.dom:
        asyncio.run(dom_figures(args.runs))
        return
    if args.compare:
        asyncio.run(compare_figures(args.runs, args.compare))
        return
    if args.phases:
        asyncio.run(phase_figures(args.runs))
        return
    sizes = guard_sizes()
    print(
        f"guard.js: source {sizes['source']:,} bytes; compact {sizes['compact']:,} bytes,"
        f" {sizes['compact_gzip']:,} gzip; minified (what ships) {sizes['minified']:,} bytes,"
        f" {sizes['minified_gzip']:,} gzip (level 9)"
    )
    table_figures()
    if args.runs > 0:
        asyncio.run(install_figures(args.runs))


if __name__ == "__main__":
    main()
