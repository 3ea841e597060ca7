"""The pure core: categories, consent, catalogue, URL parsing, policy, cookies and config.

Standard library only: nothing here imports aiohttp or the lol-html binding or does network
IO (tests/test_boundaries.py checks the package as a whole). Plain data in, frozen values out.
"""
