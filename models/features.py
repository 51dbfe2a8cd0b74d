"""What an event tells about its agent: categorical observations and rate quantities.

Generalization lives here, before anything is counted (Kubescape node-agent's lesson):
``/bin/bash`` and ``/usr/bin/bash`` are one executable, ``/tmp/tmp8x2k/123.txt`` is
``/tmp/<rand>/<num>.txt``, ``api.openai.com`` is ``openai.com``, a SQL tool argument is
its verb and table. A profile that counted raw values would call every temp file new.

Pure and deterministic: no IO, no clock. The public-suffix list is tldextract's bundled
snapshot (``suffix_list_urls=()``, no cache dir), so nothing is fetched.
"""

from __future__ import annotations

import functools
import ipaddress
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import tldextract

from streams.events import Envelope

__all__ = [
    "DIMENSIONS",
    "EXTERNAL_DIMENSIONS",
    "Observation",
    "PathTree",
    "arg_shapes",
    "argv_shape",
    "canonical_exe",
    "generalize_path",
    "observations",
    "quantities",
    "registrable_domain",
]


@dataclass(frozen=True, slots=True)
class Observation:
    """One categorical fact about an agent: ``value`` seen on ``dimension``."""

    dimension: str
    value: str


DIMENSIONS = (
    "process.exe", "process.exe_origin", "process.parent_child", "process.argv_shape",
    "process.interpreter_inline", "process.stdio", "process.namespace",
    "file.read", "file.write", "file.sensitive",
    "net.domain", "net.ip_prefix", "net.port", "net.listen_port", "net.unix", "dns.name",
    "l7.provider_model", "l7.http_host", "l7.tool_offered", "l7.tool_called", "l7.mcp_tool",
    "l7.tool_arg_shape", "l7.system_prompt_hash", "l7.tools_hash",
    "cloud.action", "cloud.resource", "cloud.error", "cloud.source", "l7.tool_method",
    "syscall",
)
# Dimensions whose values are network destinations (the "distinct destinations" rate).
EXTERNAL_DIMENSIONS = frozenset({"net.domain", "net.ip_prefix"})

# -- executables ---------------------------------------------------------------------------
# merged /usr (Debian, Fedora, Arch): /bin → /usr/bin and so on; one name per program.
_MERGED = (("/bin/", "/usr/bin/"), ("/sbin/", "/usr/sbin/"), ("/lib/", "/usr/lib/"),
           ("/lib64/", "/usr/lib64/"), ("/usr/sbin/", "/usr/bin/"))


@functools.lru_cache(maxsize=4096)
def canonical_exe(path: str) -> str:
    """One name per program, whichever merged-/usr alias or relative spelling ran it.

    >>> canonical_exe("/bin/bash") == canonical_exe("/usr/bin/bash") == "/usr/bin/bash"
    True
    >>> canonical_exe("/usr/local/bin/../bin/python3")
    '/usr/local/bin/python3'
    >>> canonical_exe("/proc/self/fd/3")
    '/proc/self/fd/<num>'
    """
    if not path:
        return ""
    if path.startswith("/"):
        path = posixpath.normpath(path)
        if path.startswith("//"):
            path = path[1:]
    for old, new in _MERGED:
        if path.startswith(old):
            path = new + path[len(old):]
    return generalize_path(path)


# -- paths ---------------------------------------------------------------------------------
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_NUM = re.compile(r"^\d+$")
_HEX = re.compile(r"^(?:0x)?[0-9a-f]{8,}$", re.I)
_VOWELS = frozenset("aeiouAEIOU")


def _is_random(stem: str, min_len: int = 6) -> bool:
    """A token no human chose: mixed letters and digits with few vowels (x8k2m9q4z7).
    Words and versions (python3, v2beta1, x86) stay."""
    if len(stem) < min_len:
        return False
    digits = sum(c.isdigit() for c in stem)
    letters = sum(c.isalpha() for c in stem)
    if digits == 0 or letters == 0 or "." in stem:
        return False
    vowels = sum(c in _VOWELS for c in stem)
    # random strings have digits spread among letters and few vowels
    return digits >= 2 and vowels * 4 < letters + digits


