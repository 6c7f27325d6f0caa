"""The OpenAPI document of the OpenAI-compatible server: request bodies documented from protocol.py.

The /v1 handlers read their bodies by hand (any content type, unknown fields and nulls ignored,
OpenAI's 400 envelope on errors; `openai_routes.read_json`), so FastAPI sees no body parameter and
would document none. A `BodyModels` collects the pydantic model each such route parses:
`bodies.body(Model)` is the route's `openapi_extra` (a `$ref` to `#/components/schemas/Model`), and
`bodies.install(app)` makes `app.openapi` FastAPI's document plus the JSON schemas of those models
(pydantic, validation mode), their nested models' `$defs` hoisted into `components/schemas`. The
parsing itself is unchanged; the document only describes it.

    GET /openapi.json   (OpenAPI 3.1)      GET /docs   (Swagger UI over it)

tests/fuzz/test_fuzz_openapi.py runs schemathesis over this document against a real server.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

if TYPE_CHECKING:
    from fastapi import FastAPI

REF_TEMPLATE = "#/components/schemas/{model}"


class BodyModels:
    """The request-body models of hand-parsed routes, and the document that shows them."""

    def __init__(self) -> None:
        self.models: dict[str, type[BaseModel]] = {}

    def body(self, model: type[BaseModel], description: str | None = None) -> dict[str, Any]:
        """`openapi_extra` for a route whose handler validates its JSON body with `model`."""
        known = self.models.setdefault(model.__name__, model)
        if known is not model:  # two models of one name would share (and clobber) one component
            raise ValueError(f"two request-body models are named {model.__name__}")
        schema = {"$ref": REF_TEMPLATE.format(model=model.__name__)}
        body: dict[str, Any] = {"required": True, "content": {"application/json": {"schema": schema}}}
        if description:
            body["description"] = description
        return {"requestBody": body}

    def install(self, app: FastAPI, error: type[BaseModel] | None = None) -> None:
        """Make `app.openapi()` FastAPI's document with these bodies' schemas added. With `error`
        (the server's one error envelope), every operation documents it as its `default` answer
        in place of FastAPI's 422, which this server never sends (validation errors are 400)."""
        build = app.openapi
        extended: list[dict[str, Any]] = []  # the document last extended (FastAPI rebuilds it
        # when routes change, and caches it otherwise)

        def openapi() -> dict[str, Any]:
            doc = build()
            if not extended or extended[0] is not doc:
                self._extend(doc, error)
                extended[:] = [doc]
            return doc

        app.openapi = openapi  # type: ignore[method-assign]

    def _extend(self, doc: dict[str, Any], error: type[BaseModel] | None) -> None:
        models = dict(self.models)
        if error is not None:
            models.setdefault(error.__name__, error)
            self._document_errors(doc, error.__name__)
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in _schemas(models).items():
            if name in components and components[name] != schema:
                raise ValueError(f"components/schemas/{name} is already another schema")
            components[name] = schema

    @staticmethod
    def _document_errors(doc: dict[str, Any], name: str) -> None:
        answer = {
            "description": "An error: OpenAI's envelope, with the status saying which (4xx: the request)",
            "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=name)}}},
        }
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                responses.setdefault("default", answer)
        schemas = doc.get("components", {}).get("schemas", {})
        if "HTTPValidationError" in schemas and "HTTPValidationError" not in json.dumps(doc["paths"]):
            # only the 422s used FastAPI's validation-error schemas
            schemas.pop("HTTPValidationError")
            schemas.pop("ValidationError", None)


def _schemas(models: dict[str, type[BaseModel]]) -> dict[str, Any]:
    """JSON schemas of `models` and of every model nested in one, keyed by component name."""
    if not models:
        return {}
    pairs = [(model, "validation") for model in models.values()]
    _refs, top = models_json_schema(pairs, ref_template=REF_TEMPLATE)  # type: ignore[arg-type]
    return dict(top.get("$defs", {}))
