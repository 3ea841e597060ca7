/* tag-gate: the runtime guard's hooks for the frames of the page's markup.
 *
 * tag-gate puts this right after each <iframe> of a guarded page whose document the page
 * reaches without a navigation (no src, an about: one, a srcdoc), and first in each
 * srcdoc document (inline with the page's CSP nonce, or loaded from here when the site's
 * CSP allows only 'self'). Code may reach such a frame as window.frames[i] or by its
 * name, which no hook of the guard sees; this gives the frame's realm (and, in a srcdoc
 * document, this one) the guard's hooks before any later script runs, and takes this
 * script out of the document again, so that CSS counting siblings (iframe + p,
 * :last-child) and code walking the DOM find the page's own. Without a guard (none in
 * this window or its parent) it does nothing.
 */
try {
  (window.__tagGateGuard || parent.__tagGateGuard).f(window, document.currentScript);
} catch (e) {}
