"""nftables rules for the network faults (rendering only; the real kernel is exercised
by tests/integration/test_gameday_mechanics.py)."""

from __future__ import annotations

import pytest

from infra.targets import nft
from infra.targets.base import NetworkFault


def test_partition_rule_is_scoped_by_user():
    chain, rule = nft.rule_for(NetworkFault("drop", ("cp-app",), "127.0.10.41", 6379))
    assert chain == "filter_output"
    assert rule == 'meta skuid "cp-app" ip daddr 127.0.10.41 tcp dport 6379 drop'


def test_loss_rule_uses_numgen_and_a_user_set():
    _, rule = nft.rule_for(NetworkFault("loss", ("cp-pgbouncer", "cp-postgres-exporter"),
                                        "127.0.10.32", None, percent=30))
    assert rule == ('meta skuid { "cp-pgbouncer", "cp-postgres-exporter" } ip daddr '
                    '127.0.10.32 numgen random mod 100 < 30 drop')


def test_redirect_rule_goes_to_the_nat_chain():
    chain, rule = nft.rule_for(NetworkFault("redirect", ("cp-app",), "127.0.10.31", 6432,
                                            redirect_to=("127.0.10.31", 40001)))
    assert chain == "nat_output"
    assert rule.endswith("tcp dport 6432 dnat ip to 127.0.10.31:40001")


def test_unscoped_rules_are_refused():
    with pytest.raises(ValueError, match="scoped"):
        nft.rule_for(NetworkFault("drop", (), "127.0.10.41", 6379))


def test_render_replaces_the_whole_table_atomically():
    text = nft.render([NetworkFault("drop", ("cp-app",), "127.0.10.41", 6379, comment="gd")],
                      nft.table_for("lab"))
    lines = text.splitlines()
    assert lines[0] == "table inet civicpulse_gameday_lab {}"
    assert lines[1] == "delete table inet civicpulse_gameday_lab"
    assert "type filter hook output priority 0; policy accept;" in text
    assert "type nat hook output priority -100; policy accept;" in text
    assert 'drop comment "gd"' in text


def test_each_stack_has_its_own_table():
    # Two stacks' GameDays must never replace or delete each other's rules.
    assert nft.table_for("lab") != nft.table_for("itest")
    assert nft.table_for("my-stack") == "civicpulse_gameday_my_stack"  # nft: no '-'
