"""The ops CLI: argument handling, exit statuses, clear errors, no secrets printed."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

from infra.ops import cli
from infra.ops.console import render
from infra.ops.outcome import OpsError, Outcome, redact, stack_secret_values
from infra.ops.select import instances, one_instance
from infra.ops.stacks import resolve_stack
from infra.topology import load_stack
from infra.yaml_source import ConfigError

LAB = load_stack("lab")


@pytest.fixture
def topology(tmp_path):
    return dataclasses.replace(LAB, state_dir=tmp_path / "state")


def test_every_command_is_registered_with_stack_and_json():
    parser = cli.build_parser()
    assert cli.command_names() == sorted(cli.COMMANDS)
    for name in ("status", "logs", "processes", "restart", "pools", "pg-activity",
                 "kill-idle-tx", "drain", "undrain", "drained", "cache-del", "disk",
                 "alerts", "promql", "env"):
        assert name in cli.COMMANDS
    args = parser.parse_args(["restart", "--stack", "lab", "--service", "app", "--unhealthy"])
    assert (args.stack, args.service, args.unhealthy, args.wait, args.json) == \
        ("lab", "app", True, 30.0, False)
    args = parser.parse_args(["kill-idle-tx", "--stack", "lab", "--state", "any", "--dry-run"])
    assert args.older_than is None and args.state == "any" and args.dry_run


@pytest.mark.parametrize("argv", [
    ["frobnicate", "--stack", "lab"],
    ["restart", "--stack", "lab"],                       # --service is required
    ["logs", "--stack", "lab", "--service", "app", "--lines", "many"],
    ["pools", "--stack", "lab", "--show", "everything"],
    ["kill-idle-tx", "--stack", "lab", "--state", "sleeping"],
    ["alerts", "--stack", "lab", "--fail-if-firing", "--expect-firing"],
    ["drain", "--stack", "lab"],                         # --host is required
])
def test_bad_arguments_exit_2_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_stack_comes_from_the_option_or_cp_stack(monkeypatch, capsys):
    monkeypatch.delenv("CP_STACK", raising=False)
    assert cli.main(["status"]) == 2
    assert "no stack: pass --stack NAME (or set CP_STACK)" in capsys.readouterr().err
    monkeypatch.setenv("CP_STACK", "lab")
    assert cli.build_parser().parse_args(["status"]).stack == "lab"


def test_unknown_stack_names_the_known_ones(capsys):
    assert cli.main(["status", "--stack", "nosuchstack"]) == 2
    err = capsys.readouterr().err
    assert "cannot load stack 'nosuchstack'" in err and "known stacks: " in err and "lab" in err


def test_unknown_service_or_host_names_the_valid_ones(capsys):
    assert cli.main(["logs", "--stack", "lab", "--service", "postgres"]) == 2
    err = capsys.readouterr().err
    assert "stack lab runs no service 'postgres'" in err and "postgresql" in err
    assert cli.main(["logs", "--stack", "lab", "--service", "redis", "--host", "app9"]) == 2
    err = capsys.readouterr().err
    assert "stack lab has no host 'app9'; its hosts are: edge, app1, app2" in err


def test_select_filters_and_explains():
    assert [s.host for s in instances(LAB, "app", None)] == ["app1", "app2"]
    assert [s.host for s in instances(LAB, "app", "")] == ["app1", "app2"]  # empty = unset
    assert [s.name for s in instances(LAB, None, "db")] == ["postgresql", "postgres_exporter",
                                                           "pgbackrest_pg"]
    with pytest.raises(OpsError, match="redis does not run on host db of stack lab; it runs "
                                       "on: cache"):
        instances(LAB, "redis", "db")
    with pytest.raises(OpsError, match=r"app runs on 2 hosts of stack lab \(app1, app2\): "
                                       "pass --host"):
        one_instance(LAB, "app")
    assert one_instance(LAB, "app", "app2").address == "127.0.10.22"


def test_restart_never_restarts_every_app_host_at_once(capsys):
    assert cli.main(["restart", "--stack", "lab", "--service", "app"]) == 2
    assert "pass --host to restart one, or --unhealthy" in capsys.readouterr().err


def test_argument_values_are_validated_by_the_commands(topology):
    from infra.ops import cache, pgbouncer, postgresql, services

    with pytest.raises(OpsError, match="--lines must be between 1 and 10000"):
        services.logs(topology, "app", lines=0)
    with pytest.raises(OpsError, match="--grep '\\(' is not a valid regular expression"):
        services.logs(topology, "app", grep="(")
    with pytest.raises(OpsError, match="--show must be one of pools, stats"):
        pgbouncer.show(topology, "secrets")
    with pytest.raises(OpsError, match="--state must be one of"):
        postgresql.kill_transactions(topology, 10, "zombie")
    with pytest.raises(OpsError, match="--older-than must be at least 1 second"):
        postgresql.kill_transactions(topology, 0)
    with pytest.raises(OpsError, match="name the keys to delete"):
        cache.delete_keys(topology, [])
    with pytest.raises(OpsError, match="matches every key: that is a cache flush"):
        cache.delete_keys(topology, [], pattern="**")


def test_commands_that_need_a_secret_say_so_when_it_is_missing(topology):
    from infra.ops import cache, pgbouncer, postgresql

    for call in (lambda: pgbouncer.show(topology), lambda: postgresql.activity(topology),
                 lambda: cache.delete_keys(topology, ["user:1"])):
        with pytest.raises(OpsError, match="secret of stack lab .*is the stack deployed"):
            call()


def test_logs_of_an_undeployed_stack_fail_clearly(topology):
    from infra.ops import services

    outcome = services.logs(topology, "postgresql")
    assert not outcome.ok
    assert "no log at" in outcome.notes[0] and "is the stack deployed?" in outcome.notes[0]


def test_default_transaction_age_is_pgbouncer_query_timeout(topology):
    from infra.ops import postgresql

    assert postgresql.default_age_s(topology) == topology.sizing.pgbouncer.query_timeout_s


def _write_secrets(topology, values):
    directory = topology.state_dir / "secrets"
    directory.mkdir(parents=True)
    for name, value in values.items():
        (directory / name).write_text(value + "\n")


def test_output_masks_every_secret_of_the_stack(topology):
    _write_secrets(topology, {"redis": "R3disSecretValue0123456789abcdef",
                              "app_db": "AppDbSecretValue0123456789abcdefg", "short": "abc"})
    secrets = stack_secret_values(topology)
    assert "abc" not in secrets and len(secrets) == 2
    outcome = Outcome(title="t", columns=["url"],
                      rows=[["redis://:R3disSecretValue0123456789abcdef@cache"]],
                      notes=["password=AppDbSecretValue0123456789abcdefg"])
    for as_json in (False, True):
        out = io.StringIO()
        render(outcome, secrets, as_json=as_json, stream=out)
        text = out.getvalue()
        assert "SecretValue" not in text and "[redacted]" in text
    assert redact("x AppDbSecretValue0123456789abcdefg y", secrets) == "x [redacted] y"


def test_json_output_is_records(topology, capsys):
    outcome = Outcome(title="t", columns=["a", "b"], rows=[[1, "x"]], notes=["n"])
    out = io.StringIO()
    render(outcome, [], as_json=True, stream=out)
    assert json.loads(out.getvalue()) == {"ok": True, "title": "t",
                                          "rows": [{"a": 1, "b": "x"}], "notes": ["n"]}


def test_env_prints_the_runbook_placeholders_without_secrets(capsys):
    assert cli.main(["env", "--stack", "lab", "--host", "app1", "--service", "app"]) == 0
    out = capsys.readouterr().out
    assert "export CP_STACK=lab" in out
    assert "export CP_ALERT_HOST=app1" in out and "export CP_ALERT_SERVICE=app" in out
    for value in stack_secret_values(LAB):
        assert value not in out


def test_resolve_stack_finds_a_deployed_throwaway_stack(tmp_path):
    stack_file = tmp_path / "zeta.yaml"
    stack_file.write_text(load_stack("lab").source.read_text().replace("stack: lab",
                                                                        "stack: zeta"))
    state_root = tmp_path / "state"
    (state_root / "zeta" / "work").mkdir(parents=True)
    (state_root / "zeta" / "work" / "inventory.yml").write_text(
        f"# Generated from {stack_file} by infra/inventory.py; do not edit.\nall: {{}}\n")
    assert resolve_stack("zeta", state_root).stack == "zeta"
    assert resolve_stack(str(stack_file), state_root).stack == "zeta"
    with pytest.raises(ConfigError, match="no stack named 'omega'"):
        resolve_stack("omega", state_root)
    (state_root / "omega" / "work").mkdir(parents=True)
    (state_root / "omega" / "work" / "inventory.yml").write_text(
        f"# Generated from {stack_file} by infra/inventory.py; do not edit.\n")
    with pytest.raises(ConfigError, match="now defines stack 'zeta'"):
        resolve_stack("omega", state_root)


def test_tables_are_plain_text_with_whole_cells():
    long_action = "host app1 was down: started its supervisord (and all its programs) " * 3
    outcome = Outcome(title="restart app", columns=["host", "action", "after"],
                      rows=[["app1", long_action, "ok"], ["app2", None, 0.25]],
                      notes=["n"])
    out = io.StringIO()
    render(outcome, [], stream=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "restart app"
    assert lines[1].split() == ["host", "action", "after"]
    assert set(lines[2].replace(" ", "")) == {"-"}
    # Never folded at a width: a runbook's check on the output sees the whole cell.
    assert lines[3].startswith("app1  " + long_action.rstrip())
    assert lines[3].endswith("  ok")
    assert lines[4].split() == ["app2", "0.25"]
    assert lines[5] == "n"
    # Columns line up: every cell of a column starts where its header does.
    assert lines[3].index("ok") == lines[1].index("after") == lines[4].index("0.25")
