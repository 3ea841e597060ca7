/* tag-gate: an empty module. An import map's address of a vendor the visitor refused
 * points here (/__tag-gate/blocked.js, or below /__tag-gate/blocked/ for a prefix), so a
 * page's own module that imports it still resolves and runs, and the vendor is never
 * fetched. */
