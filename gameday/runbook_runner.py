"""Execute a runbook's fenced shell blocks, the way an on-call engineer would.

Runbooks (`runbooks/<AlertName>.md`, prometheus-operator style: Meaning / Impact /
Diagnosis / Mitigation) mark the commands to run with an info string:

    ```sh step=diagnose
    supervisorctl -c "$CP_POSTGRESQL_SUPERVISOR_CONF" status postgresql
    ```

`step` is diagnose, mitigate or verify. Optional attributes: `timeout=<s>` (overrides
the scenario's step timeout), `attempts=<n>` and `interval=<s>` (retry a verify block
until it passes, e.g. while a service comes back), `expect=<regex>` (stdout must
contain a match, besides exit status 0). Blocks without `step=` are prose
examples and never run. Each block runs with `bash -euo pipefail`, in its own
process group (so a timeout kills everything it started), with CP_* environment
variables describing the stack (see `infra.runbook_env`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gameday.runbook_markdown import STEPS, RunbookBlock, RunbookError, parse_runbook
from infra.topology import REPO_ROOT

OUTPUT_LIMIT = 8000


@dataclass
class StepResult:
    step: str
    line: int
    started: float
    duration_s: float
    exit_code: int | None
    timed_out: bool
    attempts: int
    stdout: str
    stderr: str
    #: None: the block has no expect=; else whether stdout matched it.
    expect_matched: bool | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.expect_matched is not False


@dataclass
class RunbookResult:
    path: str
    found: bool
    steps_requested: list[str]
    results: list[StepResult] = field(default_factory=list)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.found and self.problem is None and all(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def _truncate(text: str) -> str:
    if len(text) <= OUTPUT_LIMIT:
        return text
    return text[:OUTPUT_LIMIT // 2] + "\n…[truncated]…\n" + text[-OUTPUT_LIMIT // 2:]


def run_block(block: RunbookBlock, env: dict[str, str], timeout_s: float, cwd: Path,
              clock: Callable[[], float] = time.monotonic) -> StepResult:
    """Run one block (retrying up to `attempts`), killing its process group on timeout."""
    timeout = block.timeout_s or timeout_s
    started = clock()
    deadline = time.monotonic() + timeout
    attempt = 0
    out = err = ""
    code: int | None = None
    timed_out = False
    matched: bool | None = None
    while attempt < block.attempts:
        attempt += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        proc = subprocess.Popen(
            ["/bin/bash", "-euo", "pipefail", "-c", block.code], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        try:
            out, err = proc.communicate(timeout=remaining)
            code = proc.returncode
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            code, timed_out = None, True
            break
        if block.expect is not None:
            matched = re.search(block.expect, out or "", re.MULTILINE) is not None
        if code == 0 and matched is not False:
            break
        if attempt < block.attempts:
            time.sleep(min(block.interval_s, max(0.0, deadline - time.monotonic())))
    return StepResult(step=block.step, line=block.line, started=started,
                      duration_s=round(clock() - started, 3), exit_code=code,
                      timed_out=timed_out, attempts=attempt, stdout=_truncate(out or ""),
                      stderr=_truncate(err or ""), expect_matched=matched)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_runbook(path: Path, steps: Sequence[str], env: dict[str, str], timeout_s: float,
                clock: Callable[[], float] = time.monotonic,
                on_step: Callable[[StepResult], None] | None = None,
                cwd: Path | None = None,
                should_stop: Callable[[], bool] = lambda: False) -> RunbookResult:
    """Run the blocks of the requested steps: all diagnose blocks, then mitigate, then
    verify, each in file order. A failing diagnose block does not stop the run (the
    engineer would read its output and go on); a failing mitigate block skips verify."""
    result = RunbookResult(path=str(path), found=path.is_file(), steps_requested=list(steps))
    if not result.found:
        result.problem = f"{path}: runbook not found"
        return result
    try:
        blocks = parse_runbook(path.read_text(encoding="utf-8"), str(path))
    except RunbookError as exc:
        result.problem = str(exc)
        return result
    wanted = [s for s in STEPS if s in steps]
    missing = [s for s in wanted if not any(b.step == s for b in blocks)]
    if missing:
        result.problem = f"{path}: no ```sh step={'/'.join(missing)} block"
    for step in wanted:
        for block in (b for b in blocks if b.step == step):
            if should_stop():
                return result
            step_result = run_block(block, env, timeout_s, cwd or REPO_ROOT, clock)
            result.results.append(step_result)
            if on_step:
                on_step(step_result)
            if step == "mitigate" and not step_result.ok:
                return result
    return result
