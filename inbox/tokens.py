"""API tokens for users and CUSTOM channels: shown once, stored as a hash."""
from __future__ import annotations

import hashlib
import secrets

USER_PREFIX = "usr_"
CHANNEL_PREFIX = "chn_"


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    # 256 random bits need no slow hash: sha256 keeps look-ups one index probe.
    return hashlib.sha256(token.encode()).hexdigest()
