"""The built-in service name → category map of the CMPs that name services (Klaro,
tarteaucitron). At config time the catalogue's service keys are added to it."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from ..categories import ADVERTISING, ANALYTICS, FUNCTIONAL, SOCIAL

DEFAULT_SERVICE_CATEGORIES: Final[Mapping[str, str]] = MappingProxyType(
    {
        # analytics
        "analytics": ANALYTICS,
        "clarity": ANALYTICS,
        "ga": ANALYTICS,
        "ga4": ANALYTICS,
        "gajs": ANALYTICS,
        "google-analytics": ANALYTICS,
        "googleanalytics": ANALYTICS,
        "googletagmanager": ANALYTICS,
        "gtag": ANALYTICS,
        "gtm": ANALYTICS,
        "hotjar": ANALYTICS,
        "matomo": ANALYTICS,
        "matomocloud": ANALYTICS,
        "mixpanel": ANALYTICS,
        "multiplegtag": ANALYTICS,
        "piwik": ANALYTICS,
        "plausible": ANALYTICS,
        "xiti": ANALYTICS,
        # advertising
        "adsense": ADVERTISING,
        "adwordsconversion": ADVERTISING,
        "adwordsremarketing": ADVERTISING,
        "bingads": ADVERTISING,
        "criteo": ADVERTISING,
        "doubleclick": ADVERTISING,
        "facebookpixel": ADVERTISING,
        "googleads": ADVERTISING,
        "linkedininsighttag": ADVERTISING,
        "metapixel": ADVERTISING,
        "tiktok": ADVERTISING,
        "tiktokpixel": ADVERTISING,
        # social networks, video players, embeds
        "dailymotion": SOCIAL,
        "facebook": SOCIAL,
        "googlemaps": SOCIAL,
        "instagram": SOCIAL,
        "linkedin": SOCIAL,
        "twitter": SOCIAL,
        "twitterembed": SOCIAL,
        "vimeo": SOCIAL,
        "youtube": SOCIAL,
        # chat and support widgets
        "crisp": FUNCTIONAL,
        "intercom": FUNCTIONAL,
        "tawkto": FUNCTIONAL,
        "zendesk": FUNCTIONAL,
    }
)
"""Klaro and tarteaucitron service name (lower case) → category."""
