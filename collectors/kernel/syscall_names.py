"""x86_64 syscall numbers → names, read from the system's ``asm/unistd_64.h`` (pure
parsing; a missing header gives ``nr_<n>`` names rather than a failure)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

__all__ = ["parse_unistd", "syscall_name"]

_HEADERS = (
    Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    Path("/usr/include/asm/unistd_64.h"),
)
_DEFINE = re.compile(r"^#define\s+__NR_(\w+)\s+(\d+)\s*$", re.MULTILINE)


def parse_unistd(text: str) -> dict[int, str]:
    """``#define __NR_read 0`` lines → {0: "read"}.

    >>> parse_unistd("#define __NR_read 0\\n#define __NR_write 1\\n")
    {0: 'read', 1: 'write'}
    """
    return {int(nr): name for name, nr in _DEFINE.findall(text)}


@functools.cache
def _table() -> dict[int, str]:
    for header in _HEADERS:
        try:
            return parse_unistd(header.read_text())
        except OSError:
            continue
    return {}


def syscall_name(nr: int) -> str:
    return _table().get(nr, f"nr_{nr}")
