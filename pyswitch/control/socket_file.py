"""The control socket's file: who may drive the switch.

Linux lets a process connect(2) to a Unix socket only if it may write the socket's inode, so the file's owner,
group and mode are the whole access control: root (the switch's own user) alone with mode 0600, or also the
members of `[control] group` with mode 0660 and that group.

The socket never appears at its path with a wider mode than it ends with: it is bound inside a private 0700
directory next to its final place, given its group and mode there, and renamed into place (rename(2) is atomic
and keeps the inode).  No process-wide umask is changed, so threads that create files meanwhile are unaffected.

The directory that holds sockets must not be writable by other users, who could otherwise replace a switch's
socket with their own and read the commands root sends to it.
"""
from __future__ import annotations

import grp
import os
import socket
import stat
import tempfile

DIRECTORY_MODE = 0o755      # others may look up a socket by name; the socket's own mode decides who connects
OWNER_ONLY_MODE = 0o600     # no [control] group: only the switch's user
GROUP_MODE = 0o660          # [control] group: that group's members too


class ControlSocketError(RuntimeError):
    """The control socket cannot be made safely; the message is one sentence for the user."""


def prepare_directory(directory: str) -> None:
    """Creates `directory` (0755) if it is missing, and refuses one that other users could write to."""
    try:
        os.makedirs(os.path.dirname(directory.rstrip("/")) or "/", exist_ok=True)
        os.mkdir(directory, DIRECTORY_MODE)
        os.chmod(directory, DIRECTORY_MODE)     # mkdir's mode went through the umask
    except FileExistsError:
        pass
    except OSError as exc:
        raise ControlSocketError(f"cannot create the control socket directory {directory}: {exc.strerror} "
                                 f"(give a directory this user may write with --control-dir or "
                                 f"[switch] control_dir)") from None
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise ControlSocketError(f"the control socket directory {directory} is not a directory")
    if info.st_mode & stat.S_IWOTH:
        raise ControlSocketError(f"the control socket directory {directory} is writable by every user, who could "
                                 f"replace the switch's socket; use a directory only its owner can write")
    if info.st_uid not in (0, os.geteuid()):
        raise ControlSocketError(f"the control socket directory {directory} belongs to another user "
                                 f"(uid {info.st_uid})")


def group_id(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ControlSocketError(f"control.group: there is no group named {group!r} on this system") from None


def bind(path: str, group: str | None) -> socket.socket:
    """A listening-ready socket bound at `path`, owned by this user, 0600 or (with `group`) 0660 and that group."""
    gid = group_id(group) if group is not None else None
    directory = os.path.dirname(path)
    try:
        private = tempfile.mkdtemp(prefix=".bind-", dir=directory)     # 0700: nobody else reaches inside
    except PermissionError:
        raise ControlSocketError(f"cannot create the control socket in {directory}: permission denied (give a "
                                 f"directory this user may write with --control-dir or [switch] control_dir)") \
            from None
    staged = os.path.join(private, "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(staged)
        if gid is not None:
            try:
                os.chown(staged, -1, gid)
            except PermissionError:
                raise ControlSocketError(f"control.group: cannot give the control socket to group {group!r} "
                                         f"(the switch's user must be a member of it, or have CAP_CHOWN)") from None
        os.chmod(staged, GROUP_MODE if gid is not None else OWNER_ONLY_MODE)
        os.rename(staged, path)
    except BaseException:
        sock.close()
        _remove(staged)
        raise
    finally:
        os.rmdir(private)
    return sock


def is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
