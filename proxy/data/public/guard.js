/* tag-gate runtime guard.
 *
 * tag-gate inserts this script, with its rule table, as the first child of <head> of a
 * gated page whose visitor refused something (proxy/http/stages.py `runtime_guard`;
 * proxy/html/guard.py builds the table). The HTML gate already removed the refused tags
 * the page was sent with; this stops the ones JavaScript adds later (a tag manager
 * injecting a pixel, `new Image().src`, fetch/sendBeacon/XHR/WebSocket beacons, SPA
 * iframes, document.write), deciding each URL as the server does (Policy.decide_url:
 * operator rules, then the catalogue's URL prefixes and host suffixes, then first
 * party, then the unknown-host default).
 *
 * Contract:
 * - Installs synchronously; hooks are Proxies of the originals on prototypes (kept
 *   configurable) and on the insertion and markup methods, in this window and in every
 *   same-origin frame the page reaches (contentWindow/contentDocument, srcdoc, a frame
 *   it inserts). The install does nothing else: the table is parsed and indexed at the
 *   first decision, the consent cookie first read in a task of its own.
 * - Only URLs of refused categories are touched: same-origin, first-party and unknown
 *   hosts go through unless a rule of the table says otherwise.
 * - A blocked element acts like one a blocker stopped: no request, an async `error`
 *   event; a script stays inert at its place in tag-gate's deferral convention
 *   (type="text/plain" data-tg-category data-tg-vendor data-tg-src [data-tg-type]).
 *   fetch rejects with a TypeError, XHR fails like a network error, sendBeacon returns
 *   true, WebSocket/EventSource fail with `error` (and `close`), Worker/SharedWorker
 *   throw a SecurityError as a Content-Security-Policy would.
 * - Any error of its own lets the page's call proceed and counts __tagGateGuard.errors;
 *   the first of a page's is reported to /__tag-gate/guard-errors (tag_gate_guard_errors).
 * - Consent changes: when the consent cookie changes (or a `tag-gate:consent` event
 *   comes), the guard loads /__tag-gate/guard-release.js once (with its own nonce),
 *   which from then on reads the consent cookie: a withdrawal applies to the next
 *   request; what is granted is released: the blocked scripts and frames re-created in
 *   document order (classic scripts one after the other), each once. Network calls that
 *   were dropped stay dropped.
 *
 * Arguments: the window and the rule table as a JSON text, indexed by the server
 * (proxy/html/guard.py, version 3: {cookie, granted: {category: 1}, final: {category:
 * 1}, firstParty: {host: 1}, unknown, vendors: [[category, "id,host host,host ..."]],
 * urls: {host suffix: [[path prefix, vendor index, query parameter, value regex
 * source, path regex source]], longest prefix first}, rules: [[{host suffix: 1} | 0,
 * [path prefix] | 0, [regex, flags] | 0, vendor | 0, 0 (keep) | 1 (the vendor's
 * category) | "category"]], page: the page's host, or null for location.hostname}).
 * A JSON text in a string literal costs Chromium a quarter of what the same object
 * literal costs to compile.
 *
 * Short names: G the public object, R the table, W/D window/document, O Object, F
 * Reflect, ok the granted categories, A element -> fetching attributes, T blocked
 * scripts and frames. guard_code.py compacts this file (comments and blank space out);
 * keep `}` and `)` from preceding a division, which it would read as a regular
 * expression.
 */
