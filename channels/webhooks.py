"""The messaging apps' webhook endpoints: each app's module declares its own routes
(channels/web.py has what they share)."""
from __future__ import annotations

from . import providers

routes = [route for app in providers() for route in app.routes()]
