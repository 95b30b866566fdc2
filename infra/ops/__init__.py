"""Operational commands the runbooks call, for a human on call and for the GameDay runner.

    python -m infra.ops <command> --stack <stack> [options]

Each command is also a plain function (taking a `Topology`) returning an `Outcome`, so
tests and other tools can call it without the CLI. Commands never print a secret: every
output passes through `infra.ops.outcome.redact`, which masks the stack's secret values.
`python -m infra.ops --help` lists the commands; `runbooks/README.md` explains how the
runbooks use them.

Nothing is imported here on purpose: `import infra.ops.outcome` must not pull in every
command module (and their database drivers). The drained-hosts record the commands
keep lives below them, in `infra.drained`, because deploys read it too.
"""
