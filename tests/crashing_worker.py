"""`python -m tests.crashing_worker`: a real `memelearning worker` process, except that
it dies (``os._exit``, like a segfault inside a JPEG library would) the moment it
decodes the frame whose body has the SHA-256 in ``FAULT_CRASH_ON_SHA256``.

A fault injector for tests/test_faults_poison.py; never used outside the tests.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

import worker.service
from memelearning.cli import main
from worker.decode import FrameFit, Placement, decode_fitted

EXIT_CODE = 70


def _install(target: str) -> None:
    real = decode_fitted

    def decode_or_die(
        data: bytes, out: Any, *, max_pixels: int, fit: FrameFit
    ) -> tuple[tuple[int, int], Placement]:
        if hashlib.sha256(data).hexdigest() == target:
            os._exit(EXIT_CODE)
        return real(data, out, max_pixels=max_pixels, fit=fit)

    # The worker calls decode_fitted through its own module's name.
    setattr(worker.service, "decode_fitted", decode_or_die)  # noqa: B010


if __name__ == "__main__":
    _install(os.environ["FAULT_CRASH_ON_SHA256"])
    sys.exit(main(["worker"]))
