"""Property-based run of the served OpenAPI schema (schemathesis): no input gives a 5xx.

Every operation is exercised signed in (API key, reviewer session with CSRF token) so the
generated requests reach the handlers, not just the 401s. Examples are limited to stay quick.
Sessions live on the server, so the operations that end them (logout, an admin's "sign out
everywhere") run last: before them, every other operation still sees a live session.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from service_harness import REVIEW_ALL, build_service, drawn_photo

EXAMPLES_PER_OPERATION = 12
ENDS_SESSIONS = ("/v1/auth/logout", "/v1/admin/users/{user_id}/signout-all")


@pytest.mark.slow
def test_openapi_schema_finds_no_server_errors(
    tmp_path: Path, tiny_bundle: Any, embedder: Any
) -> None:
    service = build_service(tmp_path, f"sqlite:///{tmp_path / 'schema.db'}", tiny_bundle, embedder)
    service.set_policy(REVIEW_ALL)
    api = service.api()
    for seed in range(3):  # something in the queue for claim / decide / undo to act on
        service.upload(api, drawn_photo(300 + seed))
    admin = service.reviewer("ada", role="admin")
    headers = {
        "Authorization": f"Bearer {service.api_key}",
        "X-CSRF-Token": admin.headers["X-CSRF-Token"],
    }
    cookies = {"photosieve_session": admin.cookies["photosieve_session"]}
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.app)
    failures: list[str] = []
    operations = 0
    seen: Counter[tuple[str, str, int]] = Counter()
    all_operations = [result.ok() for result in schema.get_all_operations()]
    all_operations.sort(key=lambda op: op.path in ENDS_SESSIONS)  # stable: these go last
    for operation in all_operations:
        operations += 1

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            try:
                response = case.call(headers=headers, cookies=cookies)
            except Exception as exc:  # the test client re-raises server exceptions
                failures.append(f"{case.method} {case.formatted_path}: {exc!r}")
                return
            seen[(case.method, case.path, response.status_code)] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")

        check()
    service.app.state.engine.dispose()
    assert operations >= 12
    assert failures == []
    reached = {path for (_, path, status) in seen if status < 300}
    assert {"/v1/review/claim", "/v1/review/history", "/v1/admin/stats"} <= reached