def _segment(seg: str) -> str:
    if not seg or seg in (".", ".."):
        return seg
    if _NUM.match(seg):
        return "<num>"
    if _UUID.match(seg):
        return "<uuid>"
    if _HEX.match(seg) and any(c.isdigit() for c in seg):
        return "<hex>"
    stem, dot, ext = seg.partition(".")
    if dot and stem and ext and len(ext) <= 8:
        g = _segment(stem)
        if g != stem:
            return f"{g}.{ext}"
    low = seg.lower()
    if low.startswith(_TEMP_PREFIXES) and len(seg) > 8:
        return "<rand>"
    seg = _DATE_IN.sub("<date>", _UUID_IN.sub("<uuid>", seg))
    tokens = _TOKEN_SPLIT.split(seg)
    if len(tokens) > 1:  # part-00042, build_3f9a2c1d7e, gen_7_test; x86_64-linux-gnu kept
        out: list[str] = []
        for tok in tokens:
            if tok in ("-", "_") or not tok:
                out.append(tok)
            elif tok.isdigit():  # every number, whatever its width (x86_64 excepted)
                out.append(tok if len(out) >= 2 and out[-2] == "x86" else "<num>")
            elif _HEX.match(tok) and any(c.isdigit() for c in tok):
                out.append("<hex>")
            elif _is_random(tok, 5):
                out.append("<rand>")
            else:
                out.append(tok)
        return "".join(out)
    if _is_random(seg):
        return "<rand>"
    return seg


_TEMP_PREFIXES = ("tmp", "pip-", "pymp-", "systemd-private-")
_TOKEN_SPLIT = re.compile(r"([-_])")
_DATE_IN = re.compile(r"(?<!\d)(?:19|20)\d\d-[01]\d-[0-3]\d(?:[T_]\d\d[:-]?\d\d(?:[:-]?\d\d)?)?")
_UUID_IN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


@functools.lru_cache(maxsize=16384)
def generalize_path(path: str) -> str:
    """Numeric, hex, uuid and random-looking segments become placeholders.

    >>> generalize_path("/tmp/tmp8x2k9q/123.txt")
    '/tmp/<rand>/<num>.txt'
    >>> generalize_path("/proc/4242/status")
    '/proc/<num>/status'
    >>> generalize_path("/var/lib/kubelet/pods/0b7c8d3e-1f2a-4b5c-9d8e-7f6a5b4c3d2e/volumes")
    '/var/lib/kubelet/pods/<uuid>/volumes'
    >>> generalize_path("/usr/lib/python3.11/json/__init__.py")
    '/usr/lib/python3.11/json/__init__.py'
    """
    if not path:
        return ""
    return "/".join(_segment(s) for s in path.split("/"))


# -- domains -------------------------------------------------------------------------------
_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@functools.lru_cache(maxsize=8192)
def registrable_domain(name: str) -> str:
    """The registrable domain (public suffix + one label) from tldextract's bundled list.

    Names with no public suffix (cluster-internal, single labels) and IP addresses are
    kept whole (lowercased, numeric labels generalized).

    >>> registrable_domain("API.OpenAI.com.")
    'openai.com'
    >>> registrable_domain("x.y.co.uk")
    'y.co.uk'
    >>> registrable_domain("redis.default.svc.cluster.local")
    'redis.default.svc.cluster.local'
    """
    name = name.strip().rstrip(".").lower()
    if not name:
        return ""
    if _is_ip(name):
        return name
    ext = _EXTRACT(name)
    if ext.suffix and ext.domain:
        return f"{ext.domain}.{ext.suffix}"
    return ".".join("<num>" if _NUM.match(p) else p for p in name.split("."))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=8192)
