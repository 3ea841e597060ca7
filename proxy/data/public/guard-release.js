/* tag-gate runtime guard: consent changes and release without reload, served at
 * /__tag-gate/guard-release.js.
 *
 * guard.js loads this the first time a consent cookie's string changes or a
 * `tag-gate:consent` event comes (it is not needed before, so the guard's install does
 * not carry it); from then on this reads the consent: the `tg_consent` cookie
 * (category names joined by "." or "," "|", percent-encoding tolerated, metadata after
 * the first "~"; two different copies grant nothing), compared with its value when the
 * page loaded (`__tagGateGuard.c`, read by guard.js's `read`), or the event's `detail`;
 * when the cookie of a consent manager the server reads changed instead, the server's
 * reading of the cookies (/__tag-gate/guard-table). A withdrawal applies to the guard's
 * next decision. When more is granted it re-creates
 * what is now granted, in document order: blocked scripts
 * (the guard's, in `__tagGateGuard.T`, and every element the HTML gate deferred in
 * tag-gate's convention, `[data-tg-category]`, in this document, its same-origin
 * frames, open shadow roots and the closed ones the guard saw attached). A new script
 * gets the original attributes back (never a clone: a cloned script counts as already
 * started) and `el.nonce`; classic scripts run one after the other (the next waits for
 * load or error), each exactly once, and the page's load/error listeners on the old
 * element hear the outcome. Placeholders become their embed; frames, embeds, objects
 * and other elements get their fetching attributes back in place (the page's code, or
 * the framework that rendered one, keeps a node that is in the document), and so does
 * what waits in a template's
 * inert contents (the document's templates and those whose markup the guard changed,
 * `T` again), so that copies the page stamps from it later load. DOMContentLoaded and
 * load are not dispatched again; dropped network calls are not replayed.
 */
