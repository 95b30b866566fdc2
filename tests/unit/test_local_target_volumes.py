"""destroy's view of a stack's volumes: which mounts and loop devices are the stack's."""

from __future__ import annotations

from pathlib import Path

from infra.targets.local_lifecycle import loop_devices_backed_by, mounts_under

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
90 27 7:0 / /var/lib/civicpulse/df/hosts/db/postgresql/volume rw,noatime - ext4 /dev/loop0 rw
91 90 0:50 / /var/lib/civicpulse/df/hosts/db/postgresql/volume/data/x rw - tmpfs tmpfs rw
92 27 7:1 / /var/lib/civicpulse/df2/hosts/db/postgresql/volume rw - ext4 /dev/loop1 rw
93 27 0:51 / /var/lib/civicpulse/df/hosts/db/with\\040space rw - tmpfs tmpfs rw
94 27 0:52 / /var/lib/civicpulse/df rw - tmpfs tmpfs rw
"""


def test_mounts_under_the_state_dir_deepest_first(tmp_path: Path):
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    found = mounts_under(Path("/var/lib/civicpulse/df"), info)
    assert found[0] == Path("/var/lib/civicpulse/df/hosts/db/postgresql/volume/data/x")
    assert set(found) == {
        Path("/var/lib/civicpulse/df/hosts/db/postgresql/volume/data/x"),
        Path("/var/lib/civicpulse/df/hosts/db/postgresql/volume"),
        Path("/var/lib/civicpulse/df/hosts/db/with space"),
    }  # not the state dir itself, nor the other stack "df2" that shares its prefix


def test_loop_devices_of_images_inside_the_state_dir(tmp_path: Path):
    sys_block = tmp_path / "block"
    for name, backing in (("loop0", "/var/lib/civicpulse/df/hosts/db/postgresql-volume.img"),
                          ("loop1", "/var/lib/civicpulse/df2/hosts/db/postgresql-volume.img"),
                          ("loop2", "/var/lib/civicpulse/df/hosts/db/old.img (deleted)")):
        (sys_block / name / "loop").mkdir(parents=True)
        (sys_block / name / "loop" / "backing_file").write_text(backing + "\n")
    (sys_block / "loop3").mkdir()  # not attached: no loop/ directory
    assert loop_devices_backed_by(Path("/var/lib/civicpulse/df"), sys_block) == [
        "/dev/loop0", "/dev/loop2"]
