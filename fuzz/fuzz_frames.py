"""Coverage-guided fuzzing (atheris, libFuzzer) of the worker's per-frame path and the
API side's event parser, with the same rules as tests/test_fuzz.py.

    pip install -e '.[fuzz]'
    python fuzz/fuzz_frames.py frames -runs=200000
    python fuzz/fuzz_frames.py events -runs=100000

Frames are biometric data, so no corpus directory is ever given: the real JPEGs the
fuzzer mutates stay in memory, and an input is a *script* (which seed, which
mutations, which headers), not a frame. libFuzzer writes a crashing script to
``-artifact_prefix`` (default: the current directory); it holds no picture.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports():
    import PIL.JpegImagePlugin  # noqa: F401  (the Python half of the JPEG decoder)

    import publisher.protocol  # noqa: F401
    import worker.decode
    import worker.events  # noqa: F401
    from tests.hostile import (
        EventChecker,
        FakeMessage,
        FrameChecker,
        idle_worker,
        other_formats,
        real_jpegs,
        valid_headers,
        with_dimensions,
    )

NOW_MS = 1_800_000_000_000
SEEDS = real_jpegs()
FOREIGN = other_formats(SEEDS[0])
FRAMES = FrameChecker(idle_worker(max_frame_bytes=256 * 1024))
EVENTS = EventChecker()
CONTENT_TYPES = ["image/jpeg", None, "", "image/png", "IMAGE/JPEG", "image/jpeg\ufffd"]


def _value(fdp: Any) -> Any:
    """A header value of any type the AMQP decoder hands over."""
    match fdp.ConsumeIntInRange(0, 7):
        case 0:
            return fdp.ConsumeInt(8)
        case 1:
            return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 80))
        case 2:
            return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 80))
        case 3:
            return fdp.ConsumeRegularFloat()
        case 4:
            return fdp.ConsumeBool()
        case 5:
            return None
        case 6:
            return [fdp.ConsumeInt(2)]
        case _:
            return {"k": fdp.ConsumeInt(2)}


def _body(fdp: Any) -> bytes:
    seed = SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)]
    match fdp.ConsumeIntInRange(0, 4):
        case 0:
            return bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4096)))
        case 1:
            return bytes(FOREIGN[fdp.ConsumeIntInRange(0, len(FOREIGN) - 1)])
        case 2:
            return with_dimensions(
                seed, fdp.ConsumeIntInRange(0, 65535), fdp.ConsumeIntInRange(0, 65535)
            )
        case _:
            data = bytearray(seed)
            for _ in range(fdp.ConsumeIntInRange(1, 8)):
                if not data:
                    break
                at = fdp.ConsumeIntInRange(0, len(data) - 1)
                op = fdp.ConsumeIntInRange(0, 3)
                if op == 0:
                    del data[at:]
                elif op == 1:
                    data[at] = fdp.ConsumeInt(1) & 0xFF
                elif op == 2:
                    data[at:at] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 32))
                else:
                    del data[at : at + fdp.ConsumeIntInRange(1, 256)]
            return bytes(data)


def frames(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    headers: dict[str, Any] = valid_headers(NOW_MS)
    for name in list(headers):
        match fdp.ConsumeIntInRange(0, 5):
            case 0:
                del headers[name]
            case 1:
                headers[name] = _value(fdp)
    content_type = CONTENT_TYPES[fdp.ConsumeIntInRange(0, len(CONTENT_TYPES) - 1)]
    message_id = "frame-1" if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(200)
    FRAMES.message(FakeMessage(_body(fdp), content_type, message_id, headers), NOW_MS)


def events(data: bytes) -> None:
    EVENTS.body(data)


def main() -> None:
    target = {"frames": frames, "events": events}[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
