"""Property-based fuzzing of the server against its own OpenAPI schema (schemathesis, in-process ASGI).

Every operation gets a bounded number of generated requests (valid and invalid ones); the checks are: no 5xx
(``not_a_server_error``), responses match their documented schema, status code and content type.
"""

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from fluid.serve import create_app

EXAMPLES_PER_OPERATION = 30  # 4 operations; about 20 s in all on 2 busy cores


@pytest.fixture(scope="module")
def served_schema(trained_run_dir):
    # small limits so the fuzzer also reaches the 413 paths
    app = create_app(trained_run_dir, max_upload_mb=0.05, max_batch=4, micro_batch=4, max_wait_ms=1)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("served_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_conform(case):
    case.call_and_validate(checks=[not_a_server_error, response_schema_conformance, status_code_conformance,
                                   content_type_conformance])
