"""Connection settings from client.properties, environment and flags (pure: no broker)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from streams.kafka_config import (
    PLAINTEXT,
    KafkaConfigError,
    KafkaSecurity,
    add_security_args,
    from_properties,
    parse_properties,
    resolve_security,
    security_from_args,
)

SCRAM_PROPERTIES = r"""
# an operator's client.properties, as the Java tools read it
bootstrap.servers=b-1.example:9096
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
    username="alice" \
    password="p@ss=wo;rd";
ssl.truststore.location=/etc/kafka/ca.pem
ssl.truststore.type=PEM
ssl.endpoint.identification.algorithm=
client.id: nightly
"""


def test_java_properties_syntax() -> None:
    props = parse_properties("a=1\n! bang comment\n  b : two words \nc three\n"
                             "d=x\\\n  y\ne=\n# x=1\n")
    assert props == {"a": "1", "b": "two words", "c": "three", "d": "xy", "e": ""}


def test_scram_over_tls_properties_map_to_aiokafka_fields() -> None:
    fields = from_properties(parse_properties(SCRAM_PROPERTIES))
    assert fields == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "alice", "sasl_password": "p@ss=wo;rd",
        "ssl_cafile": "/etc/kafka/ca.pem", "ssl_check_hostname": False,
    }


def test_plain_jaas_and_librdkafka_spellings() -> None:
    assert from_properties({
        "sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule "
                            "required username='bob' password='pw';"}) == {
        "sasl_username": "bob", "sasl_password": "pw"}
    assert from_properties({"sasl.username": "u", "sasl.password": "p",
                            "ssl.ca.location": "ca.pem", "ssl.certificate.location": "c.pem",
                            "ssl.key.location": "k.pem", "ssl.key.password": "kp"}) == {
        "sasl_username": "u", "sasl_password": "p", "ssl_cafile": "ca.pem",
        "ssl_certfile": "c.pem", "ssl_keyfile": "k.pem", "ssl_key_password": "kp"}


@pytest.mark.parametrize(("props", "message"), [
    ({"ssl.truststore.location": "/x/kafka.client.truststore.jks",
      "ssl.truststore.type": "JKS"}, "ssl.truststore.type=JKS: only PEM"),
    ({"ssl.truststore.location": "/x/truststore.jks"}, "looks like a JKS/PKCS12 store"),
    ({"ssl.keystore.location": "/x/client.p12", "ssl.keystore.type": "PKCS12"},
     "ssl.keystore.type=PKCS12: only PEM"),
    ({"sasl.mechanism": "GSSAPI"}, "supported are PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ({"sasl.mechanism": "AWS_MSK_IAM"}, "MSK IAM is not supported"),
    ({"sasl.jaas.config": "software.amazon.msk.auth.iam.IAMLoginModule required;"},
     "uses software.amazon.msk.auth.iam.IAMLoginModule"),
    ({"sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule "
                          "required username=\"a\";"}, "lacks username= or password="),
    ({"ssl.keystore.key": "-----BEGIN PRIVATE KEY-----..."}, "inline PEM is not supported"),
    ({"ssl.engine.factory.class": "x"}, "ssl.engine.factory.class is not supported"),
    ({"ssl.endpoint.identification.algorithm": "ldap"}, "expected https or empty"),
])
def test_what_aiokafka_cannot_honour_is_refused_by_name(props: dict[str, str],
                                                         message: str) -> None:
    with pytest.raises(KafkaConfigError, match=message):
        from_properties(props)


def test_repr_never_shows_secrets() -> None:
    security = KafkaSecurity("SASL_SSL", "PLAIN", "alice", "hunter2", ssl_key_password="kp2")
    for text in (repr(security), str(security), f"{security}", repr([security])):
        assert "hunter2" not in text and "kp2" not in text
        assert "alice" in text and "***" in text


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "client.properties"
    config.write_text(SCRAM_PROPERTIES)
    env = {"AGENTSTORY_KAFKA_SASL_USERNAME": "from-env",
           "AGENTSTORY_KAFKA_SASL_MECHANISM": "scram-sha-256"}
    security = resolve_security(command_config=str(config), env=env,
                                flags={"sasl_mechanism": None, "ssl_cafile": "flag.pem"})
    assert (security.sasl_username, security.sasl_mechanism, security.ssl_cafile,
            security.sasl_password) == ("from-env", "SCRAM-SHA-256", "flag.pem", "p@ss=wo;rd")
    env_config = resolve_security(env={"AGENTSTORY_KAFKA_COMMAND_CONFIG": str(config)})
    assert env_config.security_protocol == "SASL_SSL"


def test_the_protocol_follows_from_what_is_given(tmp_path: Path) -> None:
    assert resolve_security(env={}) == PLAINTEXT
    assert resolve_security(env={}, flags={"ssl_cafile": "ca.pem"}).security_protocol == "SSL"
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    sasl = resolve_security(env={}, flags={"sasl_mechanism": "PLAIN", "sasl_username": "u",
                                           "sasl_password_file": str(secret)})
    assert (sasl.security_protocol, sasl.sasl_password) == ("SASL_PLAINTEXT", "s3cret")
    both = resolve_security(env={"AGENTSTORY_KAFKA_SASL_PASSWORD": "p"},
                            flags={"sasl_mechanism": "PLAIN", "sasl_username": "u",
                                   "ssl_cafile": "ca.pem"})
    assert both.security_protocol == "SASL_SSL"


@pytest.mark.parametrize(("fields", "message"), [
    ({"security_protocol": "TLS"}, "expected one of PLAINTEXT, SSL"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"},
     "needs a SASL username and password"),
    ({"security_protocol": "PLAINTEXT", "ssl_cafile": "ca.pem"},
     "TLS files given but security.protocol=PLAINTEXT"),
    ({"security_protocol": "SSL", "sasl_username": "u"}, "SASL settings given"),
    ({"security_protocol": "SSL", "ssl_keyfile": "k.pem"}, "needs its certificate"),
])
def test_inconsistent_settings_are_named(fields: dict[str, str], message: str) -> None:
    with pytest.raises(KafkaConfigError, match=message):
        resolve_security(env={}, flags=fields)


def test_missing_and_non_pem_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(KafkaConfigError, match=r"--command-config .*missing\.properties"):
        resolve_security(env={}, command_config=str(tmp_path / "missing.properties"))
    jks = tmp_path / "ca.pem"
    jks.write_bytes(b"\xfe\xed\xfe\xed\x00\x00\x00\x02binary keystore")
    with pytest.raises(KafkaConfigError, match="is not PEM"):
        KafkaSecurity("SSL", ssl_cafile=str(jks)).aiokafka_kwargs()
    with pytest.raises(KafkaConfigError, match=r"TLS CA file .*nowhere\.pem"):
        KafkaSecurity("SSL", ssl_cafile=str(tmp_path / "nowhere.pem")).ssl_context()


def test_aiokafka_and_faust_arguments(tmp_path: Path) -> None:
    import ssl

    import faust

    assert PLAINTEXT.aiokafka_kwargs() == {}
    assert PLAINTEXT.faust_credentials() is None
    scram = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-256", "u", "p")
    assert scram.aiokafka_kwargs() == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "u", "sasl_plain_password": "p"}
    creds = scram.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.protocol.value, creds.mechanism.value) == ("SASL_PLAINTEXT", "SCRAM-SHA-256")
    tls = KafkaSecurity("SSL", ssl_check_hostname=False)  # the system's CAs
    kwargs = tls.aiokafka_kwargs()
    assert kwargs["security_protocol"] == "SSL"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].check_hostname is False
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert isinstance(tls.faust_credentials(), faust.SSLCredentials)
    sasl_ssl = KafkaSecurity("SASL_SSL", "PLAIN", "u", "p").faust_credentials()
    assert sasl_ssl.protocol.value == "SASL_SSL" and sasl_ssl.ssl_context is not None


def test_command_line_flags() -> None:
    parser = argparse.ArgumentParser()
    add_security_args(parser)
    args = parser.parse_args(["--security-protocol", "sasl_ssl", "--sasl-mechanism",
                              "scram-sha-512", "--sasl-username", "svc",
                              "--ssl-no-check-hostname"])
    security = security_from_args(args, env={"AGENTSTORY_KAFKA_SASL_PASSWORD": "pw"})
    assert security == KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "svc", "pw",
                                     ssl_check_hostname=False)
    with pytest.raises(SystemExit):
        parser.parse_args(["--sasl-password", "pw"])  # never on argv
    assert security_from_args(argparse.Namespace(bootstrap_servers="x")) == PLAINTEXT
