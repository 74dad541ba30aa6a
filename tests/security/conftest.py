from tests.ops.conftest import _fast_password_hashing, json_log, plain_log  # noqa: F401


def pytest_collection_modifyitems(items):
    """Mark the fuzzer's known failures (tests/security/test_api_fuzz.py) as expected failures."""
    import pytest

    from tests.security.test_api_fuzz import KNOWN_FAILURES

    for item in items:
        reason = KNOWN_FAILURES.get(getattr(item, "operation_label", None))
        if reason and item.nodeid.startswith("tests/security/test_api_fuzz.py::"):
            item.add_marker(pytest.mark.xfail(strict=False, reason=reason))