def ip_prefix(addr: str) -> str:
    """/24 for IPv4, /48 for IPv6: a destination's neighbourhood when no name resolved."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return ""
    bits = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


# -- process arguments ---------------------------------------------------------------------
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ash", "ksh", "busybox", "fish"})
INTERPRETERS = frozenset({
    "python", "python2", "python3", "node", "nodejs", "perl", "ruby", "php", "lua",
    "deno", "bun", "java", "pwsh",
}) | SHELLS
_INLINE_FLAGS = {"-c", "-e", "--eval", "-r", "--command", "-E", "-x"}
_PY_VERSION = re.compile(r"^(python|pypy)(\d+(\.\d+)*)?m?$")


def exe_name(exe: str) -> str:
    """Basename with interpreter versions dropped: python3.11 → python3."""
    base = exe.rsplit("/", 1)[-1]
    m = _PY_VERSION.match(base)
    if m:
        return m.group(1) + ("3" if (m.group(2) or "").startswith("3") else "")
    return base


def _arg_class(arg: str) -> str:
    if arg.startswith("-"):
        flag = arg.split("=", 1)[0]
        return flag if len(flag) <= 24 else "<flag>"
    if "://" in arg:
        return "<url>"
    if arg.startswith(("/", "./", "~/", "../")):
        return "<path>"
    if _NUM.match(arg):
        return "<num>"
    return "<arg>"


def argv_shape(exe: str, argv: Iterable[str]) -> str:
    """The program, its flags and the classes of its other arguments (first 8).

    >>> argv_shape("/usr/bin/git", ["git", "clone", "--depth", "1", "https://x/y.git"])
    'git <arg> --depth <num> <url>'
    """
    args = list(argv)[1:9]
    out = [exe_name(exe)]
    for a in args:
        c = _arg_class(str(a))
        if not (out and out[-1] == c == "<arg>"):
            out.append(c)
    return " ".join(out)


def interpreter_use(exe: str, argv: list[str], script: str) -> str:
    """How an interpreter was used: ``python3 -c``, ``bash script <path class>``, ``bash``
    (interactive / stdin). Empty for other programs."""
    name = exe_name(exe)
    if name not in INTERPRETERS:
        return ""
    for a in argv[1:]:
        if a in _INLINE_FLAGS or (a.startswith("-") and not a.startswith("--")
                                  and "c" in a[1:] and name in SHELLS):
            return f"{name} inline"
        if a == "-m" and name.startswith("python"):
            return f"{name} -m"
        if not a.startswith("-"):
            return f"{name} script {generalize_path(script or a)}"
    return f"{name} stdin" if script == "" else f"{name} script {generalize_path(script)}"


# -- tool arguments ------------------------------------------------------------------------
_SQL = re.compile(
    r"^\s*(?:with\b.*?\)\s*)?(select|insert|update|delete|drop|create|alter|truncate|grant|"
    r"revoke|merge|copy|replace|upsert)\b", re.I | re.S)
_SQL_TABLE = re.compile(
    r"\b(?:from|into|update|table|join)\s+(?:if\s+(?:not\s+)?exists\s+)?"
    r"[`\"\[]?([A-Za-z_][\w.]*)", re.I)
_SHELL_KEYS = frozenset({"command", "cmd", "script", "shell", "bash", "code_to_run", "argv"})


def _value_shape(key: str, value: Any) -> str:
    if isinstance(value, str):
        text = value.strip()
        m = _SQL.match(text)
        if m:
            t = _SQL_TABLE.search(text)
            return f"sql {m.group(1).upper()} {t.group(1).lower() if t else '?'}"
        if key.lower() in _SHELL_KEYS and text:
            first = text.split(None, 1)[0]
            return f"shell {exe_name(first)}"
        if "://" in text[:16]:
            host = text.split("://", 1)[1].split("/", 1)[0].split("@")[-1].split(":")[0]
            return f"url {registrable_domain(host)}"
        if text.startswith(("/", "~/", "./", "../")) and "\n" not in text[:256]:
            return f"path {generalize_path(posixpath.dirname(text[:256]))}/"
        return ""
    if isinstance(value, list) and key.lower() in _SHELL_KEYS and value:
        return f"shell {exe_name(str(value[0]))}"
    return ""


def arg_shapes(tool: str, arguments: Any) -> list[str]:
    """One shape per telling argument: SQL verb + table, path class, URL host, shell exe.

    >>> arg_shapes("query", {"sql": "SELECT * FROM users WHERE id=1"})
    ['query.sql=sql SELECT users']
    >>> arg_shapes("fetch", '{"url": "https://evil.example.net/x"}')
    ['fetch.url=url example.net']
    """
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            shape = _value_shape("", arguments)
            return [f"{tool}={shape}"] if shape else []
    if not isinstance(arguments, Mapping):
        return []
    out = []
    for i, (k, v) in enumerate(arguments.items()):
        if i >= 16:
            break
        shape = _value_shape(str(k), v)
        if shape:
            out.append(f"{tool}.{k}={shape}")
    return out


# -- observations --------------------------------------------------------------------------
def _exe_of(event: Envelope) -> str:
    exe = event.proc.exe if event.proc is not None else ""
    return exe or str(event.data.get("filename") or "")


def _process(event: Envelope) -> list[Observation]:
    data = event.data
    out: list[Observation] = []
    if event.kind == "process.exec":
        exe = canonical_exe(_exe_of(event))
        if not exe:
            return out
        out.append(Observation("process.exe", exe))
        origin = data.get("exe_origin")
        if origin:
            out.append(Observation("process.exe_origin", f"{origin} {exe_name(exe)}"))
        parent = data.get("parent_comm")
        if parent:
            out.append(Observation("process.parent_child", f"{parent}>{exe_name(exe)}"))
        argv = data.get("argv")
        argv = [str(a) for a in argv] if isinstance(argv, list) else []
        if argv:
            out.append(Observation("process.argv_shape", argv_shape(exe, argv)))
        use = interpreter_use(exe, argv, str(data.get("script") or ""))
        if use:
            out.append(Observation("process.interpreter_inline", use))
        stdio = data.get("stdio")
        if isinstance(stdio, Mapping):
            parts = []
            for fd in ("stdin", "stdout", "stderr"):
                s = stdio.get(fd)
                kind = s.get("type", "?") if isinstance(s, Mapping) else "?"
                parts.append(f"{fd}={kind}")
            out.append(Observation("process.stdio", " ".join(parts)))
        ns, pod_ns = data.get("ns"), data.get("pod_ns")
        if isinstance(ns, Mapping) and isinstance(pod_ns, Mapping):
            left = sorted(k for k in ns if k in pod_ns and ns[k] != pod_ns[k])
            if left:
                out.append(Observation("process.namespace", "exec outside " + ",".join(left)))
    elif event.kind == "process.setns":
        out.append(Observation("process.namespace", f"setns {data.get('nstype', '?')}"))
    elif event.kind == "process.unshare":
        flags = data.get("flags")
        text = ",".join(sorted(str(f) for f in flags)) if isinstance(flags, list) else "?"
        out.append(Observation("process.namespace", f"unshare {text}"))
    elif event.kind == "process.mount":
        out.append(Observation("process.namespace", f"mount {data.get('fstype', '?')} "
                               f"{generalize_path(str(data.get('target', '')))}"))
    return out


def _sensitive(data: Mapping[str, Any], op: str) -> list[Observation]:
    s = data.get("sensitive")
    if not isinstance(s, Mapping):
        return []
    cls = s.get("class") or s.get("rule") or "sensitive"
    return [Observation("file.sensitive", f"{cls} {op}")]


def _file(event: Envelope) -> list[Observation]:
    data = event.data
    path = str(data.get("path") or "")
    if not path:
        return []
    if event.kind == "file.open":
        result = data.get("result", 0)
        failed = isinstance(result, int) and result < 0
        access = data.get("access", "read")
        writes = access != "read" or bool(data.get("create")) or bool(data.get("truncate"))
        out = _sensitive(data, ("write" if writes else "read") + (" denied" if failed else ""))
        if not failed:
            out.append(Observation("file.write" if writes else "file.read",
                                   generalize_path(path)))
        return out
    op = event.kind.partition(".")[2]
    gpath = generalize_path(path)
    if event.kind == "file.chmod":
        op = "chmod+x" if data.get("exec_bit_added") else "chmod"
    elif event.kind == "file.rename":
        gpath = f"{gpath} -> {generalize_path(str(data.get('new_path') or ''))}"
    value = gpath if op == "write" else f"{op} {gpath}"
    return [*_sensitive(data, op), Observation("file.write", value)]


def _net(event: Envelope) -> list[Observation]:
    data = event.data
    out: list[Observation] = []
    if event.kind == "net.connect":
        if data.get("unix_path"):
            out.append(Observation("net.unix", generalize_path(str(data["unix_path"]))))
            return out
        domain = data.get("domain")
        if domain:
            out.append(Observation("net.domain", registrable_domain(str(domain))))
        elif data.get("dst_addr"):
            prefix = ip_prefix(str(data["dst_addr"]))
            if prefix:
                out.append(Observation("net.ip_prefix", prefix))
        if data.get("dst_port"):
            out.append(Observation("net.port", f"{data.get('protocol', 'tcp')}/{data['dst_port']}"))
    elif event.kind == "net.listen":
        out.append(Observation("net.listen_port", str(data.get("local_port", "?"))))
    elif event.kind == "net.dns" and data.get("direction") == "query":
        for q in data.get("questions") or ():
            if isinstance(q, Mapping) and q.get("name"):
                out.append(Observation("dns.name", registrable_domain(str(q["name"]))))
    return out


def _tool_name(data: Mapping[str, Any]) -> str:
    tool = str(data.get("tool") or "")
    server = data.get("mcp_server")
    return f"{server}/{tool}" if server else tool


def _l7(event: Envelope) -> list[Observation]:
    data = event.data
    kind = event.kind
    out: list[Observation] = []
    if kind in ("llm.request", "llm.response", "llm.count_tokens"):
        out.append(Observation("l7.provider_model",
                               f"{data.get('provider', '?')}:{data.get('model') or '?'}"))
        if kind == "llm.request":
            tools = data.get("tools")
            for name in (tools if isinstance(tools, list) else ())[:64]:
                out.append(Observation("l7.tool_offered", str(name)))
            for key, dim in (("system_prompt_hash", "l7.system_prompt_hash"),
                             ("tools_hash", "l7.tools_hash")):
                if data.get(key):
                    out.append(Observation(dim, str(data[key])))
    elif kind == "llm.tool_call":
        tool = _tool_name(data)
        out.append(Observation("l7.tool_called", tool))
        out.extend(Observation("l7.tool_arg_shape", s)
                   for s in arg_shapes(tool, data.get("arguments")))
        method = _http_method(data.get("arguments"))
        if method:  # reading vs sending: apart from the hosts, which vary on their own
            out.append(Observation("l7.tool_method", f"{tool} {method}"))
    elif kind == "mcp.call":
        server = str(data.get("host") or "?")
        method = str(data.get("method") or "")
        if method == "tools/call":
            tool = f"{server}/{data.get('tool', '')}"
            out.append(Observation("l7.mcp_tool", tool))
            out.extend(Observation("l7.tool_arg_shape", s)
                       for s in arg_shapes(tool, data.get("arguments")))
        elif method and not data.get("notification"):
            out.append(Observation("l7.mcp_tool", f"{server} {method}"))
            if data.get("uri"):
                out.append(Observation("l7.tool_arg_shape",
                                       f"{server} {method} {_value_shape('uri', data['uri'])}"))
    elif kind in ("http.request",) and data.get("host"):
        host = str(data["host"]).rsplit(":", 1)[0] if ":" in str(data["host"]) else data["host"]
        out.append(Observation("l7.http_host", registrable_domain(str(host))))
    return out


def _http_method(arguments: Any) -> str:
    """The HTTP verb a tool call asks for (``GET`` when it names a URL and no verb)."""
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return ""
    if not isinstance(arguments, Mapping):
        return ""
    method = arguments.get("method")
    if isinstance(method, str) and method.isalpha():
        return method.upper()
    return "GET" if isinstance(arguments.get("url"), str) else ""


def cloud_source(address: str) -> str:
    """Where a cloud call came from: an IP's prefix, or AWS's own names for its services
    (``ec2.amazonaws.com``, ``AWS Internal``) as they are."""
    return ip_prefix(address) if _is_ip(address) else address


def _cloud(event: Envelope) -> list[Observation]:
    data = event.data
    service, action = str(data.get("service") or "?"), str(data.get("action") or "?")
    out = [Observation("cloud.action", f"{service}:{action}")]
    if data.get("source_ip"):
        out.append(Observation("cloud.source", cloud_source(str(data["source_ip"]))))
    for res in (data.get("resources") or ())[:8]:
        if isinstance(res, Mapping) and res.get("arn"):
            out.append(Observation("cloud.resource", _resource_class(str(res["arn"]))))
    err = data.get("error")
    if isinstance(err, Mapping) and err.get("code"):
        out.append(Observation("cloud.error", f"{service}:{action} {err['code']}"))
    return out


@functools.lru_cache(maxsize=8192)
def _resource_class(arn: str) -> str:
    """``arn:aws:s3:::bucket/k/2024/01/x.json`` → ``s3 bucket/k/<num>/<num>/x.json``;
    the account id and region fields are dropped (they do not vary within an agent)."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn":
        return f"{parts[2]} {generalize_path(parts[5])}"
    return generalize_path(arn)


