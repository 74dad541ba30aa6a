from tests.ops.conftest import json_log, plain_log  # noqa: F401  (log capture fixtures)
