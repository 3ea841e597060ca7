/* tag-gate activation script, served at /__tag-gate/activate.js.
 *
 * tag-gate's native "defer" action leaves refused tags inert in the page:
 *   scripts:  type="text/plain" data-tg-category=... [data-tg-src] [data-tg-type]
 *   others:   data-tg-src / data-tg-srcset / data-tg-href / data-tg-data / data-tg-poster
 *   iframes:  <div data-tg-placeholder> with the original in a <template>
 * When the visitor's tg_consent cookie grants a category, this script brings its
 * elements back in document order (an external script finishes loading before the
 * next deferred script runs), keeping nonces, and those in templates' inert contents
 * in place, so that copies the page stamps later load. It never activates anything
 * the cookie does not grant. A placeholder's "load" button loads that one embed on
 * request.
 * It runs again on the `tag-gate:consent` event (banner.js), on a cookie change
 * (cookieStore where there is one) and on a 500 ms poll of document.cookie.
 * The cookie's value may carry metadata after a "~" (categories~version~time~id):
 * only the part before the first "~" names categories. On a page with tag-gate's
 * banner, a record of an older policy version or past its lifetime grants nothing.
 * When tag-gate's runtime guard is on the page (window.__tagGateGuard), it releases
 * everything in one ordered pass (its own blocked tags and these), so this script
 * hands activation over to it and only keeps the placeholders' buttons.
 */
(function () {
  "use strict";
  var COOKIE = "__TG_COOKIE__";
  var MOVED = ["src", "srcset", "href", "data", "poster", "background"];
  var running = false;
  var again = false;

  // With tag-gate's banner on the page, a record the server reads as no choice at all
  // (none, malformed, an older policy version, past its lifetime, dated in the future)
  // grants nothing here either: the banner is asking again (proxy.core.banner.decide_reask).
  function stale(raw) {
    var el = document.getElementById("tag-gate-banner-config");
    if (!el) return false;
    var cfg;
    try { cfg = JSON.parse(el.textContent || ""); } catch (e) { return true; }
    var f = raw.split("~");
    if (f.length !== 4 || !/^\d+$/.test(f[1]) || !/^\d+$/.test(f[2]) || !/^[A-Za-z0-9_-]{16,24}$/.test(f[3])) return true;
    var age = Date.now() / 1000 - f[2];
    return +f[1] < (cfg.policy_version | 0) || age > ((cfg.cookie && cfg.cookie.max_age) || 0) || age < -86400;
  }

  function granted() {
    var out = { essential: true };
    var parts = document.cookie.split(";");
    var seen = null;
    for (var i = 0; i < parts.length; i++) {
      var kv = parts[i].replace(/^\s+/, "");
      if (kv.indexOf(COOKIE + "=") !== 0) continue;
      var raw = kv.slice(COOKIE.length + 1);
      // Two different copies (paths, domains) say nothing for sure: grant nothing.
      if (seen !== null && raw !== seen) return { essential: true };
      seen = raw;
      if (stale(raw)) return { essential: true };
      // banner.js appends "~version~time~id" after the categories.
      var value = raw.split("~")[0];
      try { value = decodeURIComponent(value); } catch (e) { return { essential: true }; }
      value.split(/[.,|]/).forEach(function (name) { if (name) out[name.trim()] = true; });
    }
    return out;
  }

  function cleanName(name) { return name === "type" || name.indexOf("data-tg-") === 0; }

  function activateScript(el, next) {
    var s = document.createElement("script");
    for (var i = 0; i < el.attributes.length; i++) {
      var a = el.attributes[i];
      if (!cleanName(a.name)) s.setAttribute(a.name, a.value);
    }
    var type = el.getAttribute("data-tg-type");
    if (type) s.setAttribute("type", type);
    if (el.nonce) s.nonce = el.nonce;
    var src = el.getAttribute("data-tg-src");
    if (type && /^[\t\n\f\r ]*text\/partytown[\t\n\f\r ]*$/i.test(type)) {
      // Partytown runs it in its worker: the browser never loads it, so there is no
      // load or error to wait for; Partytown looks for new scripts on "ptupdate"
      if (src) s.setAttribute("src", src);
      else s.text = el.textContent;
      el.parentNode.replaceChild(s, el);
      window.dispatchEvent(new CustomEvent("ptupdate"));
      next();
      return;
    }
    if (src) {
      var called = false;
      var done = function () { if (!called) { called = true; next(); } };
      s.async = el.hasAttribute("async");
      s.onload = s.onerror = done;
      setTimeout(done, 10000);
      s.src = src;
      el.parentNode.replaceChild(s, el);
      if (s.async) done();
    } else {
      s.text = el.textContent;
      el.parentNode.replaceChild(s, el);
      next();
    }
  }

  function activateElement(el) {
    if (el.tagName === "SCRIPT") {
      // a script in a template's inert contents: copies stamped from it run
      var type = el.getAttribute("data-tg-type");
      if (type) el.setAttribute("type", type);
      else el.removeAttribute("type");
      el.removeAttribute("data-tg-type");
    }
    MOVED.forEach(function (name) {
      var v = el.getAttribute("data-tg-" + name);
      if (v !== null) { el.setAttribute(name, v); el.removeAttribute("data-tg-" + name); }
    });
    el.removeAttribute("data-tg-category");
    el.removeAttribute("data-tg-vendor");
  }

  function loadPlaceholder(ph) {
    var tpl = ph.querySelector("template");
    if (!tpl || !ph.parentNode) return;
    ph.parentNode.replaceChild(tpl.content.cloneNode(true), ph);
  }

  // The deferred elements of a document and of its templates' inert contents, where
  // they are activated in place (nothing there loads or runs; copies stamped later do).
  function deferred(root, out) {
    Array.prototype.push.apply(out, root.querySelectorAll("[data-tg-category]"));
    Array.prototype.forEach.call(root.querySelectorAll("template"), function (t) { deferred(t.content, out); });
    return out;
  }

  function activate() {
    var guard = window.__tagGateGuard;
    if (guard && guard.sync) { guard.sync(); return; }
    if (running) { again = true; return; }
    running = true;
    var g = granted();
    var list = deferred(document, []);
    var i = 0;
    (function step() {
      while (i < list.length) {
        var el = list[i++];
        if (!g[el.getAttribute("data-tg-category")] || !el.parentNode) continue;
        if (el.hasAttribute("data-tg-placeholder")) { loadPlaceholder(el); continue; }
        if (el.tagName === "SCRIPT" && el.ownerDocument.defaultView) { activateScript(el, step); return; }
        activateElement(el);
      }
      running = false;
      if (again) { again = false; activate(); }
    })();
  }

  document.addEventListener("click", function (event) {
    var button = event.target && event.target.closest ? event.target.closest("[data-tg-load]") : null;
    if (!button) return;
    var ph = button.closest("[data-tg-placeholder]");
    var guard = window.__tagGateGuard;
    // The visitor asked for this one embed: the guard lets it through.
    if (ph) guard && guard.pass ? guard.pass(function () { loadPlaceholder(ph); }) : loadPlaceholder(ph);
  });

  var last = document.cookie;
  function watch() { if (document.cookie !== last) { last = document.cookie; activate(); } }
  if (window.cookieStore && window.cookieStore.addEventListener) {
    window.cookieStore.addEventListener("change", watch);
  }
  setInterval(watch, 500);
  document.addEventListener("tag-gate:consent", function () { last = document.cookie; activate(); });
  window.tagGate = { activate: activate, granted: granted };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", activate);
  else activate();
})();
