"""schemathesis over the OpenAI server's own OpenAPI document (GET /openapi.json), against real
processes: a controller, a model_worker serving a tiny random LLaMA and the API server with an
API key, on free loopback ports. Generation is bounded by the checkpoint (a 256-token context)
and by the worker (4 sequences at a time, 4 more waiting, the rest 429 at once), so the
slowest honest answer (n=8, no max_tokens) is a few seconds of work.

Every operation of the document is called with the cases schemathesis derives from it (valid
and invalid bodies, path parameters, the API key): no answer may be a 5xx (`not_a_server_error`)
and every answer must come within RESPONSE_LIMIT seconds (`max_response_time`; a request that
hangs fails at REQUEST_TIMEOUT). Examples per operation follow the fuzz profile
(tests/fuzz/conftest.py: 25 fixed in `ci`, CAMEL_CHAT_FUZZ_EXAMPLES in `make fuzz`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import event
from hypothesis import strategies as st
from serving_stack import MODEL, Stack, serving_stack

from camel_chat.serve.openai_api_server import Settings, make_app

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is installed by `make test` (requirements.txt)"
)

pytestmark = pytest.mark.slow  # three real processes: starting them is 15-30 s on 2 shared cores

API_KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CONTEXT = 256  # tokens: with the worker flags, bounds what one generated request can cost
WORKER_ARGS = ["--limit-worker-concurrency", "4", "--max-waiting", "4"]
RESPONSE_LIMIT = 10.0  # seconds for any one answer (streams included) on 2 shared cores
REQUEST_TIMEOUT = 30.0  # a hang fails here instead of stalling the suite


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("openapi")
    with serving_stack(root, context_length=CONTEXT, api_keys=API_KEY, worker_args=WORKER_ARGS) as running:
        yield running


def load_schema() -> schemathesis.BaseSchema:
    """The document `make_app` builds (the one the real server serves: checked below), with the
    checks and limits of this module. Built at collection: `schemathesis.pytest.from_fixture`
    (a schema loaded from the running server) needs pytest's private `Node._nodeid`, which
    pytest 9 no longer has."""
    config = schemathesis.Config()
    config.projects.override.update(headers=AUTH, request_timeout=REQUEST_TIMEOUT)
    config.projects.override.checks.update(max_response_time=RESPONSE_LIMIT)
    return schemathesis.openapi.from_dict(make_app(Settings()).openapi(), config=config)


schema = load_schema()


def test_the_document_covers_every_route(stack: Stack) -> None:
    """The document is OpenAPI 3.1 and documents the bodies the /v1 handlers parse by hand."""
    doc = httpx.get(f"{stack.api}/openapi.json", headers=AUTH, timeout=10, trust_env=False).json()
    assert doc == schema.raw_schema  # the real server serves what is fuzzed here
    assert doc["openapi"].startswith("3.1")
    schema.validate()  # against the OpenAPI 3.1 schema (schemathesis' own check)
    paths = doc["paths"]
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        name = body["$ref"].rsplit("/", 1)[1]
        assert name in doc["components"]["schemas"], name
    docs = httpx.get(f"{stack.api}/docs", headers=AUTH, timeout=10, trust_env=False)
    assert docs.status_code == 200 and "/openapi.json" in docs.text


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Half the bodies name the served model: otherwise nearly every generated request would be
    a 404 (random model names), and generation itself would never be fuzzed."""
    if not isinstance(body, dict):
        return st.just(body)
    return st.sampled_from([body, {**body, "model": MODEL}])


@schema.hook
def flatmap_path_parameters(context: schemathesis.HookContext, parameters: Any) -> st.SearchStrategy[Any]:
    """The same for `/v1/models/{model_id}` and `/v1/engines/{model_name}/embeddings`."""
    if not isinstance(parameters, dict) or not parameters:
        return st.just(parameters)
    return st.sampled_from([parameters, dict.fromkeys(parameters, MODEL)])


@schema.parametrize()
def test_no_server_error_and_no_hang(case: schemathesis.Case, stack: Stack) -> None:
    response = case.call_and_validate(
        base_url=stack.api,
        checks=[schemathesis.checks.not_a_server_error, schemathesis.checks.max_response_time],
    )
    # the answers' mix, in `--hypothesis-show-statistics` (make fuzz prints it)
    event(f"{case.method} {case.path} -> {response.status_code}")
