"""`invoke verify`: the testinfra suite passes on every host of a fresh deploy."""

from __future__ import annotations

import re

import pytest

from infra.verify import verify

pytestmark = [pytest.mark.slow, pytest.mark.deploy]


def test_testinfra_suite_passes_on_every_host(deployed_stack):
    result = verify(deployed_stack, capture=True)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", result.stdout).group(1))
    # every host is checked, the one reached over SSH included
    for host in deployed_stack.hosts:
        assert re.search(rf"\[ansible://{host.name}\] PASSED", result.stdout), host.name
    # the checks every host gets (packages, users, listeners, supervisor, secrets);
    # service-specific ones skip where the service does not run
    assert passed >= 5 * len(deployed_stack.hosts)
