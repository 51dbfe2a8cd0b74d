"""How every client connects to Kafka: TLS, mTLS and SASL from flags, environment or a
Kafka client properties file.

Why one module: the collectors' producers, the topic admin, the Faust worker, replay, tail
and export/import must all reach the same secured cluster with the same settings; operators
already hold a ``client.properties`` for the Java tools (``--command-config``), so it is
read as is. What aiokafka cannot use (JKS/PKCS12 stores, GSSAPI, OAUTHBEARER, MSK IAM,
inline PEM) is refused by name rather than silently ignored. Secrets are never printed: the
repr redacts the passwords. Pure except :meth:`KafkaSecurity.ssl_context` (reads the PEM
files); Faust is imported only by :meth:`KafkaSecurity.faust_credentials`.
"""

from __future__ import annotations

import argparse
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_PREFIX", "PLAINTEXT", "KafkaConfigError", "KafkaSecurity", "from_properties",
    "parse_properties", "resolve_security",
]

ENV_PREFIX = "AGENTSTORY_KAFKA_"
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_REDACTED = "***"


class KafkaConfigError(ValueError):
    """A connection setting we cannot honour; the message says which and why."""


@dataclass(frozen=True)
class KafkaSecurity:
    """The security half of a Kafka connection (the bootstrap servers are apart)."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: str | None = None
    ssl_check_hostname: bool = True

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name.endswith("password"):
                value = _REDACTED
            parts.append(f"{f.name}={value!r}")
        return f"KafkaSecurity({', '.join(parts)})"

    __str__ = __repr__

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def validated(self) -> KafkaSecurity:
        """Check the combination; returns self so callers can chain."""
        if self.security_protocol not in PROTOCOLS:
            raise KafkaConfigError(
                f"security.protocol={self.security_protocol!r}: expected one of "
                f"{', '.join(PROTOCOLS)}")
        if self.uses_sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise KafkaConfigError(
                    f"sasl.mechanism={self.sasl_mechanism!r}: supported are "
                    f"{', '.join(MECHANISMS)}")
            if not self.sasl_username or self.sasl_password is None:
                raise KafkaConfigError(
                    f"{self.security_protocol} needs a SASL username and password "
                    "(sasl.jaas.config, sasl.username/sasl.password, or "
                    "--sasl-username / AGENTSTORY_KAFKA_SASL_PASSWORD)")
        elif self.sasl_mechanism or self.sasl_username:
            raise KafkaConfigError(
                f"SASL settings given but security.protocol={self.security_protocol}; "
                "use SASL_SSL (or SASL_PLAINTEXT)")
        has_ssl = self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile
        if has_ssl and not self.uses_ssl:
            raise KafkaConfigError(
                f"TLS files given but security.protocol={self.security_protocol}; "
                "use SSL or SASL_SSL")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise KafkaConfigError("a client key needs its certificate (ssl certfile)")
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (None without TLS): the CA bundle or the system's, the client
        certificate for mTLS, hostname checking unless explicitly disabled."""
        if not self.uses_ssl:
            return None
        from aiokafka.helpers import create_ssl_context

        for label, path in (("CA", self.ssl_cafile), ("certificate", self.ssl_certfile),
                            ("key", self.ssl_keyfile)):
            if path:
                _require_pem(label, path)
        try:
            context = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile,
                password=self.ssl_key_password)
        except (ssl.SSLError, OSError) as exc:
            raise KafkaConfigError(f"cannot load the TLS files: {exc}") from exc
        context.check_hostname = self.ssl_check_hostname
        return context

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer/Consumer/AdminClient ({} for PLAINTEXT,
        so a plaintext client is built exactly as before)."""
        self.validated()
        if self.security_protocol == "PLAINTEXT":
            return {}
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_ssl:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kwargs.update(sasl_mechanism=self.sasl_mechanism,
                          sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password)
        return kwargs

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` (None for PLAINTEXT)."""
        self.validated()
        if self.security_protocol == "PLAINTEXT":
            return None
        import faust

        if not self.uses_sasl:
            return faust.SSLCredentials(self.ssl_context())
        # Faust sets SASL_SSL when given a context, SASL_PLAINTEXT without one.
        return faust.SASLCredentials(
            username=self.sasl_username, password=self.sasl_password,
            mechanism=self.sasl_mechanism, ssl_context=self.ssl_context())


