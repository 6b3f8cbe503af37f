"""The ``kafka`` and ``redis`` sections of the configuration: addresses, credentials and TLS.

Passwords are ``SecretStr`` and never printed; :func:`redacted` masks the one a URL may carry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MASK = "***"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# The consumer library of the sources: kafka-python (the default) or librdkafka's
# confluent-kafka (the `confluent` extra). Producers and admin always use kafka-python.
KafkaClient = Literal["kafka-python", "confluent"]

# user:password@ after a scheme, and password= in a query string: what a URL may leak.
_USERINFO = re.compile(r"(?P<head>://[^\s:/@'\"]*:)[^\s'\"]+@")
_QUERY_PASSWORD = re.compile(r"(?P<head>\bpassword=)[^&\s'\"]*", re.IGNORECASE)


def redacted(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``.

    >>> redacted("redis://alice:s3cret@127.0.0.1:6390/0")
    'redis://alice:***@127.0.0.1:6390/0'
    >>> redacted("rediss://:s3cret@cache:6380"), redacted("redis://cache:6379/0")
    ('rediss://:***@cache:6380', 'redis://cache:6379/0')
    >>> redacted("redis://cache/0?password=s3cret&db=1")
    'redis://cache/0?password=***&db=1'
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not parseable as a URL: mask whatever looks like a secret
        return mask_urls(url)
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    query = _QUERY_PASSWORD.sub(rf"\g<head>{MASK}", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def mask_urls(text: str) -> str:
    """``text`` with the password of every URL in it masked (for messages quoting input).

    >>> mask_urls("got 'redis://bob:pw@h:1/0' and 'redis://h:2/0?password=pw'")
    "got 'redis://bob:***@h:1/0' and 'redis://h:2/0?password=***'"
    """
    text = _USERINFO.sub(rf"\g<head>{MASK}@", text)
    return _QUERY_PASSWORD.sub(rf"\g<head>{MASK}", text)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _string_secret(value: Any) -> Any:
    # Refuse other types here, with a message that does not echo the value back.
    if value is None or isinstance(value, str | SecretStr):
        return value
    raise ValueError("expected a string (quote it in YAML)")


def _existing_file(value: str) -> str:
    if not Path(value).is_file():
        raise ValueError(f"no such file: {value}")
    return value


class KafkaConfig(_Section):
    """How to reach the broker, and how to authenticate (SASL) and encrypt (TLS) on the way.

    ``client`` picks the library the sources consume with: ``kafka-python`` (the default) or
    ``confluent`` (librdkafka, ``pip install 'streamlearn[confluent]'``).

    >>> KafkaConfig().client, KafkaConfig(client="confluent").client
    ('kafka-python', 'confluent')
    >>> KafkaConfig(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
    ...             sasl_username="svc", sasl_password="pw").client_options()
    ... # doctest: +NORMALIZE_WHITESPACE
    {'security_protocol': 'SASL_SSL', 'sasl_mechanism': 'SCRAM-SHA-512',
     'sasl_plain_username': 'svc', 'sasl_plain_password': 'pw', 'ssl_check_hostname': True}
    """

    bootstrap: str = "localhost:9092"
    client_id: str = "streamlearn"
    client: KafkaClient = "kafka-python"
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    connect_timeout_s: float = Field(default=60.0, gt=0)
    security_protocol: SecurityProtocol = "PLAINTEXT"
    # validate_default: a SASL protocol without them is reported as the missing key.
    sasl_mechanism: SaslMechanism | None = Field(default=None, validate_default=True)
    sasl_username: str | None = Field(default=None, validate_default=True)
    sasl_password: SecretStr | None = Field(default=None, validate_default=True)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True

    @field_validator("sasl_password", mode="before")
    @classmethod
    def _password_is_a_string(cls, value: Any) -> Any:
        return _string_secret(value)

    @field_validator("sasl_mechanism", "sasl_username", "sasl_password")
    @classmethod
    def _sasl_needs_sasl(cls, value: Any, info: ValidationInfo) -> Any:
        protocol = info.data.get("security_protocol")
        if protocol is None:  # the protocol itself is invalid and reported
            return value
        empty = value is None or (isinstance(value, str | SecretStr) and not _plain(value))
        if protocol.startswith("SASL") and empty:
            env = f"STREAMLEARN_KAFKA_{str(info.field_name).upper()}"
            raise ValueError(f"required when kafka.security_protocol is {protocol} (or set {env})")
        if not protocol.startswith("SASL") and not empty:
            raise ValueError(
                f"only used with SASL, but kafka.security_protocol is {protocol}: "
                "set it to SASL_SSL (or SASL_PLAINTEXT), or remove this key"
            )
        return value

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _tls_files(cls, value: str | None, info: ValidationInfo) -> str | None:
        protocol = info.data.get("security_protocol")
        if value is None or protocol is None:
            return value
        if protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(
                f"only used with TLS, but kafka.security_protocol is {protocol}: "
                "set it to SSL or SASL_SSL, or remove this key"
            )
        return _existing_file(value)

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments every kafka-python client takes for these settings."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = _plain(self.sasl_password)
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                if getattr(self, name) is not None:
                    options[name] = getattr(self, name)
        return options


class RedisConfig(_Section):
    """How to reach Redis, log in to it, and the key prefix of everything streamlearn writes.

    ``username``/``password`` take precedence over credentials written in ``url``; a
    ``rediss://`` URL connects with TLS, verified against ``ssl_ca_certs`` when given.

    >>> cfg = RedisConfig(url="redis://alice:s3cret@cache:6379/0", password="n3w")
    >>> cfg
    RedisConfig(url='redis://alice:***@cache:6379/0', prefix='sl', connect_timeout_s=60.0, \
username=None, password=SecretStr('**********'), ssl_ca_certs=None)
    >>> cfg.client_options()
    {'password': 'n3w'}
    """

    url: str = "redis://localhost:6379/0"
    prefix: str = Field(default="sl", pattern=NAME_PATTERN)
    connect_timeout_s: float = Field(default=60.0, gt=0)
    username: str | None = None
    password: SecretStr | None = None
    ssl_ca_certs: str | None = None

    @field_validator("password", mode="before")
    @classmethod
    def _password_is_a_string(cls, value: Any) -> Any:
        return _string_secret(value)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"expected a URL starting with redis://, rediss:// (TLS) or unix://, "
                f"got {redacted(value)!r}"
            )
        return value

    @field_validator("ssl_ca_certs")
    @classmethod
    def _tls_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        url = info.data.get("url")
        if value is None or url is None:
            return value
        if not url.startswith("rediss://"):
            raise ValueError("only used with TLS: write redis.url as rediss://host:port/db")
        return _existing_file(value)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, redacted(value) if name == "url" else value

    def client_options(self) -> dict[str, Any]:
        """The set ones of ``username``, ``password`` and ``ssl_ca_certs``, for ``connect``."""
        options = {
            "username": self.username,
            "password": _plain(self.password),
            "ssl_ca_certs": self.ssl_ca_certs,
        }
        return {key: value for key, value in options.items() if value}


def _plain(secret: SecretStr | str | None) -> str | None:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret
