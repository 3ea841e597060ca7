/* tag-gate consent banner and preferences centre, served at /__tag-gate/banner.js.
 *
 * For sites that run no consent manager. The server puts the per-site, per-language
 * configuration at the end of the page (format: proxy/core/banner/page.py,
 * make_banner_config) and loads this script with `async`, so it blocks neither parsing
 * nor DOMContentLoaded; the UI is built after the page's next frame, so the page
 * paints first:
 *   <script type="application/json" id="tag-gate-banner-config">{...}</script>
 *   <script src="/__tag-gate/banner.js" async nonce="..."></script>
 *
 * The UI lives in an open shadow root on a <tag-gate-banner> element: site styles do
 * not reach it and its styles (a constructed stylesheet, which CSP does not govern,
 * else a <style> with the script's nonce) do not leak out. It is a modal <dialog>:
 * focus moves in and comes back, Tab cycles inside, Escape closes without deciding.
 * No innerHTML anywhere: texts are set as text.
 *
 * A choice is written to tg_consent as
 *   <granted categories joined by ".">~<policy version>~<unix seconds>~<consent id>
 * (the id is random, kept across later changes of mind), then announced with the
 * `tag-gate:consent` event and window.tagGate.activate() (activate.js), so deferred
 * tags run without a reload, and POSTed to the consent endpoint (its failure never
 * matters to the page). Withdrawing a category reloads the page when configured, so
 * tags that already run stop and the next response expires their cookies.
 *
 * It reopens from its "Cookie preferences" button, any link whose href ends with
 * #tag-gate-preferences, elements matching the configured selector or carrying
 * data-tag-gate-preferences, and window.tagGateBanner.open().
 */