((W, R) => {
  "use strict";
  if (W.__tagGateGuard) return;
  const D = W.document,
    me = D.currentScript,
    O = Object,
    F = Reflect,
    EP = Element.prototype,
    SA = EP.setAttribute,
    RA = EP.removeAttribute,
    IH = O.getOwnPropertyDescriptor(EP, "innerHTML"),
    CAT = "data-tg-category",
    NONCE = (me && me.nonce) || "",
    T = [],
    G = (W.__tagGateGuard = { errors: 0, blocked: [], T, closed: [] }),
    // Runs f (with at most four arguments: no rest array to allocate on every hooked
    // call); an exception of the guard's own is counted and gives undefined. The first
    // of a page's sends tag-gate, a second later, how many came by then and its name
    // (proxy/http/guard_errors.py): each let a call of the page's through unchecked.
    t = (function (f, a, b, c, d) {
      try {
        return f(a, b, c, d);
      } catch (e) {
        if (!G.errors++) setTimeout(oops, 1000, e);
      }
    }),
    oops = (e) => {
      try {
        navigator.sendBeacon(location.origin + "/__tag-gate/guard-errors", G.errors + " " + ((e && e.name) || "Error"));
      } catch (x) {}
    };
  let ok,
    off = 0,
    PAGE,
    RULES,
    A,
    SEL,
    WHO,
    NAMED,
    TT,
    RQ,
    AB;

  // ------------------------------------------------------------------ deciding

  // The table, parsed at the first decision (not while the page waits); its maps lose
  // their prototype, so a host named "constructor" is only a host. No for-of, no
  // destructuring and no per-host string work: this runs once per page, mostly in the
  // interpreter, and V8's Sparkplug compile of it costs by its bytecode size.
  const table = () => {
    if (PAGE) return;
    R = JSON.parse(R);
    PAGE = R.page || location.hostname;
    [R.granted, R.final, R.firstParty, R.urls].forEach((x) => O.setPrototypeOf(x, null));
    R.cmp = (R.cmp || "").split(" "); // the other consent cookies' names, for `read`
    ok = ok || R.granted;
    // Vendors per category, "id,host,host" or "host,host" (the id is the host's
    // second-to-last label), a host ending "~" for ".com" (guard.py `_index`), kept as
    // one string, " word word ... ", searched for a host at a lookup (`listed`): an
    // index of every host, built here, was 0.4 ms of a page's first decision. R.at:
    // where each category's words start, and the category.
    R.S = " ";
    R.at = [];
    R.V = 0;
    R.L = new Map(); // host as written -> what `listed` found
    R.vendors.forEach((v) => R.at.push(R.S.length, v[0]) && (R.S += v[1] + " "));
    RULES = [];
    A = O.create(null);
    SEL = [];
    for (const h in R.urls) R.urls[h].forEach((e) => ((e[3] = e[3] && RegExp(e[3], "s")), (e[4] = e[4] && RegExp(e[4], "s"))));
    R.rules.forEach((r) => t(() => RULES.push([r[0] && O.setPrototypeOf(r[0], null), r[1], r[2] && RegExp(r[2][0], r[2][1]), r[3], r[4]])));
    // The attributes that make each element fetch something (proxy/html/fetching.py
    // reads the same in markup: SVG hrefs, SMIL values, attributionsrc, background), and
    // a <base> href, which sends the relative URLs of the page (those already set too)
    // to its host.
    "script:src,href,attributionsrc img:src,srcset,attributionsrc image:href feImage:href use:href set:to,from,by,values animate:to,from,by,values source:src,srcset iframe:src,srcdoc frame:src embed:src object:data link:href,imagesrcset video:src,poster audio:src track:src input:src a:ping,attributionsrc area:ping,attributionsrc body:background table:background thead:background tbody:background tfoot:background tr:background td:background th:background col:background colgroup:background base:href".split(" ").forEach((e) => {
      e = e.split(":");
      A[e[0]] = e[1].split(",");
      SEL.push(e[0]);
    });
    SEL.push("template");
  };

  // Whether h or a parent domain of it is in `s`.
  const within = (h, s) => {
      for (let i = 0; i >= 0; i = h.indexOf(".") + 1 || -1, h = h.slice(i)) if (s[h]) return 1;
    },
    under = (p, x) => p.startsWith(x) && (x.endsWith("/") || !p[x.length] || p[x.length] == "/"),
    // [id, category] of the vendor whose word starts at offset b of R.S.
    word = (b) => {
      let c,
        k = 0;
      const h = R.S.slice(b, R.S.indexOf(" ", b)).split(",")[0].replace(/~$/, ".com");
      for (; k < R.at.length && R.at[k] <= b; k += 2) c = R.at[k + 1];
      return [h.includes(".") ? h.split(".").at(-2) : h, c];
    },
    // [id, category] of vendor i (its place in reading order; where each word starts is
    // found once, when a URL entry first names one).
    vendor = (i) => {
      if (!R.V) for (let b = 1, V = (R.V = []); b < R.S.length; b = R.S.indexOf(" ", b) + 1) V.push(b);
      return word(R.V[i]);
    },
    // [id, category] of the vendor a host as written ("~" for ".com") is listed under,
    // the last one when there are several (as an index by host would keep): the host's
    // first field of a word only when it is a host (has a dot, or "~").
    listed = (k) => {
      let s = R.S,
        v = R.L.get(k);
      if (v === undefined) {
        for (let i = s.lastIndexOf(k), p, e; !v && i > 0; i = s.lastIndexOf(k, i - 1))
          if (((e = s[i + k.length]) == " " || e == ",") && ((p = s[i - 1]) == "," || (p == " " && /[.~]/.test(k)))) v = word(s.lastIndexOf(" ", i) + 1);
        if (R.L.size > 999) R.L.clear();
        R.L.set(k, (v = v || 0));
      }
      return v;
    },
    // Catalog._lookup: at each suffix from the longest, URL prefixes, then the host (a
    // host with "~" is none of the table's).
    lookup = (h, path, query) => {
      if (!h.includes("~"))
        for (let i = 0; i >= 0; i = h.indexOf(".") + 1 || -1, h = h.slice(i)) {
          for (const e of R.urls[h] || []) if ((e[4] ? e[4].test(path) : under(path, e[0])) && (!e[3] || query.getAll(e[2]).some((x) => e[3].test(x)))) return vendor(e[1]);
          const v = listed(h.replace(/\.com$/, "~"));
          if (v) return v;
        }
    },
    memo = new Map(),
    // [category, vendor] for a URL as the page wrote it, or null: Policy._classify_url.
    classify = (raw) => {
      table();
      // remembered by the base URL and the text (a relative URL's host is the base's)
      const s = String(raw).trim(),
        key = D.baseURI + " " + s;
      let out = memo.get(key);
      if (out !== undefined) return out;
      const abs = /^([a-z][a-z\d+.-]*:|[\\/]{2})/i.test(s.replace(/^[\x00-\x20]+|[\t\n\r]/g, ""));
      let u;
      out = 0;
      try {
        u = new URL(s, D.baseURI);
      } catch (e) {}
      if (s && u && /^https?:$/.test(u.protocol)) {
        const host = u.hostname.replace(/\.+$/, ""),
          path = u.pathname,
          // relative: the page's own (no vendor), unless a <base> sends it elsewhere
          rel = !abs && host == PAGE,
          v = !rel && lookup(host.replace(/^\.+/, ""), path, u.searchParams);
        out = v ? [v[1], v[0]] : rel || host == PAGE || within(host, R.firstParty) || !R.unknown ? 0 : [R.unknown, ""];
        for (const r of RULES)
          if (!((r[0] && !within(host, r[0])) || (r[1] && !r[1].some((p) => path.startsWith(p))) || (r[2] && !r[2].test(s)) || (r[3] && !(v && v[0] == r[3])))) {
            const c = r[4] === 1 ? v && v[1] : r[4];
            out = c && [c, v ? v[0] : ""];
            break;
          }
      }
      if (memo.size > 999) memo.clear();
      memo.set(key, (out = out || 0));
      return out;
    },
    decide = (raw) => {
      const c = !off && classify(raw);
      return c && c[0] != "essential" && !ok[c[0]] ? c : 0;
    },
    // a connection's URL: a WebSocket's ws:/wss: reads as its http:/https: twin
    link = (u) => decide(String(u).replace(/^(\s*)ws/i, "$1http"));

  // ------------------------------------------------------------------ blocking

  const RELEASED = /^(script|i?frame|embed|object)$/,
    // Scripts that markup made (innerHTML and its kin) never run: the parser marks them
    // started, so a URL set on one later fetches nothing. It is let through, as the page
    // sets it, and never released (React makes its scripts so).
    INERT = new WeakSet(),
    // what was blocked, for tag-gate explain and the tests (the first 500)
    note = (d, v) => G.blocked.length < 500 && G.blocked.push(d[0] + " " + v),
    block = (el, name, v, d) => {
      const tag = el.localName;
      if (tag == "script" && !el.hasAttribute(CAT)) {
        if (el.hasAttribute("type")) SA.call(el, "data-tg-type", el.getAttribute("type"));
        SA.call(el, "type", "text/plain");
      }
      SA.call(el, "data-tg-" + name, v);
      SA.call(el, CAT, d[0]);
      if (d[1]) SA.call(el, "data-tg-vendor", d[1]);
      RA.call(el, name);
      note(d, v);
      if (el.ownerDocument.defaultView) {
        // not inert markup: remember for release, and fail like a blocked load
        if (RELEASED.test(tag) && !T.includes(el)) T.push(el);
        setTimeout(() => el.dispatchEvent(new Event("error")));
      }
    },
    // undefined: let the value through; true: blocked; a string: use it instead.
    check = (el, name, v) => {
      table();
      const names = A[el && el.localName];
      // a hooked setter's name is already one of them; another is normalised first
      if (off || !names || INERT.has(el) || !(names.includes(name) || names.includes((name = String(name).toLowerCase().replace(/^xlink:/, ""))))) return;
      if (name == "srcdoc") return srcdoc(v, el);
      const d = /set|ping|values|attr/.test(name) ? String(v).split(/[\s,;]+/).map(decide).find((x) => x) : decide(v);
      if (d) return block(el, name, v, d) || true;
    },
    // Checks an element or fragment about to be inserted or adopted and what is in it
    // (`runs`: its scripts will run), unless it is in this window's tree already (a node
    // of a document without a window, DOMParser's, is checked); returns how many it
    // changed.
    scan = (n, runs) => {
      let changed = 0,
        i;
      if (n && (n.nodeType == 1 || n.nodeType == 11) && !(n.isConnected && n.ownerDocument.defaultView)) {
        table();
        for (const el of n.firstElementChild ? [n, ...n.querySelectorAll(SEL)] : [n])
          if (A[el.localName] && (runs || el.localName != "script")) {
            for (const k of A[el.localName]) {
              const v = el.getAttribute(k),
                r = v != null && check(el, k, v);
              if (r) changed++;
              if (typeof r == "string") SA.call(el, k, r);
            }
            if (el.localName == "script" && !el.hasAttribute("src") && !el.hasAttribute(CAT) && (i = inline(el, el.textContent))) {
              changed++;
              if (typeof i == "string") el.textContent = i;
            }
          } else if (el.localName == "template") changed += scan(el.content, runs); // a declarative shadow root's too
      }
      return changed;
    },
    // An inline script's text checked before it runs: an import map's comes back with
    // its refused addresses replaced (a string); speculation rules that prefetch or
    // prerender a refused URL, or code that imports a refused module, make the script
    // inert (1); undefined: nothing to change.
    inline = (el, text) => {
      const k = /^[\t\n\f\r ]*(importmap|speculationrules)[\t\n\f\r ]*$/i.exec(el.getAttribute("type"));
      if (k && k[1].toLowerCase() == "importmap") return maps(text);
      const i = k ? rules(text) : imports(text);
      if (i) return block(el, k ? "rules" : "import", i[0], i[1]) || 1;
    },
    // The first refused URL of speculation rules' lists (the HTML gate empties such
    // rules in markup; a document rule's links are the page's, each checked already).
    rules = (text) => {
      let m, d;
      try {
        m = JSON.parse(text);
      } catch (e) {
        return;
      }
      for (const k of ["prefetch", "prerender", "prefetch_with_subresources"])
        for (const r of m && Array.isArray(m[k]) ? m[k] : []) for (const u of r && Array.isArray(r.urls) ? r.urls : []) if (typeof u == "string" && (d = decide(u))) return [u, d];
    },
    // The first refused module an inline script's code names by an absolute URL
    // (import "url", import x from "url", export ... from "url", import("url")), with
    // its decision.
    imports = (code) => {
      for (let re = /\b(?:import|from)\s*\(?\s*(['"`])((?:https?:)?\/\/[^'"`\s]+)\1/g, m, d; (m = re.exec(code)); ) if ((d = decide(m[2]))) return [m[2], d];
    },
    // An import map's text with each address of a refused vendor pointed at tag-gate's
    // empty module (a prefix at a prefix), or nothing when none is: the page's modules
    // that import it still run (the HTML gate does the same in markup).
    maps = (text) => {
      let m,
        n = 0;
      const fix = (o) => {
        if (o && typeof o == "object")
          for (const k in o) {
            const d = typeof o[k] == "string" && decide(o[k]);
            if (d) note(d, o[k]), (o[k] = location.origin + "/__tag-gate/blocked" + (k.endsWith("/") ? "/" : ".js")), n++;
          }
      };
      try {
        m = JSON.parse(text);
      } catch (e) {
        return;
      }
      if (m && typeof m == "object") {
        fix(m.imports);
        for (const s in m.scopes && typeof m.scopes == "object" ? m.scopes : {}) fix(m.scopes[s]);
      }
      if (n) return JSON.stringify(m);
    },
    // Text that arrives in a script of the page that has none yet runs at once (as text
    // set or inserted into it): it is checked as `scan` checks a script inserted with
    // its text, before; an import map's arrives with its refused addresses replaced (in
    // `a`, the page's call's arguments from i: what goes in, strings and nodes).
    code = (p, a, i = 0) => {
      let x;
      if (p && p.localName == "script" && p.isConnected && !p.textContent && !p.hasAttribute("src") && !p.hasAttribute(CAT))
        if (typeof (x = inline(p, a.slice(i).map((n) => (n && typeof n == "object" ? n.textContent : n)).join(""))) == "string")
          for (; i < a.length; i++)
            if (typeof a[i] == "string") (a[i] = x), (x = "");
            else if (a[i] && a[i].nodeType) (a[i].textContent = x), (x = "");
    },
    // A same-origin frame the page inserted (an iframe, or an object or embed showing a
    // document) gets the hooks at once, and one that loaded later as it loads: code may
    // reach it through window.frames, not only contentWindow. An embed has no other way
    // in: its window's frames are visited (cross-origin ones are left at once).
    frames = (n) => {
      if (n && n.nodeType == 1 && n.isConnected)
        for (const f of /^(iframe|object|embed)$/.test(n.localName) ? [n] : n.firstElementChild ? n.querySelectorAll("iframe,object,embed") : [])
          if (f.localName != "embed") f.contentWindow && install(f.contentWindow);
          else for (let w = f.ownerDocument.defaultView, i = 0; w && i < w.length; i++) install(w[i]);
    },
    // f for each of the nodes a page's call inserts.
    all = (f, a) => {
      for (let i = 0; i < a.length; i++) f(a[i], 1);
    },
    // Whether markup must be parsed and checked (`scan`): it holds a script, or it names
    // an attribute, has a start tag of an element that fetches by it (each tag looked for
    // once), and gives it a value that is refused or that is not read here exactly as the
    // parser reads it (a character reference, a NUL; a srcdoc's markup). Markup of links,
    // or of first-party images, goes to the page's call untouched, parsed once.
    risky = (m) => {
      if (/<script/i.test(m)) return 1;
      // Per attribute, the start tags of the elements that fetch by it (the parser makes
      // an HTML <image> an <img>). NAMED finds every place markup may name one of those
      // attributes (after whatever may end the token before an attribute name, not
      // consumed, so adjacent ones are found too) and its value as the parser reads it:
      // quoted, or up to HTML whitespace or ">". Made at the first markup to check.
      if (!NAMED) {
        WHO = O.create(null);
        for (const tag in A) A[tag].forEach((a) => (WHO[a] = (WHO[a] ? WHO[a] + "|" : "") + (tag == "img" ? "img|image" : tag)));
        for (const a in WHO) WHO[a] = RegExp("<(" + WHO[a] + ")[\\s/>]", "i");
        NAMED = RegExp("(?<=[\\s\"'/:])(" + O.keys(WHO).join("|") + ")[\\t\\n\\f\\r ]*=[\\t\\n\\f\\r ]*(?:\"([^\"]*)\"|'([^']*)'|([^\\t\\n\\f\\r >]*))", "gi");
      }
      const seen = O.create(null);
      for (const x of m.matchAll(NAMED)) {
        const a = x[1].toLowerCase(),
          v = x[2] ?? x[3] ?? x[4];
        if ((seen[a] || (seen[a] = WHO[a].test(m) ? 2 : 1)) > 1 && (a == "srcdoc" || /[&\0]/.test(v) || (/set|ping|values|attr/.test(a) ? v.split(/[\s,;]+/) : [v]).some(decide))) return 1;
      }
    },
    // Markup is parsed in an inert <template> first; only when something must change is
    // the checked serialisation used instead of the page's string. Raw-text contexts
    // (a script's code) and TrustedHTML are left alone.
    markup = (m, ctx, runs) => {
      if (typeof m != "string" || !m.includes("<") || (ctx && /^(script|style|textarea|title|xmp|iframe|noembed|noframes|noscript|plaintext)$/.test(ctx.localName)) || (table(), !risky(m))) return;
      const tp = D.createElement("template"),
        svg = ctx && ctx.namespaceURI == "http://www.w3.org/2000/svg";
      IH.set.call(tp, svg ? "<svg>" + m : m);
      const root = svg ? tp.content.firstElementChild : tp.content;
      // A <body> start tag written into a document puts its attributes on the body (a
      // template drops them): read as a document's, and when one is refused the markup
      // goes in without that tag (as the checked serialisation).
      if (scan(root, runs) + (!ctx && runs && /<body[\s/>]/i.test(m) && scan(new DOMParser().parseFromString(m, "text/html").body, 0))) return IH.get.call(svg ? root : tp);
    },
    // A srcdoc document installs the guard in itself before its own scripts run (when
    // it may run scripts and reach its parent: no sandbox, or one allowing both, its
    // tokens in any order and between any blank space, a newline too). Under a nonce
    // policy only when the markup holds the nonce already (its own scripts): in an
    // attribute's value the nonce is not hidden, CSS could read it out of the page. Once:
    // a page's srcdoc read back (or checked again as the frame goes in) keeps one line.
    srcdoc = (v, el) => {
      if (typeof v != "string") return;
      const box = el.getAttribute("sandbox"),
        line = "<script" + (NONCE && ' nonce="' + NONCE.replace(/[^\w+/=-]/g, "") + '"') + ">try{parent.__tagGateGuard.i(window)}catch(e){}<\/script>",
        add = (box == null || (/allow-scripts/.test(box) && /allow-same-origin/.test(box))) && v.includes(NONCE) && !v.startsWith(line),
        m = markup(v, null, 1);
      if (add || m) return (add ? line : "") + (m || v);
    };

  // ------------------------------------------------------------------ hooks

  // What install() runs is written as parenthesised `function` expressions: V8 compiles
  // those with the script, in the one parse it makes anyway; an arrow is only preparsed
  // then and parsed again at its first call (guard_bench.py: the install ran 0.5 to 0.8
  // ms faster so). Everything else stays lazy: it is compiled when a page first needs it.
  const P = new WeakMap(), // hook -> original, for Function.prototype.toString
    // On o, k's descriptor (or that of `from`, which o inherits) with its function `acc`
    // ("value", "set", "get") replaced by a Proxy with `trap`.
    hook = (function (o, k, trap, acc, from) {
      const d = o && O.getOwnPropertyDescriptor(from || o, k),
        f = d && d[acc || "value"];
      if (typeof f != "function" || P.has(f)) return;
      const p = new Proxy(f, trap);
      P.set(p, f);
      d[acc || "value"] = p;
      O.defineProperty(o, k, d);
    }),
    // Argument i of a page's call (`a`, changed in place) made a string once, when it is
    // an object: the check and the page's call then read the same text (an object's
    // toString could answer each differently, and markup that is not a string would
    // pass the checks unread). Trusted Types objects stay themselves: their text cannot
    // change, and where a page enforces them a string would be refused. An exception of
    // the page's toString reaches the page, as from its own call.
    arg = (a, i) => {
      let v = a[i];
      if (v && (typeof v == "object" || typeof v == "function")) {
        if (!TT) {
          TT = [];
          for (const k of ["HTML", "Script", "ScriptURL"])
            try {
              TT.push(W["Trusted" + k].prototype.toString);
            } catch (e) {}
        }
        if (!TT.some((s) => is(s, v))) a[i] = v = String(v);
      }
      return v;
    },
    // Whether x is what getter g reads (a brand check: g throws for anything else).
    is = (g, x) => {
      try {
        return F.apply(g, x, []), 1;
      } catch (e) {}
    },
    // fetch's URL (argument i): a Request's, or the argument made a string once
    req = (a, i = 0) => {
      try {
        return F.apply(RQ || (RQ = O.getOwnPropertyDescriptor(W.Request.prototype, "url").get), a[i], []);
      } catch (e) {
        return arg(a, i);
      }
    },
    // The page's call with argument i replaced by r (a string), or nothing (r true).
    through = (r, f, self, a, i) => {
      if (r === true) return;
      if (r != null) (a = [...a])[i] = r;
      return F.apply(f, self, a);
    },
    // Markup methods: the markup checked, then the frames it made get the hooks (code
    // may reach them as window.frames[i] at once), and the scripts it made are INERT. A
    // <template> whose markup had something blocked is kept for release (a page may hold
    // it in its code only, and stamp copies of its contents after consent).
    html = (f, self, a, i, runs, ctx = self) => {
      arg(a, i);
      t(code, ctx, a, i);
      const m = t(markup, a[i], ctx, runs),
        old = !runs && ctx && typeof a[i] == "string" && /<script/i.test(a[i]) && t(() => new Set(ctx.querySelectorAll("script"))),
        r = through(m, f, self, a, i);
      if (old) t(() => ctx.querySelectorAll("script").forEach((s) => old.has(s) || INERT.add(s)));
      if (m && ctx && ctx.localName == "template" && !T.includes(ctx)) T.push(ctx);
      t(frames, ctx || self.documentElement);
      return r;
    },
    ev = (x, type, E) => x.dispatchEvent(new E(type)),
    // setAttributeNode(NS), setNamedItem(NS): the Attr checked against the element it
    // joins, before; nothing joins (null: none replaced) when it is blocked.
    attach = (f, self, el, a) => {
      const at = a[0],
        r = el && at && t(check, el, at.localName, at.value);
      if (r === true) return null;
      if (typeof r == "string") at.value = r;
      return F.apply(f, self, a);
    },
    // The element of a NamedNodeMap: its first attribute's, or, when it has none, found
    // with a probe attribute added and removed again.
    owner = (set, m) => {
      if (m.length) return m[0].ownerElement;
      const p = D.createAttribute("data-tg-probe");
      F.apply(set, m, [p]);
      const el = p.ownerElement;
      RA.call(el, "data-tg-probe");
      return el;
    },
    // One trap per kind of hook, shared by every interface and realm (those that need
    // the realm's own constructors are made per realm).
    H = {},
    trap = (function (k, apply) {
      return H[k] || (H[k] = { apply });
    }),
    // A setter of a fetching property: the trap knows the attribute by the property.
    setter = (function (k) {
      return trap(k, (f, el, a) => through(t(check, el, k, arg(a, 0)), f, el, a, 0));
    }),
    // Nodes inserted into an element of a tree outside the document (a framework
    // building its DOM bottom-up): nothing of this document fetches or runs there until
    // the tree's root goes in, which checks the whole tree once; nodes of another
    // document (adopted as they go in, an image fetching then) are checked as they come.
    inserted = trap("+", (f, self, a) => {
      const d = self && self.nodeType == 1 && !self.isConnected && t(() => self.getRootNode().nodeType == 1 && self.ownerDocument);
      if (d) {
        for (let i = 0; i < a.length; i++) if (a[i] && a[i].ownerDocument != d) t(scan, a[i], 1);
        return F.apply(f, self, a);
      }
      if (t(quick, f, self, a)) return F.apply(f, self, a);
      t(all, scan, a);
      t(code, self.localName == "script" ? self : self.parentNode, a);
      const r = F.apply(f, self, a);
      t(all, frames, a);
      return r;
    }),
    // One node (the reference node of insertBefore and replaceChild is in the tree
    // already) that is no element (text, a string), or an element without elements in
    // it that fetches nothing and is no template (`A`, once the table is read), put in
    // where no script is: `scan`, `code` and `frames` would find nothing to do.
    quick = (f, self, a) => {
      const n = a[0],
        p = self.parentNode;
      return (
        A &&
        (a.length == 1 || (a.length == 2 && (f.name == "insertBefore" || f.name == "replaceChild"))) &&
        (!n || (n.nodeType != 1 && n.nodeType != 11) || (!A[n.localName] && n.localName != "template" && !n.firstElementChild)) &&
        self.localName != "script" &&
        !(p && p.localName == "script")
      );
    },
    realms = new WeakSet(),
    install = (function (w) {
      let N;
      try {
        N = w.Node.prototype; // throws for a cross-origin window
      } catch (e) {
        return;
      }
      if (realms.has(N)) return;
      realms.add(N);
      w.__tagGateGuard = G;
      w.document.addEventListener("load", (e) => t(frames, e.target), true);
      t((function () {
        // "Interface:name,name ...", "-Name" for HTMLNameElement, ":name,name" on the
        // window itself. Indexed loops and no
        // destructuring keep its bytecode small: V8 queues each function the install
        // calls often (this, hook, trap, setter) for a Sparkplug compile, and compiles
        // the queue inside the install once their estimated code passes 4 KB. A for-of
        // with destructuring made this one 4.2 KB alone, which put that compile (0.3 to
        // 0.6 ms on the main thread) into every first page's install.
        const each = (function (spec, h, acc, from) {
          spec = spec.split(" ");
          for (let i = 0; i < spec.length; i++) {
            const e = spec[i].split(":"),
              c = e[0],
              names = e[1].split(","),
              o = c ? (w[c[0] == "-" ? "HTML" + c.slice(1) + "Element" : c] || {}).prototype : w;
            for (let j = 0; j < names.length; j++) hook(o, names[j], h || setter(names[j].toLowerCase()), acc, from);
          }
        });
        each("Function:toString", trap("s", (f, self, a) => F.apply(f, P.get(self) || self, a)));
        each("-Script:src,attributionSrc -Image:src,srcset,attributionSrc -Source:src,srcset -IFrame:src,srcdoc -Frame:src -Embed:src -Object:data -Link:href,imageSrcset -Media:src -Video:poster -Track:src -Input:src -Body:background -Base:href -Anchor:ping,attributionSrc -Area:ping,attributionSrc", 0, "set");
        each("Attr:value", trap("v", (f, at, a) => through(t(check, at.ownerElement, at.localName, arg(a, 0)), f, at, a, 0)), "set");
        // an Attr's nodeValue and textContent set its value too (Node's setters, hooked
        // on Attr alone)
        each("Attr:nodeValue,textContent", H.v, "set", w.Node.prototype);
        each("Element:setAttributeNode,setAttributeNodeNS", trap("d", (f, el, a) => attach(f, el, el, a)));
        each("NamedNodeMap:setNamedItem,setNamedItemNS", trap("m", (f, m, a) => attach(f, m, t(owner, f, m), a)));
        each("Element:setAttribute", trap("a", (f, el, a) => through(t(check, el, arg(a, 0), arg(a, 1)), f, el, a, 1)));
        // the attribute's local name: an XLink href under any prefix is an href
        each("Element:setAttributeNS", trap("n", (f, el, a) => through(t(check, el, String(arg(a, 1)).replace(/.*:/, ""), arg(a, 2)), f, el, a, 2)));
        each("Node:appendChild,insertBefore,replaceChild Element:append,prepend,replaceChildren,before,after,replaceWith,insertAdjacentElement Document:append,prepend,replaceChildren DocumentFragment:append,prepend,replaceChildren CharacterData:before,after,replaceWith Range:insertNode,surroundContents", inserted);
        // setters that put an element in: the document's body, a table's caption, head, foot
        each("Document:body -Table:caption,tHead,tFoot", inserted, "set");
        // a script's code set as text, or text put in next to an element
        const S = (w.HTMLScriptElement || {}).prototype;
        each("-Script:text", trap("q", (f, el, a) => (arg(a, 0), t(code, el, a), F.apply(f, el, a))), "set");
        hook(S, "textContent", H.q, "set", w.Node.prototype);
        hook(S, "innerText", H.q, "set", w.HTMLElement.prototype);
        each("Element:insertAdjacentText", trap("l", (f, el, a) => (arg(a, 1), t(code, /^(afterbegin|beforeend)$/i.test(arg(a, 0)) ? el : el.parentNode, a, 1), F.apply(f, el, a))));
        // a node another document made (DOMParser, createHTMLDocument) fetches once it is
        // this document's: checked as it is adopted or cloned in
        each("Document:adoptNode,importNode", trap("i", (f, d, a) => (t(scan, a[0], 1), F.apply(f, d, a))));
        each("Element:innerHTML ShadowRoot:innerHTML", trap("h", (f, el, a) => html(f, el, a, 0)), "set");
        each("Element:setHTMLUnsafe,setHTML ShadowRoot:setHTMLUnsafe,setHTML", H.h);
        hook(w.Document, "parseHTMLUnsafe", trap("p", (f, d, a) => html(f, d, a, 0, 0, null)));
        each("Element:outerHTML", trap("o", (f, el, a) => html(f, el, a, 0, 0, el.parentNode)), "set");
        each("Element:insertAdjacentHTML", trap("j", (f, el, a) => html(f, el, a, 1, 0, /^(beforebegin|afterend)$/i.test(arg(a, 0)) ? el.parentNode : el)));
        each("Range:createContextualFragment", trap("r", (f, r, a) => html(f, r, a, 0, 1, null)));
        // several pieces are checked as the one text the browser writes, and go in as
        // they came unless something in them is refused (a Trusted Types object stays one)
        each(
          "Document:write,writeln",
          trap("w", (f, d, a) => {
            if (a.length < 2) return html(f, d, a, 0, 1, null);
            for (let i = 0; i < a.length; i++) arg(a, i);
            const m = t(markup, a.join(""), null, 1),
              r = F.apply(f, d, m ? [m] : a);
            t(frames, d.documentElement);
            return r;
          })
        );
        // an editable region's insertHTML and insertImage
        each("Document:execCommand", trap("x", (f, d, a) => (/^inserthtml$/i.test(arg(a, 0)) ? html(f, d, a, 2, 0, null) : /^insertimage$/i.test(a[0]) && t(decide, arg(a, 2)) ? false : F.apply(f, d, a))));
        // an SVG href set through its SVGAnimatedString, which does not say whose it
        // is (className, target and filter names are ones too): a refused URL is not
        // set, and nothing else happens
        each(
          "SVGAnimatedString:baseVal",
          trap("g", (f, s, a) => {
            const d = t(decide, arg(a, 0));
            return d ? note(d, a[0]) : F.apply(f, s, a);
          }),
          "set"
        );
        // A closed shadow root, which the release could not reach: kept for it, weakly
        // (dead ones dropped once there are 500).
        each(
          "Element:attachShadow",
          trap("z", (f, el, a) => {
            const r = F.apply(f, el, a);
            if (r.mode == "closed" && G.closed.push(new WeakRef(r)) > 499) G.closed = G.closed.filter((x) => x.deref());
            return r;
          })
        );
        // Code reaching into a same-origin frame gets a guarded realm (a cross-origin
        // frame's window, which allows no other property, is left at its first one).
        each(
          "-IFrame:contentWindow,contentDocument -Object:contentWindow,contentDocument",
          trap("c", (f, el, a) => {
            const r = F.apply(f, el, a);
            if (r) install(/Doc/.test(f.name) ? r.defaultView : r);
            return r;
          }),
          "get"
        );
        each(":fetch", { apply: (f, self, a) => (t(decide, req(a)) ? w.Promise.reject(new w.TypeError("Failed to fetch")) : F.apply(f, self, a)) });
        // a worklet's module (CSS paint, audio)
        each("Worklet:addModule", trap("k", (f, wk, a) => (t(decide, arg(a, 0)) ? w.Promise.reject(new w.DOMException("Unable to load a worklet's module.", "AbortError")) : F.apply(f, wk, a))));
        each("Navigator:sendBeacon", trap("b", (f, n, a) => (t(decide, arg(a, 0)) ? true : F.apply(f, n, a))));
        // a deferred fetch that will never be sent
        each(":fetchLater", { apply: (f, self, a) => (t(decide, req(a)) ? { activated: false } : F.apply(f, self, a)) });
        // a font face whose source names a refused URL fails to load, as CSP would make it
        each(":FontFace", {
          construct: (C, a, nt) => {
            // a source that is no string nor binary font data is read as text once
            if (a[1] && typeof a[1] == "object" && !ArrayBuffer.isView(a[1]) && !is(AB || (AB = O.getOwnPropertyDescriptor(ArrayBuffer.prototype, "byteLength").get), a[1])) arg(a, 1);
            if (typeof a[1] == "string" && t(() => [...a[1].matchAll(/url\(\s*(['"]?)(.*?)\1\s*\)/gi)].some((m) => decide(m[2])))) (a = [...a])[1] = "local(tg-blocked)";
            return F.construct(C, a, nt);
          },
        });
        // new Audio(url) sets its src inside the constructor
        each(":Audio", {
          construct: (C, a, nt) => {
            const d = a.length && t(decide, arg(a, 0));
            if (!d) return F.construct(C, a, nt);
            const el = F.construct(C, [], nt);
            t(block, el, "src", a[0], d);
            return el;
          },
        });
        // A blocked XMLHttpRequest ends as after a network error: readyState 4, status 0.
        const xhr = new WeakMap();
        each("XMLHttpRequest:open", {
          apply: (f, x, a) => {
            const u = arg(a, 1);
            t(() => xhr.set(x, decide(u) && [a[2] === false], delete x.readyState));
            return F.apply(f, x, a);
          },
        });
        each("XMLHttpRequest:send", {
          apply: (f, x, a) => {
            const b = xhr.get(x);
            if (!b) return F.apply(f, x, a);
            if (b[0]) throw new w.DOMException("Failed to load", "NetworkError");
            ev(x, "loadstart", w.ProgressEvent);
            setTimeout(() => {
              O.defineProperty(x, "readyState", { value: 4, configurable: true });
              ev(x, "readystatechange", w.Event);
              ev(x, "error", w.ProgressEvent);
              ev(x, "loadend", w.ProgressEvent);
            });
          },
        });
        const ctor = {
          construct: (C, a, nt) => {
            if (!t(link, arg(a, 0))) return F.construct(C, a, nt);
            if (!C.CLOSED) throw new w.DOMException("Refused to load " + a[0], "SecurityError");
            // A WebSocket or EventSource that could not connect: error (and close) soon.
            const x = O.setPrototypeOf(new w.EventTarget(), nt.prototype),
              base = { readyState: 0, bufferedAmount: 0, binaryType: "blob", withCredentials: false, url: new URL(a[0], D.baseURI).href },
              emit = (e) => {
                x.dispatchEvent(e);
                if (x["on" + e.type]) x["on" + e.type](e);
              };
            for (const [k, d] of O.entries(O.getOwnPropertyDescriptors(C.prototype)))
              if (d.get || (k != "constructor" && d.value.call))
                O.defineProperty(x, k, { value: !d.get ? () => {} : k in base ? base[k] : /^on/.test(k) ? null : "", writable: true, configurable: true });
            setTimeout(() => {
              x.readyState = C.CLOSED;
              emit(new w.Event("error"));
              if (C.OPEN == 1) emit(new w.CloseEvent("close", { code: 1006 }));
            });
            return x;
          },
        };
        each(":WebSocket,EventSource,Worker,SharedWorker", ctor);
        // A WebSocketStream or WebTransport that could not connect: its promises
        // rejected (handled, so nothing is logged unless the page logs it), its methods
        // doing nothing but failing.
        each(":WebSocketStream,WebTransport", {
          construct: (C, a, nt) => {
            if (!t(link, arg(a, 0))) return F.construct(C, a, nt);
            const E = w[C.name.replace("Stream", "") + "Error"] || w.TypeError,
              no = (p) => (p = w.Promise.reject(new E())).catch(Boolean) && p,
              x = O.create(nt.prototype);
            for (const [k, d] of O.entries(O.getOwnPropertyDescriptors(C.prototype)))
              if (k != "constructor")
                O.defineProperty(x, k, { value: d.get ? (/^(opened|closed|ready|draining)$/.test(k) ? no() : k == "url" ? new URL(a[0], D.baseURI).href : null) : k == "close" ? () => {} : no, configurable: true });
            return x;
          },
        });
        // the Cache API fetches what it adds (a list all or nothing)
        each("Cache:add,addAll", {
          apply: (f, c, a) => {
            const l = f.name != "addAll" ? a : a[0] && typeof a[0] == "object" && Symbol.iterator in a[0] && (a = [[...a[0]]])[0];
            return l && l.map((r, i) => req(l, i)).some((u) => t(decide, u)) ? w.Promise.reject(new w.TypeError("Failed to fetch")) : F.apply(f, c, a);
          },
        });
        // a popup the page opens at about:blank is a same-origin realm of its own
        each(":open", { apply: (f, self, a) => { const r = F.apply(f, self, a); t(install, r); return r; } });
      }));
    });

  // ------------------------------------------------------------------ consent

  // Consent changes are read by guard-release.js, loaded once (with the nonce) the first
  // time a consent cookie differs from the page's or a tag-gate:consent event comes; it applies a withdrawal at once and releases what is granted. The cookie as
  // the page loaded is read in a task of its own: the first document.cookie of a page
  // is a synchronous round trip to the browser process.
  // `read`: the consent cookies' copies ("name=value"), one a line: the native cookie's
  // and those of the consent managers the server reads (R.cmp).
  const read = () => (table(), D.cookie.split(/;\s*/).filter((kv) => kv.startsWith(R.cookie + "=") || R.cmp.includes(kv.split("=")[0])).join("\n")),
    late = (e) => {
      if (G.s) return G.s(e);
      if (!e && (G.c == null || read() == G.c)) return;
      if (G.q.push(e) > 1) return;
      const s = D.createElement("script");
      s.src = location.origin + "/__tag-gate/guard-release.js";
      if (NONCE) s.nonce = NONCE;
      (D.head || D.documentElement).appendChild(s);
    };

  install(W);
  D.addEventListener("tag-gate:consent", (e) => G.sync(e));
  setTimeout(() => {
    t(() => (G.c = read()));
    if (W.cookieStore) W.cookieStore.addEventListener("change", () => t(late));
    setInterval(() => t(late), 500);
  });
  O.assign(G, {
    i: install,
    // guard-frames.js, after each frame of the markup and first in a srcdoc document:
    // the window it runs in and its frames (a cross-origin one is left alone); its
    // script element leaves the document
    f: (w, s) => {
      if (s) s.remove();
      install(w);
      for (let i = 0; i < w.length; i++) install(w[i]);
    },
    decide,
    t,
    q: [],
    // activate.js hands its releases over to the guard when this exists
    sync: (e) => t(late, e),
    // the table and the granted categories, for guard-release.js
    tab: () => (table(), R),
    read,
    grant: (g) => (ok = g),
    // a table for the consent the page has now (guard-release.js fetches it when a
    // category granted at load is withdrawn): read at the next decision
    load: (x) => ((R = x), (PAGE = 0), memo.clear()),
    // Runs f with the guard off (tag-gate's own "load this embed" button).
    pass: (f) => {
      off++;
      try {
        return f();
      } finally {
        off--;
      }
    },
    granted: () => (table(), O.keys(ok)),
  });
})(window, "__TG_RULES__");
