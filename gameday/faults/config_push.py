"""A configuration pushed by hand to a running Prometheus or Alertmanager, then reloaded.

Deploy renders and validates (promtool, amtool) what it pushes, so these are the
drifts a hand edit (or a tool that skipped the check) makes. `change`:

- `broken`: a setting neither program knows, marked as ours, is appended to the
  deployed `prometheus.yml` / `alertmanager.yml`, then `POST /-/reload` (on the
  service's own loopback address). Both refuse unknown fields, keep running the
  previous configuration and set `*_config_last_reload_successful` to 0: nothing
  else changes, which is the point of the alert. (Restarting the program now would
  fail: the runbooks say not to.)
- `no_alertmanagers` (Prometheus only): a valid configuration whose `alerting`
  section lists no Alertmanager. The reload succeeds; Prometheus evaluates every rule
  and notifies nobody (`prometheus_notifications_alertmanagers_discovered` 0).

Rollback: the rollback log holds the file's original text before it is touched; the
undo writes it back and reloads. Cleanup's sweep, which needs no log, strips what
`broken` appended and reloads, and reports a file `no_alertmanagers` left (marked, but
its original is only in the log): `invoke deploy` renders it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

from gameday.faults.base import UndoContext, undo_handler, write_like
from gameday.faults.config_file import ConfigFileFault, deployed_files, restore_original
from infra.paths import host_dir
from infra.topology import Service, Topology

#: service → its configuration file, relative to the host's directory.
CONFIG_FILES = {"prometheus": "prometheus/prometheus.yml",
                "alertmanager": "alertmanager/alertmanager.yml"}
MARKER = "# civicpulse-gameday: broken on purpose (config_push)"
BROKEN = f"\n{MARKER}\ncivicpulse_gameday_not_a_setting: true\n"


def config_path(topology: Topology, service: Service) -> Path:
    return host_dir(topology, service.host) / CONFIG_FILES[service.name]


def broken(text: str) -> str:
    return text + BROKEN


NO_ALERTMANAGERS_MARKER = "# civicpulse-gameday: alertmanagers removed on purpose (config_push)"


def without_alertmanagers(text: str) -> str:
    """prometheus.yml with an `alerting` section that lists no Alertmanager (valid)."""
    config = yaml.safe_load(text)
    if not isinstance(config, dict):
        raise ValueError("prometheus.yml is not a mapping")
    config["alerting"] = {"alertmanagers": []}
    return f"{NO_ALERTMANAGERS_MARKER}\n" + yaml.safe_dump(config, sort_keys=False)


def repaired(text: str) -> str:
    """The text without what `broken` appended (also if it was appended twice)."""
    while BROKEN in text:
        text = text.replace(BROKEN, "", 1)
    return text


def reload(service: Service, timeout_s: float = 10) -> int:
    """POST /-/reload to the service; its HTTP status (200: the reload succeeded)."""
    response = httpx.post(f"http://{service.endpoint}/-/reload", timeout=timeout_s)
    return response.status_code


@undo_handler("restore_config_and_reload")
def _restore(ctx: UndoContext, undo: dict[str, Any]) -> str:
    svc, path = restore_original(ctx, undo, config_path, ConfigPush.file_label)
    status = reload(svc)
    if status != 200:
        raise RuntimeError(f"{svc.name}@{svc.host} restored {path.name}, but its reload "
                           f"answered HTTP {status}")
    return f"{path.name} restored, {svc.name} reloaded (HTTP 200)"


def repair_marked_configs(topology: Topology) -> list[str]:
    """For cleanup without a log: strip our marked lines from every such file, reload."""
    done = []
    for name in CONFIG_FILES:
        for svc, path, text in deployed_files(topology, topology.instances(name), config_path):
            if NO_ALERTMANAGERS_MARKER in text:
                raise RuntimeError(f"{path} lists no Alertmanager (a config_push GameDay "
                                   "left it and its rollback log is gone): run `invoke "
                                   f"deploy --stack {topology.stack}` to render it again")
            if MARKER not in text:
                continue
            write_like(path, repaired(text))
            done.append(f"{path.name} of {svc.name}@{svc.host} repaired, reload HTTP "
                        f"{reload(svc)}")
    return done


class ConfigPush(ConfigFileFault):
    kind = "config_push"
    restore_handler = "restore_config_and_reload"
    file_label = "configuration"
    config_path = staticmethod(config_path)

    def reload(self, service: Service) -> int:
        return reload(service)

    def plan(self) -> list[str]:
        svc = self.service
        if self.params.change == "no_alertmanagers":
            return [f"remove every Alertmanager from {self.path} and POST /-/reload to "
                    f"{svc.name}@{svc.host} (it must accept it and notify nobody), "
                    f"{self.spec.duration_s:g}s"]
        return [f"append an unknown setting to {self.path} and POST /-/reload to "
                f"{svc.name}@{svc.host} (it must refuse and keep its configuration), "
                f"{self.spec.duration_s:g}s"]

    def preflight(self) -> list[str]:
        if self.service.name not in CONFIG_FILES:
            return [f"config_push targets {' or '.join(CONFIG_FILES)}, not "
                    f"{self.service.name}"]
        if self.params.change == "no_alertmanagers" and self.service.name != "prometheus":
            return [f"config_push change no_alertmanagers applies to prometheus, not "
                    f"{self.service.name}"]
        return self.missing_file()

    async def inject(self) -> None:
        original = self.read_original()
        svc = self.service
        if MARKER in original or NO_ALERTMANAGERS_MARKER in original:
            raise RuntimeError(f"{self.path} is already changed by a GameDay: run "
                               "`invoke gameday --cleanup` first")
        removing = self.params.change == "no_alertmanagers"
        pushed = without_alertmanagers(original) if removing else broken(original)
        what = "without Alertmanagers" if removing else "broken"
        status = await self.push(f"{self.path.name} of {svc.name}@{svc.host} {what} and reloaded",
                                 original, pushed)
        intended = (status == 200) == removing
        self.ctx.log(f"{self.path.name} {what}; {svc.name} reload answered HTTP {status}"
                     + (" (as intended)" if intended else " (NOT as intended: the fault did "
                                                          "not take)"))
