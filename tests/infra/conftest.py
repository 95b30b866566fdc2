"""testinfra checks of a deployed stack, run per host through the Ansible inventory.

Run by `invoke verify` as
`pytest tests/infra --hosts=ansible://all --ansible-inventory=<state>/work/inventory.yml`,
so the same suite checks loopback hosts (local connection) and SSH hosts alike.
"""

from __future__ import annotations

from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: needs a deployed stack")


@pytest.fixture
def hv(host) -> dict[str, Any]:  # noqa: ANN001 - testinfra's Host
    """The host's Ansible variables: the same values the roles were applied with."""
    return host.ansible.get_variables()
