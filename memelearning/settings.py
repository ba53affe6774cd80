"""Loading pydantic-settings classes with errors that name the environment variable."""

from __future__ import annotations

import os
from typing import Annotated, Any, Final, TypeVar

from pydantic import AfterValidator, AnyUrl, UrlConstraints, ValidationError
from pydantic_settings import BaseSettings

from memelearning.logs import redact_url

S = TypeVar("S", bound=BaseSettings)


def _require_host(url: AnyUrl) -> AnyUrl:
    if not url.host:
        raise ValueError("the URL has no host")
    return url


# Broker and HTTP URLs as every process's settings type them.
AmqpUrl = Annotated[
    AnyUrl, UrlConstraints(allowed_schemes=["amqp", "amqps"]), AfterValidator(_require_host)
]
HttpUrl = Annotated[
    AnyUrl, UrlConstraints(allowed_schemes=["http", "https"]), AfterValidator(_require_host)
]
DEFAULT_AMQP_URL: Final = AnyUrl("amqp://guest:guest@127.0.0.1:5672/")


class SettingsError(Exception):
    """Configuration that cannot be used; the message names each bad variable."""


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build ``cls`` from the environment (and ``overrides``), turning pydantic's
    validation error into one that names ``MEMELEARNING_…`` variables and never echoes
    a secret's value. Warns first about ``MEMELEARNING_…`` variables that no process
    reads (a misspelt setting), with the closest valid name."""
    # Imported here: it imports every process's settings class, which import this module.
    from memelearning.variables import warn_unknown_variables

    warn_unknown_variables(os.environ)
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_errors(cls, exc)) from None


def variable_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable that sets ``field`` of ``cls`` (its prefix + the name)."""
    return (str(cls.model_config.get("env_prefix", "")) + field).upper()


def describe_errors(cls: type[BaseSettings], exc: ValidationError) -> str:
    prefix = str(cls.model_config.get("env_prefix", ""))
    lines = [f"invalid configuration ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        variable = variable_name(cls, field) if field else prefix.rstrip("_")
        info = cls.model_fields.get(field)
        # Also `SecretStr | None`, `dict[str, SecretStr]`, …: any type holding a secret.
        secret = info is not None and "SecretStr" in repr(info.annotation)
        shown = "" if secret or "input" not in err else f" (got {_short(err['input'])})"
        lines.append(f"  {variable}: {err['msg']}{shown}")
    return "\n".join(lines)


def _short(value: object, limit: int = 60) -> str:
    if isinstance(value, str) and "://" in value:
        # A URL may carry a password (amqp://user:secret@host/).
        value = redact_url(value)
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
