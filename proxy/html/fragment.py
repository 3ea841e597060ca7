"""Small markup fragments inside a document (`<noscript>` content, `srcdoc` and `data:`
documents), gated whole through a nested gate and memoised per plan."""

from __future__ import annotations

from typing import Final

from .run import GateRun, GateStats

__all__ = ["FRAGMENT_MEMO_MAX_TEXT", "MAX_NESTING", "gate_fragment"]

MAX_NESTING: Final = 2
"""<noscript>/srcdoc levels gated inside one another; deeper content is dropped."""
FRAGMENT_MEMO_MAX_TEXT: Final = 4096


def gate_fragment(run: GateRun, text: str) -> str | None:
    """Gate a whole small fragment; None when it comes out unchanged.

    Sites repeat the same <noscript> pixels and srcdoc snippets on every page, and a
    nested lol-html rewriter costs more to build than the fragment costs to parse, so
    results are memoised per plan by everything they depend on (what was counted is
    replayed into this response's stats). Text without a tag holds no element at all."""
    if "<" not in text:
        return None
    stats = run.stats
    memoise = stats.records is None and stats.unclassified_hosts is None and len(text) <= FRAGMENT_MEMO_MAX_TEXT
    if not memoise:
        gate = run.nested_gate(stats, text)
        out = gate.feed_text(text) + gate.end_text()
        return None if out == text else out
    key = (text, run.consent, run.page_host, run.base_host, run.nonce, run.report_only, run.nested, run.frame_markup)
    memo = run.plan.fragment_memo
    hit = memo.table.get(key)
    if hit is None:
        own = GateStats()
        gate = run.nested_gate(own, text)
        out = gate.feed_text(text) + gate.end_text()
        changed = None if out == text else out
        hit = (changed, tuple(own.counts.items()), own.activation_needed, own.consent_mode_inserted)
        memo.put(key, hit, 2 * len(text) + (len(run.page_host) if run.page_host else 0))
    result, counts, activation, consent_mode = hit
    for item, n in counts:
        stats.counts[item] += n
    stats.activation_needed |= activation
    stats.consent_mode_inserted |= consent_mode
    return result