(() => {
  "use strict";
  const G = window.__tagGateGuard;
  if (!G || G.release) return;
  const CAT = "data-tg-category",
    T = G.T;
  let busy = 0,
    again = 0;
  // Returns true when `next` will be called (an external script: after load or error).
  const recreate = (el, next) => {
      const doc = el.ownerDocument,
        n = doc.createElementNS(el.namespaceURI, el.localName),
        script = el.localName == "script";
      for (const { name, value } of [...el.attributes]) {
        const k = name.startsWith("data-tg-") ? name.slice(8) : script && name == "type" ? "" : name;
        if (k && !/^(category|vendor|import|rules)$/.test(k)) n.setAttribute(k, value);
      }
      if (el.nonce) n.nonce = el.nonce;
      // a script Partytown runs in its worker: the browser never loads it (no load or
      // error to wait for); Partytown looks for new ones on "ptupdate"
      const worker = script && /^[\t\n\f\r ]*text\/partytown[\t\n\f\r ]*$/i.test(n.getAttribute("type"));
      const wait = script && n.hasAttribute("src") && !worker;
      if (script && !wait) n.textContent = el.textContent;
      if (wait) {
        let done = 0;
        const go = (e) => {
          if (done++) return;
          // the page's own load/error listeners are on the old element
          if (e) el.dispatchEvent(new Event(e.type));
          next();
        };
        n.addEventListener("load", go);
        n.addEventListener("error", go);
        setTimeout(go, 1e4);
      }
      if (el.parentNode) el.parentNode.replaceChild(n, el);
      else (doc.head || doc.documentElement).appendChild(n);
      if (worker && doc.defaultView) doc.defaultView.dispatchEvent(new CustomEvent("ptupdate"));
      return wait;
    },
    // What waits for release in a document or shadow root, its same-origin frames, its
    // open shadow roots and its templates' contents, in document order.
    collect = (root, list) => {
      list.push(...root.querySelectorAll("[" + CAT + "]"));
      for (const el of root.querySelectorAll("*")) {
        if (el.shadowRoot) collect(el.shadowRoot, list);
        if (el.localName == "iframe" && el.contentDocument) collect(el.contentDocument, list);
        if (el.localName == "template") collect(el.content, list);
      }
      return list;
    },
    release = () => {
      if (busy) return (again = 1);
      busy = 1;
      const ok = new Set(G.granted()),
        list = collect(document, []);
      // closed shadow roots, which the guard kept as they were attached (after the
      // document's, so not in document order)
      for (const w of G.closed || []) {
        const root = w.deref();
        if (root) collect(root, list);
      }
      let i = 0;
      // the guard's: blocked scripts and frames, and templates it changed (which the
      // page may hold in its code only)
      for (const el of T) if (el.localName == "template") collect(el.content, list);
      for (const el of T) if (!list.includes(el)) list.push(el);
      const step = () => {
        while (i < list.length) {
          const el = list[i++];
          if (!ok.has(el.getAttribute(CAT))) continue;
          T.splice(T.indexOf(el) >>> 0, 1);
          if (el.hasAttribute("data-tg-placeholder")) {
            const tp = el.querySelector("template");
            if (tp && el.parentNode) el.parentNode.replaceChild(tp.content.cloneNode(true), el);
          } else if (el.localName == "script" && el.ownerDocument.defaultView) {
            if (G.t(recreate, el, step)) return;
          } else {
            // in place: a frame, embed, object or image (it loads when its URL is back;
            // a framework that rendered it, React, holds this node and removes it
            // later: a new one in its place made React's removal throw and the app
            // vanish), or what sits in a template's inert contents, where nothing loads
            // or runs (copies stamped from it later do, each once)
            if (el.localName == "script" && !el.hasAttribute("data-tg-type")) el.removeAttribute("type");
            for (const { name, value } of [...el.attributes])
              if (name.startsWith("data-tg-")) {
                el.removeAttribute(name);
                if (!/^data-tg-(category|vendor|import|rules)$/.test(name)) el.setAttribute(name.slice(8), value);
              }
          }
        }
        busy = 0;
        if (again) release((again = 0));
      };
      step();
    };
  G.release = () => G.t(release);

  // ------------------------------------------------------------------ consent
  const R = G.tab(),
    parse = (v) => {
      const g = Object.create(null);
      g.essential = 1;
      if (!v.map) {
        if (/\n/.test(v)) return g;
        try {
          v = decodeURIComponent(v.replace(/^"(.*)"$/, "$1").split("~")[0]).split(/[.,|]/);
        } catch (e) {
          return g;
        }
      }
      for (let c of v) if (!R.final[(c = c.trim().toLowerCase())]) g[c] = 1;
      return g;
    },
    // the lines of G.read() that are (own) or are not the native cookie's
    lines = (x, own) =>
      x
        .split("\n")
        .filter((l) => l.startsWith(R.cookie + "=") == own)
        .join("\n"),
    sync = (e) => {
      const d = e && e.detail,
        raw = G.read();
      if (d || raw != last) {
        const cmp = !d && lines(raw, false) != lines(last, false);
        last = raw;
        if (cmp) return server();
        const g = parse(d && (d.map || typeof d == "string") ? d : lines(raw, true).replace(/^[^=]*=/gm, "")),
          was = G.granted();
        G.grant(g);
        if (Object.keys(g).some((c) => !was.includes(c))) G.release();
        ask();
      }
    },
    // A consent manager's cookie changed: the server reads the consent from the cookies
    // as it does for a page and answers with the table of it, whose `granted` is the
    // page's consent from then on (only the latest question's answer is taken).
    server = () => {
      const n = ++asks;
      fetchTable("").then((x) => x && n == asks && G.t(adopt, x));
    },
    // A table whose `granted` is the page's consent from now on.
    adopt = (x) => {
      const was = G.granted();
      G.load(x);
      const g = G.tab().granted;
      G.grant(g);
      if (Object.keys(g).some((c) => !was.includes(c))) G.release();
    },
    // A withdrawn category that was granted when the page loaded has no rules in the
    // page's table (it carries the refused categories' only): the table for the consent
    // now is fetched and replaces it (none again for a consent already asked for: one
    // that failed is not retried until the consent changes).
    now = () => G.granted().filter((c) => c != "essential").sort().join("."),
    ask = () => {
      const q = now();
      if (asked == q || !Object.keys(G.tab().granted).some((c) => !G.granted().includes(c))) return;
      asked = q;
      fetchTable("?g=" + encodeURIComponent(q))
        .then((x) => x && now() == q && G.load(x))
        .finally(() => G.t(ask));
    },
    // The table for a consent from /__tag-gate/guard-table ("" when it cannot be had).
    fetchTable = (query) =>
      fetch(location.origin + "/__tag-gate/guard-table" + query, { cache: "no-store", credentials: "same-origin" })
        .then((r) => (r.ok ? r.text() : ""))
        .catch(() => "");
  let last = G.c || "",
    asked = null,
    asks = 0;
  G.s = (e) => G.t(sync, e);
  for (const e of G.q.splice(0)) G.s(e);
})();
