"""The API contract, checked the way a fuzzer would: schemathesis with every built-in check (status
codes and content types documented, responses valid against their schemas, bad data refused, good
data accepted, auth required) over every operation, positive and negative examples, seeded and
bounded, against a live server on a copy of the fixture workspace."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from server_support import ADMIN, base_workspace, served_copy  # noqa: E402,F401

pytestmark = pytest.mark.slow
EXAMPLES = {"POST /v1/reindex": 2, "POST /v1/documents": 6, "DELETE /v1/documents/{doc_id}": 4}
DEFAULT_EXAMPLES = 10
# A schema cannot say "a file with readable text" or "a document that is not only whitespace": an
# upload can be schema-valid and still refused (400/415/422, documented), so acceptance of every
# schema-valid upload is not a property of this operation. Every other check still runs on it.
# Likewise `dimensions` on /v1/embeddings: any value the schema allows, but only the embedder's own is served.
NOT_ALWAYS_ACCEPTED = {"POST /v1/documents", "POST /v1/embeddings"}


@pytest.fixture(scope="module")
def live(base_workspace, tmp_path_factory):  # noqa: F811
    yield from served_copy(base_workspace, tmp_path_factory, "contract")


def test_every_operation_keeps_its_documented_contract(live):
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    failures: list[str] = []
    walked: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        name = f"{op.method.upper()} {op.path}"
        walked.append(name)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=EXAMPLES.get(name, DEFAULT_EXAMPLES), deadline=None, database=None,
                      derandomize=True, suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def check(case) -> None:  # noqa: ANN001
                excluded = [positive_data_acceptance] if name in NOT_ALWAYS_ACCEPTED else None
                case.call_and_validate(base_url=live.url, headers=ADMIN, timeout=60, excluded_checks=excluded)

            try:
                check()
            except Unsatisfiable:  # nothing to generate in this mode (e.g. no input can be invalid)
                pass
            except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 - the shrunk case's failed checks, one report per op
                failures.append(f"{name} [{mode.value}]: {str(e).strip()[:900]}")
    assert len(walked) >= 15, walked
    assert failures == [], "\n\n".join(failures[:15])
