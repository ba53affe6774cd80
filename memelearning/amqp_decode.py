"""AMQP short strings that are not UTF-8 must not take a consumer down.

pamqp (under aiormq and aio-pika) decodes every AMQP *short string* (the
``content_type`` and ``message_id`` properties, header names) as strict UTF-8. One
message with a non-UTF-8 byte there makes the whole content-header frame fail to
decode, and aiormq closes the connection: every unacked message of the consumer goes
back to the queue (each one a step nearer its delivery limit), the robust connection
reconnects, the same message is delivered again, and so on. The broker passes such
bytes through unchanged, so any client that can publish can do this, to the worker
(frames) and to the reactions service (events). pamqp already tolerates non-UTF-8
*long* strings (gmr/pamqp#40) by returning bytes; this does the same for short
strings, returning the text with U+FFFD for each bad byte, so the frame contract
rejects the message with a reason (``content_type``, ``missing_header``) and the
connection survives. A timestamp (the property, or a header value) beyond the year
9999 fails the same way; it decodes as None. tests/test_hostile_worker.py sends such
messages.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any, Final

import pamqp.common
import pamqp.decode

_ORIGINAL_SHORT_STR: Final = pamqp.decode.short_str
_ORIGINAL_FIELD_TABLE: Final = pamqp.decode.field_table
_ORIGINAL_TIMESTAMP: Final = pamqp.decode.timestamp


def _short_str(value: bytes) -> tuple[int, str]:
    try:
        return _ORIGINAL_SHORT_STR(value)
    except UnicodeDecodeError:
        length = pamqp.common.Struct.byte.unpack(value[0:1])[0]
        return length + 1, value[1 : length + 1].decode("utf-8", "replace")


def _timestamp(value: bytes) -> tuple[int, datetime.datetime | None]:
    try:
        return _ORIGINAL_TIMESTAMP(value)
    except (ValueError, OverflowError, OSError):
        if len(value) < 8:
            raise  # truncated: a real framing error
        return 8, None


def _field_table(value: bytes) -> tuple[int, dict[str, Any]]:
    """pamqp's field table, with header names decoded as above."""
    try:
        return _ORIGINAL_FIELD_TABLE(value)
    except UnicodeDecodeError:
        pass
    try:
        length = pamqp.common.Struct.integer.unpack(value[0:4])[0]
        offset = 4
        data: dict[str, Any] = {}
        end = offset + length
        if end > len(value):
            raise ValueError("Field table length exceeds available data")
        while offset < end:
            consumed, key = _short_str(value[offset:])
            if offset + consumed > end:
                raise ValueError("Field table key length exceeds data")
            offset += consumed
            consumed, data[key] = pamqp.decode.embedded_value(value[offset:])
            offset += consumed
        return end, data
    except (struct.error, TypeError) as err:
        raise ValueError("Could not unpack data") from err


def tolerate_non_utf8_short_strings() -> None:
    """Install the tolerant decoders in pamqp (idempotent; for the whole process)."""
    replacements: dict[Any, Any] = {
        _ORIGINAL_SHORT_STR: _short_str,
        _ORIGINAL_FIELD_TABLE: _field_table,
        _ORIGINAL_TIMESTAMP: _timestamp,
    }
    for original, tolerant in replacements.items():
        setattr(pamqp.decode, original.__name__, tolerant)
    tables: list[dict[Any, Any]] = [pamqp.decode.METHODS, pamqp.decode.TABLE_MAPPING]
    for table in tables:
        for key, decoder in list(table.items()):
            table[key] = replacements.get(decoder, decoder)
