"""tag-gate: a consent-aware reverse proxy.

It reads the visitor's consent from the cookie their consent manager already writes,
rewrites HTML as it streams so refused trackers never reach the browser, and filters
cookies in both directions.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tag-gate")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
