"""The OpenAPI 3.1 document at /api/v1/openapi.json is valid and describes exactly the API's routes."""

from __future__ import annotations

from aiohttp import web
from openapi_spec_validator import validate

from web.api.openapi import document
from web.app import create_app
from web.health import HealthReport


async def _health() -> HealthReport:  # pragma: no cover - never called here
    raise AssertionError


def _api_routes() -> set[tuple[str, str]]:
    app = create_app(health_check=_health)
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/v1/")
        and route.method != "HEAD"
        and not isinstance(route.resource, web.StaticResource)
    }


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_the_document_and_the_routes_describe_the_same_operations() -> None:
    documented = {(method, path) for path, item in document()["paths"].items() for method in item}
    assert documented == _api_routes()


def test_every_operation_has_an_id_and_answers_problems() -> None:
    ids = []
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            ids.append(operation["operationId"])
            if path != "/api/v1/openapi.json":
                assert "403" in operation["responses"], (method, path)
                assert "application/problem+json" in operation["responses"]["403"]["content"]
    assert len(ids) == len(set(ids))
