"""Who may drive a switch: the control socket is 0600 and root's, or 0660 and its [control] group's; a user who
is neither cannot connect.  The users are real: clients run under setpriv as nobody, with or without the group.

The server is the switch's own ControlServer, served in a thread; the clients are separate processes."""
import os
import shutil
import stat
import subprocess
import sys
import threading
import uuid

import pytest

from pyswitch.control.server import ControlServer
from pyswitch.control.socket_file import ControlSocketError

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup"]
# A client as another process: connect, ask, print the answer, or print the errno's name when connect fails.
CLIENT = r"""
import errno, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(errno.errorcode[exc.errno]); sys.exit(3)
s.sendall(b'{"cmd": "show", "what": "stats"}\n')
s.shutdown(socket.SHUT_WR)
print(s.recv(4096).decode().strip())
"""


@pytest.fixture
def control_dir():
    """A directory under /run that every user may traverse (pytest's own tmp dirs are 0700, which would hide
    the socket from other users whatever its mode)."""
    path = f"/run/psw-ctl-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def group():
    """A system group made for this test, removed after it."""
    name = f"psw-adm-{uuid.uuid4().hex[:6]}"
    subprocess.run(["groupadd", "--system", name], check=True)
    yield name
    subprocess.run(["groupdel", name], check=True)


class Served:
    """A ControlServer answering in a thread until closed."""

    def __init__(self, directory, group=None):
        self.server = ControlServer("t1", directory, lambda command: {"answered": command["what"]}, group=group)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.wait(0.01):
            self.server.serve_pending()

    def close(self):
        self._stop.set()
        self._thread.join()
        self.server.close()


@pytest.fixture
def served():
    running = []

    def start(directory, group=None):
        running.append(Served(directory, group))
        return running[-1].server

    yield start
    for s in running:
        s.close()


def connect_as(path, *setpriv_args):
    argv = [*NOBODY, *setpriv_args, sys.executable, "-c", CLIENT, path] if setpriv_args else \
        [sys.executable, "-c", CLIENT, path]
    return subprocess.run(argv, capture_output=True, text=True, timeout=10)


def test_socket_is_roots_alone(control_dir, served):
    server = served(control_dir)
    info = os.stat(server.path)
    assert stat.S_ISSOCK(info.st_mode)
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, os.geteuid())
    directory = os.stat(control_dir)
    assert stat.S_IMODE(directory.st_mode) == 0o755      # not world-writable: nobody can swap the socket
    assert os.listdir(control_dir) == ["t1.sock"]        # the private bind directory is gone

    root = connect_as(server.path)
    assert root.returncode == 0 and '"answered": "stats"' in root.stdout, root
    nobody = connect_as(server.path, "--clear-groups")
    assert (nobody.returncode, nobody.stdout.strip()) == (3, "EACCES"), nobody


def test_group_members_may_connect_and_others_not(control_dir, served, group):
    server = served(control_dir, group=group)
    info = os.stat(server.path)
    gid = int(subprocess.run(["getent", "group", group], capture_output=True, text=True, check=True)
              .stdout.split(":")[2])
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o660, os.geteuid(), gid)

    member = connect_as(server.path, f"--groups={gid}")
    assert member.returncode == 0 and '"answered": "stats"' in member.stdout, member
    outsider = connect_as(server.path, "--clear-groups")
    assert (outsider.returncode, outsider.stdout.strip()) == (3, "EACCES"), outsider


def test_unknown_group_is_named(control_dir):
    with pytest.raises(ControlSocketError, match=r"^control.group: there is no group named 'psw-no-such-group'"):
        ControlServer("t1", control_dir, lambda c: None, group="psw-no-such-group")
    assert not os.path.exists(os.path.join(control_dir, "t1.sock"))


def test_world_writable_directory_is_refused(control_dir):
    os.mkdir(control_dir)
    os.chmod(control_dir, 0o777)
    with pytest.raises(ControlSocketError, match=r"is writable by every user"):
        ControlServer("t1", control_dir, lambda c: None)
    assert os.listdir(control_dir) == []


def test_a_file_in_the_sockets_place_is_not_removed(control_dir):
    os.mkdir(control_dir, 0o755)
    path = os.path.join(control_dir, "t1.sock")
    with open(path, "w") as f:
        f.write("not a socket")
    with pytest.raises(ControlSocketError, match=r"exists and is not a socket"):
        ControlServer("t1", control_dir, lambda c: None)
    with open(path) as f:
        assert f.read() == "not a socket"


def test_a_dead_switchs_socket_is_replaced(control_dir, served):
    first = ControlServer("t1", control_dir, lambda c: None)
    first.sock.close()          # dies without unlinking: the file stays, nobody listens
    assert os.path.exists(first.path)
    server = served(control_dir)
    assert connect_as(server.path).returncode == 0
    with pytest.raises(RuntimeError, match="already running"):
        ControlServer("t1", control_dir, lambda c: None)


def test_cli_says_permission_denied(control_dir, served):
    """`pyswitch show` as a user who may not connect: one sentence, not 'no switch is running'."""
    served(control_dir)
    os.chmod(control_dir, 0o755)
    result = subprocess.run([*NOBODY, "--clear-groups", sys.executable, "-m", "pyswitch", "show", "stats",
                             "--name", "t1", "--control-dir", control_dir], capture_output=True, text=True,
                            timeout=20, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 1
    assert result.stderr.startswith("pyswitch: permission denied on the control socket of switch 't1'"), result.stderr


def test_a_running_switch_honours_control_group(control_dir, group):
    """The whole way: `[control] group` in a config, `pyswitch run` as root, `pyswitch show` as a member and as
    an outsider.  The switch has no ports: only its control socket is under test."""
    os.mkdir(control_dir, 0o755)
    config = os.path.join(control_dir, "sw.toml")       # /run/psw-ctl-*: readable by nobody, unlike tmp_path
    with open(config, "w") as f:
        f.write(f'[switch]\nname = "grp"\ncontrol_dir = "{control_dir}"\n\n[control]\ngroup = "{group}"\n')
    gid = int(subprocess.run(["getent", "group", group], capture_output=True, text=True, check=True)
              .stdout.split(":")[2])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    switch = subprocess.Popen([sys.executable, "-m", "pyswitch", "run", config], cwd=root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        path = os.path.join(control_dir, "grp.sock")
        for _ in range(300):
            if os.path.exists(path) or switch.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert switch.poll() is None, switch.stderr.read()
        info = os.stat(path)
        assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o660, gid)

        def show(*groups):
            return subprocess.run([*NOBODY, *groups, sys.executable, "-m", "pyswitch", "show", "stats", "--json",
                                   "--name", "grp", "--control-dir", control_dir], capture_output=True, text=True,
                                  timeout=20, cwd=root)

        member = show(f"--groups={gid}")
        assert member.returncode == 0 and '"name": "grp"' in member.stdout, member
        outsider = show("--clear-groups")
        assert outsider.returncode == 1 and "permission denied" in outsider.stderr, outsider
    finally:
        switch.terminate()
        assert switch.wait(timeout=10) == 0
