"""The walls around a student's kernel, put up in its own mount namespace before it starts.

Run as a script (``python -I -S sandbox.py --work DIR --hide PATH ... -- KERNEL COMMAND``) by
the command prefix of :func:`emgeo.course.grading.kernel.kernel_prefix`, inside
``unshare --mount --net``: it lays an empty read-only tmpfs over every ``--hide`` folder and
``/dev/null`` over every such file (the submissions, the gradebook's folder, the grader's home or
its credentials), gives ``/dev/shm`` a private tmpfs, binds the working copy onto itself, makes
every other mount read-only, then drops every capability (``setpriv``) so that none of it can be
undone, and execs the kernel. Only the standard library is imported: the script runs before
anything of the course is importable.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_RELATIME = 1 << 21
# statvfs flags (ST_*) and the mount flags (MS_*) that keep them on a remount.
_KEPT = {2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, 1024: MS_NOATIME, 2048: MS_NODIRATIME}
_ST_RELATIME = 4096
_LIBC = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    args = (source.encode(), target.encode(), fstype.encode() if fstype else None, flags)
    if _LIBC.mount(*args, data.encode() or None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _mountpoints() -> list[str]:
    """Every mount point of this namespace, deepest last (octal escapes of mountinfo decoded)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f]
    decoded = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), p) for p in points]
    return list(dict.fromkeys(decoded))


def _read_only(point: str) -> None:
    """Remount ``point`` read-only, keeping the flags it has (a namespace may not drop them)."""
    flag = os.statvfs(point).f_flag
    keep = sum(ms for st, ms in _KEPT.items() if flag & st)
    keep |= MS_RELATIME if flag & _ST_RELATIME else 0
    _mount("none", point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)


def enclose(work: str, hidden: list[str]) -> None:
    """Hide ``hidden`` (folders and files), keep ``work`` writable, make every other mount
    read-only."""
    for folder in hidden:
        if os.path.isdir(folder):
            _mount("emgeo-hidden", folder, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k")
        elif os.path.exists(folder):  # a file: an empty one in its place
            _mount("/dev/null", folder, None, MS_BIND)
    _mount("emgeo-shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=256m")
    _mount(work, work, None, MS_BIND)
    for point in _mountpoints():
        if point in (work, "/dev/shm") or point in hidden:
            continue
        try:
            _read_only(point)
        except OSError:
            if point == "/":
                raise  # the root must not stay writable: no kernel starts then


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="start a kernel that sees only its own folder")
    parser.add_argument("--work", required=True)
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    enclose(os.path.realpath(args.work), [os.path.realpath(h) for h in args.hide])
    os.chdir(os.getcwd())  # onto the mounts just made (the old folder is now read-only under them)
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    drop = ["--bounding-set=-all", "--inh-caps=-all", "--no-new-privs"]
    os.execv(setpriv, [setpriv, *drop, "--", *command])


if __name__ == "__main__":
    main(sys.argv[1:])
