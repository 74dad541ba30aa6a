from tests.ops.conftest import _fast_password_hashing, json_log, plain_log  # noqa: F401
