/* tag-gate bridge: mirrors a CMP's choice into tg_consent=<granted categories joined
 * by ".">; removed while the CMP reports none. Maps: CMP category -> ours;
 * unlisted grant nothing; a mapped refusal wins; Osano OPT_OUT=ACCEPT only refuses. */
(function () {
  'use strict';
  const UC = {
    essential: [], functional: ['functional'], preferences: ['functional'],
    statistics: ['analytics'], analytics: ['analytics'], marketing: ['advertising', 'social']
  };
  const OSANO = {
    ESSENTIAL: [], STORAGE: ['functional'], PERSONALIZATION: ['functional'], ANALYTICS: ['analytics'],
    MARKETING: ['advertising', 'social'], OPT_OUT: ['advertising']
  };
  const UC_EVENT = ((document.currentScript || {}).dataset || {}).ucEvent || 'ucEvent';
  const fn = (o, k) => !!o && typeof o[k] === 'function';
  const on = (n, f) => window.addEventListener(n, f);

  function granted(map, pairs) {
    const yes = new Set(), no = new Set();
    for (const [k, ok] of pairs) for (const c of map.hasOwnProperty(k) ? map[k] : []) (ok === true ? yes : no).add(c);
    return [...yes].filter((c) => !no.has(c)).sort();
  }

  function set(v) {
    const m = document.cookie.match(/(?:^|;\s*)tg_consent=([^;]*)/);
    if (m ? m[1] === v : v === null) return;
    document.cookie = `tg_consent=${v || ''}; path=/; max-age=${v ? 31536000 : 0}; SameSite=Lax` +
      (location.protocol === 'https:' ? '; Secure' : '');
  }
  const write = (names) => set(names.join('.') || 'essential');
  const clear = () => set(null);

  // Usercentrics v3, else v2; stale answers are dropped
  let seq = 0;
  function ucPull(e) {
    const mine = ++seq, v3 = window.__ucCmp, v2 = window.UC_UI;
    // a banner button is a choice before UC stores it
    let chose = /^(ACCEPT|DENY|SAVE)/.test(((e && e.detail) || {}).type);
    const last = (f) => (v) => mine === seq && f(v);
    if (fn(v3, 'getConsentDetails')) {
      Promise.resolve(v3.getConsentDetails()).then(last((d) => {
        const list = Object.values((d && d.services) || {});
        const exp = (s) => !!s.consent && /^explicit$/i.test(s.consent.type);
        if (!list.some(exp)) return clear();
        // implicit = a default, not a choice
        write(granted(UC, list.map((s) => [s.category, exp(s) && s.consent.given === true])));
      }), () => {});
    } else if (fn(v2, 'getServicesBaseInfo') && !(fn(v2, 'isInitialized') && !v2.isInitialized())) {
      try { chose = chose || localStorage.uc_user_interaction === 'true'; } catch (x) { /* blocked */ }
      Promise.resolve(v2.getServicesBaseInfo()).then(last((list) => {
        if (!Array.isArray(list)) return;
        if (!chose) return clear();
        write(granted(UC, list.map((s) => [s.categorySlug, !!s.consent && s.consent.status === true])));
      }), () => {});
    }
  }
  ['UC_UI_INITIALIZED', 'UC_CONSENT', 'UC_UI_CMP_EVENT'].forEach((n) => on(n, ucPull));

  // v2 consent_status; a null (mixed) category is refused
  on(UC_EVENT, (e) => {
    const d = e.detail;
    if (!d || d.event !== 'consent_status' || Object(d.ucCategory) !== d.ucCategory) return;
    seq++;
    if (!/^explicit$/i.test(d.type)) return clear();
    write(granted(UC, Object.entries(d.ucCategory)));
  });

  // Osano: {ANALYTICS: 'ACCEPT' | 'DENY', ...}
  let osanoChose = false;
  function osano(c) {
    if (Object(c) !== c) return;
    osanoChose = true;
    const opt = (k) => (c[k] === 'ACCEPT' ? [k, false] : ['', false]);
    write(granted(OSANO, Object.keys(c).map((k) => (k === 'OPT_OUT' ? opt(k) : [k, c[k] === 'ACCEPT']))));
  }

  // at load; Osano calls back at once if ready, undefined = no choice
  function init() {
    const cm = window.Osano && window.Osano.cm;
    if (fn(cm, 'addEventListener')) {
      cm.addEventListener('osano-cm-initialized', (c) => (c ? osano(c) : clear()));
      cm.addEventListener('osano-cm-consent-saved', (c) => osano(cm.getConsent() || c));
      cm.addEventListener('osano-cm-consent-changed', () => osanoChose && osano(cm.getConsent()));
    }
    ucPull();
  }
  if (document.readyState === 'complete') init();
  else on('load', init);
})();
