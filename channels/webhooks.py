"""The messaging apps' webhook endpoints: each app's module declares its own routes
(channels/web.py has what they share), and `WebhooksFirst` serves their POSTs."""
from __future__ import annotations

import inspect
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute

from . import providers

log = logging.getLogger(__name__)

routes = [route for app in providers() for route in app.routes()]


class WebhooksFirst:
    """Webhook POSTs straight to their endpoints, past starlette's middleware and router
    (a tenth of a webhook's server CPU, measured): the answers starlette gives, the 500
    of an exception included. Everything else, and every webhook when the app has
    middleware or exception handlers of its own, goes to the app. A route is served
    here only when no other route of the app could take a path it matches (a POST that
    only this route takes), so that the router would choose it too."""

    def __init__(self, app, webhook_routes: list) -> None:
        self.app = app
        self.served: list[Route] = []
        if app.user_middleware or app.exception_handlers or app.debug or getattr(app, "max_body_size", None):
            log.warning("webhooks: the app has middleware or handlers of its own; every webhook goes through it")
            return
        # In the router's order: the first that matches takes the request.
        candidates = [route for route in app.routes
                      if any(route is given for given in webhook_routes) and _answers_posts(route)]
        others = [route for route in app.routes if not any(route is candidate for candidate in candidates)]
        self.served = [route for route in candidates if not any(_may_share_a_post(other, route) for other in others)]

    def __getattr__(self, name: str):
        return getattr(self.app, name)  # starlette's `state`, `routes`...: this is its stand-in

    async def __call__(self, scope, receive, send) -> None:
        found = self._route(scope)
        if found is None:
            await self.app(scope, receive, send)
        else:
            await self._serve(*found, scope, receive, send)

    def _route(self, scope):
        """The webhook route that takes this request, with its match; None: the app's."""
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            for route in self.served:
                match = route.path_regex.match(scope["path"])
                if match is not None:
                    return route, match
        return None

    async def _serve(self, route: Route, match, scope, receive, send) -> None:
        # The scope as starlette's application and router leave it for the endpoint.
        params = {key: route.param_convertors[key].convert(value) for key, value in match.groupdict().items()}
        scope["app"] = self.app
        scope.setdefault("router", self.app.router)
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {**scope.get("path_params", {}), **params}
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except HTTPException as error:  # as starlette's ExceptionMiddleware answers it
            response = (Response(status_code=error.status_code, headers=error.headers)
                        if error.status_code in {204, 304} else
                        PlainTextResponse(error.detail, status_code=error.status_code, headers=error.headers))
        except Exception:
            # As starlette's ServerErrorMiddleware: a plain 500, and the exception on to the
            # server, which logs it and closes the connection.
            await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise
        await response(scope, receive, send)


def _answers_posts(route) -> bool:
    """A Route whose endpoint is a coroutine function taking POST: what starlette wraps
    with request_response and awaits as `endpoint(request)`."""
    return (isinstance(route, Route) and (route.methods is None or "POST" in route.methods)
            and (inspect.isfunction(route.endpoint) or inspect.ismethod(route.endpoint))
            and inspect.iscoroutinefunction(route.endpoint))


def _may_share_a_post(other, route: Route) -> bool:
    """Whether `other` could take a POST whose path `route` matches (conservatively: by the
    literal start of their paths; any kind of route not known here may)."""
    if isinstance(other, WebSocketRoute) or (isinstance(other, Route) and other.methods is not None
                                             and "POST" not in other.methods):
        return False
    start = route.path.partition("{")[0]
    if isinstance(other, Route):
        other_start, brace, _ = other.path.partition("{")
        if not brace:  # a literal path: only that one
            return other_start.startswith(start) and (other_start == start or "{" in route.path)
    elif isinstance(other, Mount):
        other_start = other.path + "/"
    else:
        return True
    return other_start.startswith(start) or start.startswith(other_start)