PLAINTEXT = KafkaSecurity()


def _require_pem(label: str, path: str) -> None:
    p = Path(path)
    try:
        head = p.read_bytes()[:4096]
    except OSError as exc:
        raise KafkaConfigError(f"TLS {label} file {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN" not in head:
        raise KafkaConfigError(
            f"TLS {label} file {path} is not PEM (a JKS or PKCS12 store?); convert it, e.g. "
            "keytool -exportcert -rfc / openssl pkcs12 -nodes, and point to the .pem")


_JAAS = re.compile(r"""(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([^\s;]+))""")
_JAAS_MODULES = {
    "org.apache.kafka.common.security.plain.PlainLoginModule": ("PLAIN",),
    "org.apache.kafka.common.security.scram.ScramLoginModule": ("SCRAM-SHA-256",
                                                                "SCRAM-SHA-512"),
}
_REFUSED = {
    "ssl.keystore.key": "inline PEM is not supported; put the key in a file "
                        "(ssl.keystore.location with ssl.keystore.type=PEM)",
    "ssl.keystore.certificate.chain": "inline PEM is not supported; put the chain in a "
                                      "file (ssl.keystore.location, type PEM)",
    "ssl.truststore.certificates": "inline PEM is not supported; put the CA in a file "
                                   "(ssl.truststore.location, type PEM)",
    "sasl.login.callback.handler.class": "Java callback handlers cannot run here",
    "sasl.client.callback.handler.class": "Java callback handlers cannot run here",
}
# Keys that configure TLS details aiokafka takes from Python's defaults: harmless to accept.
_TOLERATED = {"ssl.truststore.password", "ssl.protocol", "ssl.enabled.protocols",
              "ssl.keymanager.algorithm", "ssl.trustmanager.algorithm", "ssl.cipher.suites",
              "ssl.keystore.password", "sasl.kerberos.service.name"}


def parse_properties(text: str) -> dict[str, str]:
    """Java ``.properties``: ``key=value`` / ``key: value`` / ``key value``, ``#``/``!``
    comments, ``\\`` line continuations. Enough for client.properties files."""
    out: dict[str, str] = {}
    logical = ""
    for raw in text.splitlines():
        line = raw.strip() if not logical else raw.lstrip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            logical += line[:-1]
            continue
        logical += line
        match = re.match(r"((?:[^=:\s\\]|\\.)+)\s*[=:\s]\s*(.*)$", logical)
        if match:
            out[match.group(1).replace("\\", "")] = match.group(2).strip()
        elif logical:
            out[logical] = ""
        logical = ""
    return out


def _jaas(config: str) -> tuple[str, dict[str, str]]:
    module = config.strip().split()[0] if config.strip() else ""
    options = {m.group(1): (m.group(2) if m.group(2) is not None else
                            m.group(3) if m.group(3) is not None else m.group(4))
               for m in _JAAS.finditer(config)}
    return module, options


def from_properties(props: Mapping[str, str]) -> dict[str, Any]:
    """The security settings of a client.properties, as KafkaSecurity fields (only those
    present). Refuses, with the reason, what aiokafka cannot honour."""
    out: dict[str, Any] = {}
    store_types = {k: props.get(f"ssl.{k}.type", "PEM").strip().upper()
                   for k in ("truststore", "keystore")}
    for key, value in props.items():
        value = value.strip()
        if key == "security.protocol":
            out["security_protocol"] = value.upper()
        elif key == "sasl.mechanism":
            mechanism = value.upper()
            if mechanism == "AWS_MSK_IAM":
                raise KafkaConfigError(
                    "sasl.mechanism=AWS_MSK_IAM: MSK IAM is not supported (aiokafka has no "
                    "IAM signer); enable SASL/SCRAM or mTLS on the MSK cluster instead")
            if mechanism not in MECHANISMS:
                raise KafkaConfigError(
                    f"sasl.mechanism={value}: supported are {', '.join(MECHANISMS)}")
            out["sasl_mechanism"] = mechanism
        elif key == "sasl.jaas.config":
            module, options = _jaas(value)
            if module not in _JAAS_MODULES:
                raise KafkaConfigError(
                    f"sasl.jaas.config uses {module or 'no login module'}: supported are "
                    "PlainLoginModule and ScramLoginModule (username/password)")
            if "username" not in options or "password" not in options:
                raise KafkaConfigError("sasl.jaas.config lacks username= or password=")
            out["sasl_username"] = options["username"]
            out["sasl_password"] = options["password"]
        elif key in ("sasl.username", "sasl.password"):  # librdkafka's spelling
            out[f"sasl_{key.split('.')[1]}"] = value
        elif key in ("ssl.truststore.location", "ssl.ca.location"):
            if key == "ssl.truststore.location" and store_types["truststore"] != "PEM":
                raise KafkaConfigError(
                    f"ssl.truststore.type={store_types['truststore']}: only PEM is supported; "
                    "convert the truststore (keytool -exportcert -rfc -keystore "
                    f"{value} > ca.pem) and set ssl.truststore.location=ca.pem")
            _refuse_store_suffix(key, value)
            out["ssl_cafile"] = value
        elif key in ("ssl.keystore.location", "ssl.certificate.location"):
            if key == "ssl.keystore.location" and store_types["keystore"] != "PEM":
                raise KafkaConfigError(
                    f"ssl.keystore.type={store_types['keystore']}: only PEM is supported "
                    "(certificate chain and private key in one file, or "
                    "--ssl-certfile/--ssl-keyfile); convert with openssl pkcs12 -nodes")
            _refuse_store_suffix(key, value)
            out["ssl_certfile"] = value
        elif key == "ssl.key.location":
            out["ssl_keyfile"] = value
        elif key == "ssl.key.password":
            out["ssl_key_password"] = value
        elif key == "ssl.endpoint.identification.algorithm":
            if value.lower() not in ("", "https", "none"):
                raise KafkaConfigError(
                    f"ssl.endpoint.identification.algorithm={value}: expected https or empty")
            out["ssl_check_hostname"] = value.lower() == "https"
        elif key == "enable.ssl.certificate.verification" and value.lower() == "false":
            raise KafkaConfigError(
                "disabling certificate verification is not supported; give the CA instead")
        elif key in _REFUSED:
            raise KafkaConfigError(f"{key}: {_REFUSED[key]}")
        elif key in ("ssl.truststore.type", "ssl.keystore.type") or key in _TOLERATED:
            continue
        elif key.startswith(("ssl.", "sasl.")):
            raise KafkaConfigError(f"{key} is not supported by this client")
        # Other keys (bootstrap.servers, client.id, timeouts...) say nothing about security.
    return out


def _refuse_store_suffix(key: str, value: str) -> None:
    if value.lower().endswith((".jks", ".p12", ".pfx", ".keystore", ".truststore")):
        raise KafkaConfigError(
            f"{key}={value} looks like a JKS/PKCS12 store: only PEM files are supported "
            "(keytool -exportcert -rfc, or openssl pkcs12 -nodes, converts it)")


_ENV_FIELDS = {
    "SECURITY_PROTOCOL": "security_protocol", "SASL_MECHANISM": "sasl_mechanism",
    "SASL_USERNAME": "sasl_username", "SASL_PASSWORD": "sasl_password",
    "SSL_CAFILE": "ssl_cafile", "SSL_CERTFILE": "ssl_certfile", "SSL_KEYFILE": "ssl_keyfile",
    "SSL_KEY_PASSWORD": "ssl_key_password", "SSL_CHECK_HOSTNAME": "ssl_check_hostname",
}


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for suffix, name in _ENV_FIELDS.items():
        value = env.get(ENV_PREFIX + suffix)
        if value is None or value == "":
            continue
        if name == "ssl_check_hostname":
            out[name] = value.strip().lower() not in ("0", "false", "no", "off")
        elif name in ("security_protocol", "sasl_mechanism"):
            out[name] = value.strip().upper()
        else:
            out[name] = value
    return out


def resolve_security(
    *, command_config: str | None = None, flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> KafkaSecurity:
    """Properties file, then ``AGENTSTORY_KAFKA_*`` environment, then flags (each later one
    wins per setting). With no protocol named, TLS files imply SSL and SASL credentials
    imply SASL_PLAINTEXT / SASL_SSL, as one would mean."""
    env = os.environ if env is None else env
    command_config = command_config or env.get(ENV_PREFIX + "COMMAND_CONFIG") or None
    merged: dict[str, Any] = {}
    if command_config:
        try:
            text = Path(command_config).read_text(encoding="utf-8")
        except OSError as exc:
            raise KafkaConfigError(
                f"--command-config {command_config}: {exc.strerror or exc}") from exc
        merged.update(from_properties(parse_properties(text)))
    merged.update(_from_env(env))
    merged.update({k: v for k, v in (flags or {}).items() if v is not None})
    if merged.get("sasl_password_file"):
        merged["sasl_password"] = _read_secret(merged["sasl_password_file"])
    merged.pop("sasl_password_file", None)
    if "security_protocol" not in merged:
        tls = any(merged.get(k) for k in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"))
        sasl = bool(merged.get("sasl_mechanism") or merged.get("sasl_username"))
        merged["security_protocol"] = ("SASL_SSL" if tls else "SASL_PLAINTEXT") if sasl \
            else ("SSL" if tls else "PLAINTEXT")
    known = {f.name for f in fields(KafkaSecurity)}
    unknown = set(merged) - known
    if unknown:
        raise KafkaConfigError(f"unknown connection settings: {', '.join(sorted(unknown))}")
    return replace(PLAINTEXT, **merged).validated()


def _read_secret(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise KafkaConfigError(f"SASL password file {path}: {exc.strerror or exc}") from exc


# -- command line ------------------------------------------------------------------------
_FLAG_FIELDS = ("security_protocol", "sasl_mechanism", "sasl_username", "sasl_password_file",
                "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")


class _RefusePassword(argparse.Action):
    """An exact ``--sasl-password`` (else argparse would take it as an abbreviation of
    ``--sasl-password-file`` and read the password as a file name)."""

    def __call__(self, parser: Any, namespace: Any, values: Any,
                 option_string: str | None = None) -> None:
        parser.error("--sasl-password is not taken on the command line (other users see "
                     "argv); use AGENTSTORY_KAFKA_SASL_PASSWORD, --sasl-password-file or "
                     "--command-config")


def add_security_args(parser: Any) -> None:
    """The connection flags every Kafka command takes (argparse). Passwords come from the
    environment, a file or the properties file, never from argv (argv is world-readable)."""
    group = parser.add_argument_group(
        "Kafka security", "TLS / SASL; each also from AGENTSTORY_KAFKA_<NAME> (e.g. "
        "AGENTSTORY_KAFKA_SASL_PASSWORD) or a client.properties (--command-config)")
    group.add_argument("--command-config", metavar="FILE",
                       default=os.environ.get(ENV_PREFIX + "COMMAND_CONFIG") or None,
                       help="Kafka client properties: security.protocol, sasl.mechanism, "
                            "sasl.jaas.config, ssl.truststore.location (PEM)... "
                            "(env AGENTSTORY_KAFKA_COMMAND_CONFIG)")
    group.add_argument("--security-protocol", type=str.upper, choices=PROTOCOLS)
    group.add_argument("--sasl-mechanism", type=str.upper, choices=MECHANISMS)
    group.add_argument("--sasl-username")
    group.add_argument("--sasl-password-file", metavar="FILE",
                       help="file holding the SASL password (e.g. a mounted Secret)")
    group.add_argument("--sasl-password", action=_RefusePassword, nargs="?",
                       help=argparse.SUPPRESS)
    group.add_argument("--ssl-cafile", metavar="PEM", help="CA bundle to verify the brokers")
    group.add_argument("--ssl-certfile", metavar="PEM", help="client certificate (mTLS)")
    group.add_argument("--ssl-keyfile", metavar="PEM", help="client private key (mTLS)")
    group.add_argument("--ssl-no-check-hostname", dest="ssl_check_hostname",
                       action="store_const", const=False, default=None,
                       help="do not match the broker's certificate against its host name")


def security_from_args(args: Any, env: Mapping[str, str] | None = None) -> KafkaSecurity:
    """KafkaSecurity from an argparse namespace built with :func:`add_security_args`
    (PLAINTEXT for commands without those flags)."""
    if not hasattr(args, "command_config"):
        return PLAINTEXT
    flags = {name: getattr(args, name, None) for name in _FLAG_FIELDS}
    return resolve_security(command_config=args.command_config, flags=flags, env=env)


# -- errors a user can act on -----------------------------------------------------------
def tls_probe(bootstrap_servers: str, security: KafkaSecurity, timeout_s: float = 5.0
              ) -> str | None:
    """Why a TLS handshake with the first broker fails, or None if it succeeds. aiokafka
    only says "Unable to bootstrap"; this names the certificate problem."""
    import socket

    context = security.ssl_context()
    if context is None:
        return None
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as sock, \
                context.wrap_socket(sock, server_hostname=host):
            return None
    except ssl.SSLCertVerificationError as exc:
        return f"TLS certificate verification failed: {exc.verify_message}"
    except ssl.SSLError as exc:
        return f"TLS handshake failed: {exc.reason or exc}"
    except (OSError, ValueError) as exc:
        return f"{exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"


def _in_sasl(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if "aiokafka" in code.co_filename and ("server_final" in code.co_name
                                               or "sasl" in code.co_name
                                               or "authenticator" in code.co_name):
            return True
        tb = tb.tb_next
    return False


def connection_error(exc: BaseException, bootstrap_servers: str | None,
                     security: KafkaSecurity | None) -> str | None:
    """One line saying why the connection failed, or None if ``exc`` is not about the
    connection (then the caller re-raises it)."""
    from aiokafka import errors

    security = security or PLAINTEXT
    where = f"Kafka at {bootstrap_servers} ({security.security_protocol})"
    if isinstance(exc, (errors.SaslAuthenticationFailed, errors.AuthenticationFailedError)):
        return f"authentication to {where} failed: {exc}"
    if isinstance(exc, errors.UnsupportedSaslMechanismError):
        return f"{where}: {exc}"
    if isinstance(exc, (KeyError, ValueError, AssertionError)) and _in_sasl(exc):
        # aiokafka's SCRAM client fails this way when the server's final message is an
        # error (e=...) instead of its signature: unknown user or wrong password.
        return (f"authentication to {where} failed: the broker rejected the "
                f"{security.sasl_mechanism} credentials of {security.sasl_username!r} "
                "(unknown user or wrong password)")
    if isinstance(exc, errors.KafkaConnectionError):
        reason = tls_probe(bootstrap_servers, security) if (
            bootstrap_servers and security.uses_ssl) else None
        hint = ""
        if reason and "certificate" in reason:
            hint = " (check --ssl-cafile / ssl.truststore.location: the CA that signed " \
                   "the brokers' certificates)"
        return f"cannot connect to {where}: {reason or exc}{hint}"
    return None
