"""Atomic writes: the payload reaches the disk before its finished name does (aesthetics.md §8.11)."""

import os
import stat

import pytest

from vaetransfer import io


def test_data_is_flushed_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    """A power loss after the rename must not leave the finished name on unflushed data."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        mode = os.fstat(fd).st_mode
        events.append(("fsync", "dir" if stat.S_ISDIR(mode) else os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "ckpt" / "step10.json"
    io.write_json(target, {"step": 10})
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    tmp_name = events[1][1]
    assert events[0][1] == tmp_name and events[1][2] == str(target)  # the temporary's data, then rename
    assert events[2][1] == "dir"
    assert io.read_json(target) == {"step": 10}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "table.json"
    io.write_json(target, {"rows": 3})
    with pytest.raises(RuntimeError, match="disk full"):
        with io.atomic_path(target) as tmp:
            tmp.write_text('{"rows": ')
            raise RuntimeError("disk full")
    assert io.read_json(target) == {"rows": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["table.json"]