_BY_FAMILY = {
    "process": _process, "file": _file, "net": _net, "llm": _l7, "mcp": _l7, "http": _l7,
    "cloud": _cloud,
}


def observations(event: Envelope) -> list[Observation]:
    """The generalized categorical facts of one event (possibly none). Never raises on
    odd data: a field of the wrong type yields fewer observations, not an error."""
    family = event.family
    if family == "syscall":
        calls = event.data.get("syscalls")
        if isinstance(calls, Mapping):
            return [Observation("syscall", str(name)) for name in calls]
        return []
    fn = _BY_FAMILY.get(family)
    if fn is None:
        return []
    try:
        return fn(event)
    except (TypeError, AttributeError, ValueError):
        return []


def _num(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def quantities(event: Envelope) -> list[tuple[str, float]]:
    """Rate and volume contributions of one event to its agent's current window."""
    kind, data = event.kind, event.data
    if kind == "process.exec":
        return [("process.exec", 1.0)]
    if kind == "file.open":
        count = max(_num(data.get("count")), 1.0)
        out = [("file.open", count)]
        if isinstance(data.get("sensitive"), Mapping):
            out.append(("file.sensitive_open", count))
        return out
    if kind.startswith("file."):
        return [("file.change", 1.0)]
    if kind == "net.connect":
        return [("net.connect", max(_num(data.get("count")), 1.0))]
    if kind == "net.close":
        return [("net.bytes_out", _num(data.get("bytes_sent"))),
                ("net.bytes_in", _num(data.get("bytes_received")))]
    if kind == "net.dns":
        return [("dns.query", 1.0)] if data.get("direction") == "query" else []
    if kind == "llm.request":
        return [("l7.llm_call", 1.0)]
    if kind == "llm.response":
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            tokens = sum(_num(v) for k, v in usage.items() if "tokens" in str(k)
                         and "total" not in str(k) and "details" not in str(k))
            return [("l7.tokens", tokens)]
        return []
    if kind == "llm.tool_call" or (kind == "mcp.call" and data.get("method") == "tools/call"):
        return [("l7.tool_call", 1.0)]
    if kind in ("http.request", "http.response"):
        return [("l7.payload_bytes", _num(data.get("body_size")))]
    if kind == "cloud.api":
        action = f"cloud.call:{data.get('service', '?')}:{data.get('action', '?')}"
        out = [("cloud.call", 1.0), (action, 1.0)]
        if data.get("error"):
            out.append(("cloud.error", 1.0))
        return out
    if kind == "syscall.profile":
        return [("syscall.total", _num(data.get("total")))]
    return []


class PathTree:
    """Per-agent directory collapse, as Kubescape node-agent does: a directory whose
    children keep changing (more than ``threshold`` distinct names) becomes ``dir/*``.

    Bounded: at most ``max_dirs`` directories are tracked (the oldest tracked is dropped,
    counted in ``dropped``); a collapsed directory stays collapsed.

    >>> t = PathTree(threshold=3)
    >>> for i in "abcd":
    ...     _ = t.learn(f"/data/{i}.csv")
    >>> t.apply("/data/zz.csv"), t.apply("/etc/hosts")
    ('/data/*', '/etc/hosts')
    """

    __slots__ = ("children", "collapsed", "dropped", "max_depth", "max_dirs", "threshold")

    def __init__(self, threshold: int = 50, max_dirs: int = 256, max_depth: int = 8) -> None:
        self.threshold = threshold
        self.max_dirs = max_dirs
        self.max_depth = max_depth
        self.children: dict[str, set[str]] = {}
        self.collapsed: set[str] = set()
        self.dropped = 0

    def apply(self, path: str) -> str:
        """The collapsed class of a (generalized) path; no side effect."""
        if not self.collapsed or not path.startswith("/"):
            return path
        i = 0
        for _ in range(self.max_depth):
            j = path.find("/", i + 1)
            if j < 0:
                break
            if path[:j] in self.collapsed:
                return path[:j] + "/*"
            i = j
        return path

    def learn(self, path: str) -> str:
        """Record the path's segments; returns its class after any collapse."""
        if not path.startswith("/"):
            return path
        collapsed = self.apply(path)
        if collapsed != path:
            return collapsed
        parts = path.split("/")
        for depth in range(1, min(len(parts) - 1, self.max_depth) + 1):
            parent = "/".join(parts[:depth]) or ""
            if not parent:
                continue
            kids = self.children.get(parent)
            if kids is None:
                if len(self.children) >= self.max_dirs:
                    del self.children[next(iter(self.children))]
                    self.dropped += 1
                kids = self.children[parent] = set()
            kids.add(parts[depth])
            if len(kids) > self.threshold:
                self.collapsed.add(parent)
                del self.children[parent]
                return parent + "/*"
        return path

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"c": sorted(self.collapsed)}
        if self.children:
            doc["k"] = {d: sorted(k) for d, k in self.children.items()}
        if self.dropped:
            doc["dropped"] = self.dropped
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any], threshold: int = 50, max_dirs: int = 256) -> PathTree:
        t = cls(threshold, max_dirs)
        t.collapsed = set(doc.get("c", ()))
        t.children = {d: set(k) for d, k in doc.get("k", {}).items()}
        t.dropped = int(doc.get("dropped", 0))
        return t
