"""Atomic replacement: a failed write never tears the file that was there."""

import errno
import os

import pytest

from aedr.files import replacing, write_atomic


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old and complete")
    with pytest.raises(OSError, match="No space"), replacing(path) as stream:
        stream.write("new and ha")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert path.read_text() == "old and complete"
    assert sorted(tmp_path.iterdir()) == [path]  # the temporary file is gone


def test_an_interrupt_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), replacing(path, "wb") as stream:
        stream.write(b"new")
        raise KeyboardInterrupt
    assert path.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [path]


def test_a_replaced_file_keeps_its_mode_and_a_link_stays_a_link(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert real.stat().st_mode & 0o777 == 0o640


def test_a_new_file_gets_the_umask_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "new.txt", b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644


def test_a_device_is_written_in_place(tmp_path):
    with pytest.raises(OSError) as raised, replacing("/dev/full") as stream:
        stream.write("x" * 10_000)
    assert raised.value.errno == errno.ENOSPC and os.path.exists("/dev/full")
