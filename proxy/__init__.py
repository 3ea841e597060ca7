"""tag-gate: a consent-aware reverse proxy.

It reads the visitor's consent from the cookie their consent manager already writes,
rewrites HTML as it streams so refused trackers never reach the browser, and filters
cookies in both directions.
"""

__version__ = "0.1.0"
