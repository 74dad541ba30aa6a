"""Every management command of the project renders its --help (argparse chokes on a bare %)."""

import io

import pytest
from django.core.management import call_command, get_commands


@pytest.mark.parametrize(
    "name", sorted(n for n, app in get_commands().items() if app in ("rollout", "metrics"))
)
def test_command__help__renders(name):
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command(name, "--help", stdout=out)
    assert exit_.value.code == 0