(function () {
  "use strict";
  var D = document;
  var source = D.getElementById("tag-gate-banner-config");
  if (!source || window.__tagGateBanner) return;
  window.__tagGateBanner = true;
  var cfg;
  try { cfg = JSON.parse(source.textContent || ""); } catch (e) { return; }
  if (!cfg || cfg.version !== 1 || !Array.isArray(cfg.purposes) || !cfg.texts) return;

  var T = cfg.texts;
  var COOKIE = (cfg.cookie && cfg.cookie.name) || "__TG_COOKIE__";
  var MAX_AGE = (cfg.cookie && cfg.cookie.max_age) || 34128000;
  var POLICY = cfg.policy_version | 0;
  var ID_RE = /^[A-Za-z0-9_-]{16,24}$/;
  var NONCE = (D.currentScript && D.currentScript.nonce) || "";
  var OPENERS = 'a[href$="#tag-gate-preferences"],[data-tag-gate-preferences]';
  if (cfg.reopen_selector) {
    try { D.querySelector(cfg.reopen_selector); OPENERS += "," + cfg.reopen_selector; } catch (e) { /* not a selector */ }
  }
  var CATEGORIES = [];
  cfg.purposes.forEach(function (p) {
    if (!p.required) p.categories.forEach(function (c) { if (CATEGORIES.indexOf(c) < 0) CATEGORIES.push(c); });
  });

  var CSS = [
    ":host{all:initial}",
    "*,*::before,*::after{box-sizing:border-box}",
    "dialog,.reopen{font:400 16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;",
    "color:#1a1a1a;letter-spacing:normal;word-spacing:normal;text-transform:none;text-align:start;text-indent:0}",
    "dialog{padding:0;border:0;border-radius:12px;background:#fff;box-shadow:0 8px 32px rgba(0,0,0,.35);",
    "width:min(44rem,calc(100% - 2rem));max-width:none;max-height:calc(100% - 2rem);overflow:hidden}",
    "dialog.banner{margin:auto auto 1rem}",
    "dialog::backdrop{background:rgba(0,0,0,.4)}",
    ".frame{display:flex;flex-direction:column;max-height:calc(100vh - 2rem)}",
    ".scroll{overflow:auto;padding:1.25rem 1.5rem .25rem}",
    ".head{display:flex;align-items:flex-start;justify-content:space-between;gap:1rem}",
    "h2{margin:0 0 .5rem;font-size:1.25rem;line-height:1.3;font-weight:700}",
    "h2:focus{outline:none}",
    "p{margin:0 0 .75rem}",
    "ul{margin:0;padding:0;list-style:none}",
    ".actions{display:flex;flex-wrap:wrap;gap:.75rem;padding:1rem 1.5rem 1.25rem;border-top:1px solid #d4d4d8}",
    ".actions button{flex:1 1 0;min-width:9rem}",
    "button{font:inherit;font-weight:600;min-height:44px;margin:0;padding:.5rem 1rem;border-radius:8px;",
    "border:2px solid #1f2937;background:#1f2937;color:#fff;cursor:pointer}",
    "button:hover{background:#374151;border-color:#374151}",
    ":focus-visible{outline:3px solid #1d4ed8;outline-offset:2px}",
    "a{color:#1d4ed8}",
    "button.close{min-width:44px;padding:0 .5rem;background:transparent;color:#1a1a1a;border-color:transparent;",
    "font-size:1.5rem;line-height:1}",
    "button.close:hover{background:#f4f4f5}",
    ".purpose{border-top:1px solid #d4d4d8;padding:.75rem 0}",
    ".row{display:flex;align-items:center;justify-content:space-between;gap:1rem}",
    ".row label{font-weight:700}",
    ".right{display:flex;align-items:center;gap:.5rem;font-size:.875rem}",
    ".purpose p{margin:.25rem 0 .5rem;font-size:.9375rem}",
    "input{appearance:none;-webkit-appearance:none;position:relative;flex:none;margin:0;width:3rem;height:1.75rem;",
    "border:2px solid #52525b;border-radius:1rem;background:#52525b;cursor:pointer}",
    "input::before{content:'';position:absolute;top:2px;left:2px;width:1.25rem;height:1.25rem;border-radius:50%;",
    "background:#fff;transition:transform .15s}",
    "input:checked{background:#15803d;border-color:#15803d}",
    "input:checked::before{transform:translateX(1.25rem)}",
    "input:disabled{cursor:default}",
    "summary{cursor:pointer;font-weight:600;font-size:.9375rem;padding:.25rem 0}",
    ".vendor{font-size:.875rem;color:#3f3f46;padding:.375rem 0 .375rem .75rem;border-left:3px solid #d4d4d8;margin:.375rem 0}",
    ".vendor b{color:#1a1a1a}",
    ".reopen{position:fixed;bottom:1rem;z-index:2147483000;font-size:14px;min-height:44px;padding:.5rem 1rem;",
    "border-radius:999px;background:#fff;color:#1f2937;box-shadow:0 2px 8px rgba(0,0,0,.25)}",
    ".reopen:hover{background:#f4f4f5;border-color:#1f2937}",
    ".bottom-left{left:1rem}.bottom-right{right:1rem}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    "@media (max-width:40rem){dialog,dialog.banner{width:100%;max-height:100%;margin:auto 0 0;",
    "border-radius:12px 12px 0 0}.actions{flex-direction:column}.actions button{flex:none;width:100%}",
    ".frame{max-height:100vh}.scroll,.actions{padding-left:1rem;padding-right:1rem}}",
    "@media (prefers-color-scheme:dark){dialog,.reopen,button.close,.vendor b{color:#f4f4f5}",
    "dialog,.reopen{background:#18181b}.vendor{color:#d4d4d8}a{color:#93c5fd}:focus-visible{outline-color:#93c5fd}",
    "button{background:#f4f4f5;border-color:#f4f4f5;color:#18181b}button:hover{background:#d4d4d8}",
    "button.close:hover,.reopen:hover{background:#27272a}.reopen{border-color:#f4f4f5}}",
    "@media (prefers-reduced-motion:reduce){input::before{transition:none}}"
  ].join("");

  /* ------------------------------------------------------------------ the cookie */

  function readChoice() {
    var parts = D.cookie.split(";");
    for (var i = 0; i < parts.length; i++) {
      var kv = parts[i].replace(/^\s+/, "");
      if (kv.indexOf(COOKIE + "=") !== 0) continue;
      var raw = kv.slice(COOKIE.length + 1);
      try { raw = decodeURIComponent(raw); } catch (e) { return null; }
      var f = raw.split("~");
      return {
        granted: f[0].split(/[.,|]/).filter(function (c) { return c && c !== "none"; }),
        version: /^\d+$/.test(f[1] || "") ? +f[1] : 0,
        time: /^\d+$/.test(f[2] || "") ? +f[2] : 0,
        id: ID_RE.test(f[3] || "") ? f[3] : ""
      };
    }
    return null;
  }

  function newId() {
    var abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    var bytes = new Uint8Array(22);
    var out = "";
    try { crypto.getRandomValues(bytes); } catch (e) {
      for (var j = 0; j < 22; j++) bytes[j] = Math.floor(Math.random() * 256);
    }
    for (var i = 0; i < 22; i++) out += abc.charAt(bytes[i] & 63);
    return out;
  }

  function decide(granted, action) {
    var before = readChoice();
    var now = Math.floor(Date.now() / 1000);
    var id = before && before.id ? before.id : newId();
    var refused = CATEGORIES.filter(function (c) { return granted.indexOf(c) < 0; });
    D.cookie = COOKIE + "=" + granted.join(".") + "~" + POLICY + "~" + now + "~" + id +
      "; path=/; max-age=" + MAX_AGE + "; SameSite=Lax" + (location.protocol === "https:" ? "; Secure" : "");
    close();
    announce(T.saved);
    record({ consent_id: id, policy_version: POLICY, granted: granted, refused: refused,
      page: location.origin + location.pathname, time: now, action: action });
    try {
      D.dispatchEvent(new CustomEvent("tag-gate:consent", { detail: { granted: granted.slice() } }));
    } catch (e) { /* a listener's error is not ours */ }
    if (window.tagGate && typeof window.tagGate.activate === "function") {
      try { window.tagGate.activate(); } catch (e) { /* activation is best effort */ }
    }
    var withdrawn = before && before.granted.some(function (c) { return granted.indexOf(c) < 0; });
    if (withdrawn && cfg.reload_on_withdrawal) location.reload();
  }

  function record(body) {
    try {
      var json = JSON.stringify(body);
      var url = cfg.endpoint || "/__tag-gate/consent";
      var queued = false;
      if (navigator.sendBeacon) {
        try { queued = navigator.sendBeacon(url, new Blob([json], { type: "application/json" })); } catch (e) { queued = false; }
      }
      if (!queued && window.fetch) {
        fetch(url, { method: "POST", body: json, keepalive: true, credentials: "same-origin",
          headers: { "Content-Type": "application/json" } }).catch(function () {});
      }
    } catch (e) { /* proof of consent is best effort; the choice stands */ }
  }

  /* ------------------------------------------------------------------ the dialog */

  function h(tag, attrs, kids) {
    var el = D.createElement(tag);
    for (var k in attrs) {
      if (!Object.prototype.hasOwnProperty.call(attrs, k)) continue;
      var v = attrs[k];
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") el.textContent = v;
      else if (k === "onclick") el.addEventListener("click", v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    (kids || []).forEach(function (c) { if (c) el.appendChild(typeof c === "string" ? D.createTextNode(c) : c); });
    return el;
  }

  var host, root, dialog, status, reopen = null, returnTo = null, heading = null;

  function button(text, onclick, extra) {
    var attrs = { type: "button", text: text, onclick: onclick };
    for (var k in extra || {}) attrs[k] = extra[k];
    return h("button", attrs);
  }

  function acceptAll() { decide(CATEGORIES.slice(), "accept_all"); }
  function refuseAll() { decide([], "refuse_all"); }

  function policyLink() {
    return cfg.policy_url ? h("p", {}, [h("a", { href: cfg.policy_url, text: T.policy_link })]) : null;
  }

  function renderBanner() {
    heading = h("h2", { id: "tg-title", tabindex: "-1", text: T.title });
    var titles = cfg.purposes.filter(function (p) { return !p.required; }).map(function (p) { return p.title; });
    return [
      h("div", { class: "scroll" }, [
        heading,
        h("p", { id: "tg-desc", text: T.intro }),
        titles.length ? h("p", { text: T.purposes_label + " " + titles.join(", ") }) : null,
        policyLink()
      ]),
      h("div", { class: "actions" }, [
        button(T.accept_all, acceptAll, { "data-action": "accept_all" }),
        button(T.refuse_all, refuseAll, { "data-action": "refuse_all" }),
        button(T.choose, function () { show("preferences"); }, { "data-action": "choose" })
      ])
    ];
  }

  function vendorItem(v) {
    var lines = [h("b", { text: v.name }), v.description ? " \u2014 " + v.description : null];
    if (v.cookies && v.cookies.length) lines.push(h("br"), T.cookies + ": " + v.cookies.join(", "));
    if (v.retention) lines.push(h("br"), T.retention + ": " + v.retention);
    return h("li", { class: "vendor" }, lines);
  }

  function renderPreferences() {
    var current = readChoice();
    var granted = current ? current.granted : [];
    heading = h("h2", { id: "tg-title", tabindex: "-1", text: T.preferences_title });
    var items = cfg.purposes.map(function (p, i) {
      var id = "tg-p" + i;
      var on = p.required || p.categories.every(function (c) { return granted.indexOf(c) >= 0; });
      var toggle = h("input", { type: "checkbox", role: "switch", id: id, "aria-describedby": id + "-d",
        "data-purpose": p.id, checked: on, disabled: !!p.required });
      toggle.checked = on;
      var vendors = (p.vendors || []).length ? h("details", {}, [
        h("summary", { text: T.services + " (" + p.vendors.length + ")" }),
        h("ul", {}, p.vendors.map(vendorItem))
      ]) : null;
      return h("li", { class: "purpose" }, [
        h("div", { class: "row" }, [
          h("label", { for: id, text: p.title }),
          h("span", { class: "right" }, [p.required ? h("span", { text: T.always_on }) : null, toggle])
        ]),
        h("p", { id: id + "-d", text: p.description }),
        vendors
      ]);
    });
    return [
      h("div", { class: "scroll" }, [
        h("div", { class: "head" }, [
          heading,
          button("\u00d7", close, { class: "close", "aria-label": T.close })
        ]),
        h("p", { id: "tg-desc", text: T.preferences_intro }),
        h("ul", {}, items),
        policyLink()
      ]),
      h("div", { class: "actions" }, [
        button(T.accept_all, acceptAll, { "data-action": "accept_all" }),
        button(T.refuse_all, refuseAll, { "data-action": "refuse_all" }),
        button(T.save, save, { "data-action": "save" })
      ])
    ];
  }

  function save() {
    var granted = [];
    cfg.purposes.forEach(function (p) {
      if (p.required) return;
      var box = dialog.querySelector('input[data-purpose="' + p.id + '"]');
      if (box && box.checked) p.categories.forEach(function (c) { if (granted.indexOf(c) < 0) granted.push(c); });
    });
    decide(CATEGORIES.filter(function (c) { return granted.indexOf(c) >= 0; }), "save");
  }

  /* Renders a view into the dialog, opening it first if needed; focus goes to the
   * view's heading, so no button is preselected and Tab starts at the first control. */
  function show(view, opener) {
    while (dialog.firstChild) dialog.removeChild(dialog.firstChild);
    dialog.className = view;
    dialog.appendChild(h("div", { class: "frame" }, view === "banner" ? renderBanner() : renderPreferences()));
    if (!dialog.open) {
      var active = opener || D.activeElement;
      returnTo = active === host ? root.activeElement : active;
      if (reopen) reopen.hidden = true;
      try { dialog.showModal(); } catch (e) { dialog.setAttribute("open", ""); }
    }
    heading.focus();
  }

  function open(view, opener) { show(view, opener); }

  function close() {
    if (dialog.open) dialog.close();
  }

  function announce(text) {
    status.textContent = "";
    setTimeout(function () { status.textContent = text; }, 50);
  }

  /* Builds the UI, attaches it and opens it when due. Runs after the page's next frame
   * (requestAnimationFrame runs right before a frame is painted; a task queued there
   * runs after it), so the banner never delays the page's first paint. */
  function build() {
    host = D.createElement("tag-gate-banner");
    root = host.attachShadow({ mode: "open" });
    if (root.adoptedStyleSheets !== undefined && typeof CSSStyleSheet === "function") {
      try {
        var sheet = new CSSStyleSheet();
        sheet.replaceSync(CSS);
        root.adoptedStyleSheets = [sheet];
      } catch (e) { sheet = null; }
    }
    if (!root.adoptedStyleSheets || !root.adoptedStyleSheets.length) {
      var style = h("style", { nonce: NONCE || null });
      style.textContent = CSS;
      root.appendChild(style);
    }

    dialog = h("dialog", { "aria-modal": "true", "aria-labelledby": "tg-title", "aria-describedby": "tg-desc",
      lang: cfg.lang });
    status = h("div", { role: "status", class: "sr", lang: cfg.lang });
    if (cfg.position === "bottom-left" || cfg.position === "bottom-right") {
      reopen = h("button", { type: "button", class: "reopen " + cfg.position, "aria-haspopup": "dialog", lang: cfg.lang,
        text: T.preferences_button, onclick: function () { open("preferences"); } });
      root.appendChild(reopen);
    }
    root.appendChild(dialog);
    root.appendChild(status);

    dialog.addEventListener("close", function () {
      if (reopen) reopen.hidden = false;
      var target = returnTo;
      returnTo = null;
      if (target && target !== D.body && target.isConnected && typeof target.focus === "function") target.focus();
    });

    dialog.addEventListener("keydown", function (e) {
      if (e.key !== "Tab") return;
      var all = Array.prototype.filter.call(
        dialog.querySelectorAll("button,a[href],input:not([disabled]),summary"),
        function (el) { return el.getClientRects().length > 0; });
      if (!all.length) return;
      var active = root.activeElement;
      if (e.shiftKey && (active === all[0] || active === heading)) { e.preventDefault(); all[all.length - 1].focus(); }
      else if (!e.shiftKey && active === all[all.length - 1]) { e.preventDefault(); all[0].focus(); }
    });

    D.addEventListener("click", function (e) {
      var t = e.target;
      var opener = t && t.closest ? t.closest(OPENERS) : null;
      if (!opener) return;
      e.preventDefault();
      open("preferences", opener);
    });
    window.addEventListener("hashchange", function () {
      if (location.hash === "#tag-gate-preferences") open("preferences");
    });

    window.tagGateBanner = {
      open: function () { open("preferences"); },
      choice: readChoice
    };

    (D.body || D.documentElement).appendChild(host);
    var choice = readChoice();
    var age = choice ? Math.floor(Date.now() / 1000) - choice.time : 0;
    if (location.hash === "#tag-gate-preferences") open("preferences");
    else if (cfg.open || !choice || choice.version < POLICY || age > MAX_AGE) open("banner");
  }

  if (typeof requestAnimationFrame === "function" && D.visibilityState !== "hidden") {
    requestAnimationFrame(function () { setTimeout(build, 0); });
  } else {
    setTimeout(build, 0);
  }
})();
