"""Which mapped files carry their own OpenSSL: ELF dynamic-symbol look-ups (pyelftools).

Official Node.js builds link OpenSSL into the ``node`` executable and export
``SSL_write``/``SSL_read``/``_ex`` from its dynamic symbol table; no ``libssl.so`` is ever
mapped. Any file a pod process maps executable and that *defines* ``SSL_write`` is
therefore probed like a libssl. A program that merely imports ``SSL_write`` (curl, the
CPython ``_ssl`` module) has it undefined in ``.dynsym`` and is not a candidate: its
calls land in the libssl it links, which is probed on its own.

The look-up goes through the GNU (or SysV) hash table, so a ~100 MB ``node`` costs one
hash probe, not a walk over its tens of thousands of symbols. Results are cached per
file identity by :class:`ExportCache`, so a file is parsed once however many processes
map it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.hash import ELFHashSection, GNUHashSection
from elftools.elf.sections import Symbol, SymbolTableSection

__all__ = ["TLS_MARKER", "ExportCache", "defines_symbol"]

TLS_MARKER = "SSL_write"  # the one symbol whose definition makes a file a TLS library
_HASH_TYPES = ("SHT_GNU_HASH", "SHT_HASH")


def defines_symbol(path: str, name: str = TLS_MARKER) -> bool:
    """Whether the ELF file at ``path`` exports a defined function ``name``.

    Raises ``OSError`` if the file cannot be read and ``ELFError`` if it is not ELF.
    """
    with open(path, "rb") as fh:
        elf = ELFFile(fh)
        symbol: Symbol | None = None
        for kind in _HASH_TYPES:
            table = next(elf.iter_sections(type=kind), None)
            if isinstance(table, GNUHashSection | ELFHashSection):
                symbol = table.get_symbol(name)
                break
        else:  # no hash table (unusual): walk .dynsym
            dynsym = elf.get_section_by_name(".dynsym")
            if not isinstance(dynsym, SymbolTableSection):
                return False
            found = dynsym.get_symbol_by_name(name)
            symbol = found[0] if found else None
        if symbol is None:
            return False
        return (symbol["st_shndx"] != "SHN_UNDEF"
                and symbol["st_info"]["type"] in ("STT_FUNC", "STT_GNU_IFUNC"))


class ExportCache:
    """Remembers per file identity (e.g. the ``dev inode`` of a maps line) whether the
    file defines ``SSL_write``; ``stats`` counts parses, their total µs, and failures."""

    def __init__(self, check: Callable[[str], bool] = defines_symbol) -> None:
        self.check = check
        self.known: dict[Hashable, bool] = {}
        self.stats: dict[str, int] = {"elf_parsed": 0, "elf_errors": 0, "elf_parse_us": 0}

    def exports_tls(self, key: Hashable, path: str) -> bool:
        """Cached answer for ``key``; parses ``path`` the first time it is asked.

        A file that cannot be read (the process exited; a race) is not cached, so a
        later process mapping it asks again; a file that is not ELF is cached as no.
        """
        cached = self.known.get(key)
        if cached is not None:
            return cached
        start = time.perf_counter_ns()
        try:
            answer = self.check(path)
        except OSError:
            self.stats["elf_errors"] += 1
            return False
        except (ELFError, ConstructError, ValueError, KeyError, IndexError, EOFError):
            # pyelftools raises its own errors, or construct/struct ones on a
            # truncated or odd file: not a library we can probe
            self.stats["elf_errors"] += 1
            answer = False
        self.stats["elf_parsed"] += 1
        self.stats["elf_parse_us"] += (time.perf_counter_ns() - start) // 1000
        self.known[key] = answer
        return answer
