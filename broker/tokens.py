"""Badge tokens: what travels and is stored instead of a card's UID."""

from __future__ import annotations

import hashlib
import hmac

MIN_SITE_KEY_BYTES = 16


def badge_token(site_key: bytes, uid: bytes) -> str:
    """HMAC-SHA256 of a badge UID under the site key, as lowercase hex.

    A leaked allow-list or database then reveals no card number, and tokens of
    one site mean nothing at another.
    """
    if len(site_key) < MIN_SITE_KEY_BYTES:
        raise ValueError(f"site key must be at least {MIN_SITE_KEY_BYTES} bytes")
    if not uid:
        raise ValueError("badge UID is empty")
    return hmac.new(site_key, uid, hashlib.sha256).hexdigest()
