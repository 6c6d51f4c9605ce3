"""Interactive API documentation at ``/v1/docs``: Swagger UI over ``/v1/openapi.json``.

Swagger UI's files come from the installed ``swagger-ui-bundle-v2`` distribution (its ``swagger_ui_bundle``
package); nothing is fetched at run time, so the page works on a machine without internet access. Log in
with ``Authorize`` (``Token <token>`` from ``POST /v1/auth/login``) and try any operation from the browser.
"""

from __future__ import annotations

import asyncio
from functools import cache
from importlib.resources.abc import Traversable

from aiohttp import web

from connectors.api.core import ApiError, RouteTable, path_id

routes = RouteTable()
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png",
                    "favicon-16x16.png", "docs-init.js"})

TYPES = {"js": "text/javascript", "css": "text/css", "png": "image/png"}
PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>facestream API</title>
    <link rel="stylesheet" type="text/css" href="/v1/docs/swagger-ui.css">
    <link rel="icon" type="image/png" href="/v1/docs/favicon-32x32.png" sizes="32x32">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/v1/docs/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="/v1/docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="/v1/docs/docs-init.js" charset="UTF-8"></script>
  </body>
</html>
"""
INIT = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/v1/openapi.json", dom_id: "#swagger-ui", deepLinking: true, persistAuthorization: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout",
  });
};
"""


@cache
def _dist() -> Traversable:
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError as exc:  # a broken install: say which distribution is missing
        raise ApiError(503, "interactive docs need the swagger-ui-bundle-v2 package (pip install "
                            "swagger-ui-bundle-v2); /v1/openapi.json works without it") from exc
    return swagger_ui_path  # type: ignore[no-any-return]


@routes.add("GET", "/v1/docs", "Interactive API documentation (Swagger UI)", "ops", access="public",
            raw="text/html")
async def docs_page(request: web.Request) -> web.Response:
    _dist()
    return web.Response(text=PAGE, content_type="text/html", headers={"Cache-Control": "no-cache"})


@routes.add("GET", "/v1/docs/{name}", "A file of the interactive documentation", "ops", access="public",
            raw="*/*", errors=(503,))
async def docs_asset(request: web.Request) -> web.Response:
    name = path_id(request, "name")
    if name not in ASSETS:
        raise ApiError(404, f"no documentation file {name!r}")
    if name == "docs-init.js":
        return web.Response(text=INIT, content_type="text/javascript")
    data = await asyncio.get_running_loop().run_in_executor(None, (_dist() / name).read_bytes)
    kind = TYPES[name.rsplit(".", 1)[-1]]
    return web.Response(body=data, content_type=kind, headers={"Cache-Control": "public, max-age=86400"})
