"""The OpenAPI document, with every error documented as RFC 9457 problem+json, and its two
readers, Swagger UI at /docs and ReDoc at /redoc, served from files installed with the
package `fastapi-standalone-docs` (FastAPI's defaults load them from a CDN, and a
self-hosted service often has no internet).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from service.problems import MEDIA_TYPE, ProblemDocument

PROBLEM = {"$ref": "#/components/schemas/ProblemDocument"}
ERRORS = {
    "400": "Malformed request (for example, a body that is not JSON).",
    "401": "Missing or wrong API key.",
    "403": "The key may not use this route.",
    "404": "No such thing, or it belongs to another tenant.",
    "409": "Conflict with the current state.",
    "413": "The body is too large.",
    "416": "The range is outside the file.",
    "422": "A field is invalid; `errors` names it.",
    "429": "Past a limit (request rate, queued jobs); `errors` names it, `Retry-After` says when to retry.",
    "500": "Internal error (no details are given).",
    "503": "Not ready.",
}
PUBLIC = ("/livez", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc")
DOCS_ASSETS = "/docs/assets"  # the package's static folder: swagger/, redoc/, fastapi/favicon.png


def install(app: FastAPI) -> None:
    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = _with_problems(
                get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = openapi
    _install_docs(app)


def _install_docs(app: FastAPI) -> None:
    app.mount(DOCS_ASSETS, StaticFiles(packages=[("fastapi_standalone_docs", "static")]), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url, title=f"{app.title} API",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/fastapi/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
        )  # fmt: skip

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(
            openapi_url=root + app.openapi_url, title=f"{app.title} API",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/fastapi/favicon.png", with_google_fonts=False,
        )  # fmt: skip


def _with_problems(document: dict) -> dict:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["ProblemDocument"] = ProblemDocument.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schemas["ProblemDocument"].pop("$defs", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    document["components"]["securitySchemes"] = {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "An API key from LETHE_API_KEYS."}
    }
    for path, operations in document["paths"].items():
        for operation in operations.values():
            authenticated = path.startswith("/v1")
            if authenticated:
                operation["security"] = [{"apiKey": []}]
            _document_errors(operation, authenticated)
    return document


def _document_errors(operation: dict, authenticated: bool) -> None:
    codes = ["500"] + (["400", "401", "403", "404", "409", "413", "416", "422", "429"] if authenticated else ["503"])
    responses = operation["responses"]
    for code in codes:
        description = responses.get(code, {}).get("description") or ERRORS[code]
        responses[code] = {"description": description, "content": {MEDIA_TYPE: {"schema": PROBLEM}}}
