"""``memelearning worker``: run a detection worker; ``memelearning worker check``:
the readiness probe (exit 0 when ready) for container HEALTHCHECKs and Kubernetes."""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from memelearning.settings import load_settings
from worker.settings import WorkerSettings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run a detection worker (settings: MEMELEARNING_WORKER_* variables)",
        description="Consume frames, run the detector in batches, publish reaction events. "
        "Every setting is a MEMELEARNING_WORKER_* environment variable (see "
        "docs/settings.md); the options below override them. Broker credentials are "
        "only read from the environment, never from the command line.",
    )
    parser.add_argument("--model-dir", type=Path, help="exported SavedModel directory")
    parser.add_argument("--max-batch", type=int, help="frames per model call at most")
    parser.add_argument("--max-wait-ms", type=float, help="longest wait for a batch to fill")
    parser.add_argument("--http-port", type=int, help="port for /metrics, /livez, /readyz")
    parser.set_defaults(func=_run)
    sub = parser.add_subparsers(dest="worker_command", required=False, metavar="[check]")
    check = sub.add_parser("check", help="exit 0 if the worker on this host is ready")
    check.add_argument("--host", default="127.0.0.1")
    check.add_argument("--port", type=int, help="default: MEMELEARNING_WORKER_HTTP_PORT or 9100")
    check.add_argument("--path", default="/readyz", choices=["/readyz", "/livez"])
    check.add_argument("--timeout", type=float, default=3.0)
    check.set_defaults(func=_check)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ("model_dir", "max_batch", "max_wait_ms", "http_port")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _run(args: argparse.Namespace) -> int:
    from worker.service import Worker

    settings = load_settings(WorkerSettings, **_overrides(args))
    asyncio.run(Worker(settings).run())
    return 0


def _check(args: argparse.Namespace) -> int:
    port = args.port if args.port is not None else load_settings(WorkerSettings).http_port
    url = f"http://{args.host}:{port}{args.path}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            ok = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"not ready: {url}: {exc}", file=sys.stderr)
        return 1
    model = _model_info(f"http://{args.host}:{port}/metrics", args.timeout) if ok else ""
    print(f"ready{model}" if ok else "not ready")
    return 0 if ok else 1


def _model_info(url: str, timeout: float) -> str:
    """' (model NAME VERSION on RUNTIME)' from the worker's metrics, or '' when they
    cannot be read: the probe's answer is readiness, this is only for people."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError, UnicodeDecodeError):
        return ""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "memelearning_worker_model_info":
                labels = sample.labels
                return (
                    f" (model {labels.get('name')} {labels.get('version')} "
                    f"on {labels.get('runtime', 'unknown')})"
                )
    return ""
