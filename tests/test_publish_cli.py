"""``memelearning publish`` end to end, against the real broker.

``main()`` runs ``asyncio.run`` itself, so the async tests call it in a thread; the
broker URL comes from the environment, as an operator would give it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from memelearning.cli import main
from publisher.protocol import HEADER_PARTICIPANT, parse_frame
from tests.publisher_support import PERSON, frames_queue, write_video

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def env_url(amqp_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MEMELEARNING_PUBLISHER_AMQP_URL", amqp_url)
    return amqp_url


def _summary_counts(stdout: str) -> tuple[int, int, int]:
    match = re.search(r"published (\d+), confirmed (\d+), failed (\d+)", stdout)
    assert match, stdout
    published, confirmed, failed = (int(g) for g in match.groups())
    return published, confirmed, failed


async def test_publish_sends_each_named_participants_frames(
    env_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["publish", "--meeting", "m1", "--participant", "alice", "--participant", "bob"]
    argv += ["--fps", "20", "--count", "3", "--max-side", "64", "--no-progress", str(PERSON)]
    async with frames_queue(env_url) as queue:
        # when
        code = await asyncio.to_thread(main, argv)
        messages = await queue.drain()
    # then
    assert code == 0
    assert _summary_counts(capsys.readouterr().out) == (6, 6, 0)
    metas = [
        parse_frame(
            body=m.body, content_type=m.content_type, message_id=m.message_id, headers=m.headers
        )
        for m in messages
    ]
    assert [(m.participant_id, m.sequence) for m in metas] == [
        ("alice", 0),
        ("bob", 0),
        ("alice", 1),
        ("bob", 1),
        ("alice", 2),
        ("bob", 2),
    ]
    assert {m.meeting_id for m in metas} == {"m1"}


async def test_publish_simulates_m_participants_from_a_video(
    env_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = tmp_path / "clip.mp4"
    write_video(video, [i / 30 for i in range(90)])
    argv = ["publish", "--meeting", "m1", "--participants", "3", "--fps", "10"]
    argv += ["--duration", "0.3", "--no-progress", str(video)]
    async with frames_queue(env_url) as queue:
        code = await asyncio.to_thread(main, argv)
        messages = await queue.drain()
    assert code == 0
    assert _summary_counts(capsys.readouterr().out) == (9, 9, 0)
    assert [m.headers[HEADER_PARTICIPANT] for m in messages] == ["p1", "p2", "p3"] * 3


async def test_publish_without_a_worker_says_to_start_one(
    env_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # given the exchange exists but no worker queue is bound to it
    argv = ["publish", "--meeting", "m1", "--fps", "50", "--count", "2", "--no-progress"]
    async with frames_queue(env_url, bind=False):
        code = await asyncio.to_thread(main, [*argv, str(PERSON)])
    captured = capsys.readouterr()
    assert code == 1
    assert "start a worker" in captured.err
    assert _summary_counts(captured.out)[1] == 0


def test_a_missing_source_is_a_usage_error(
    env_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["publish", "--meeting", "m1", str(tmp_path / "nothing.mp4")])
    assert code == 2
    assert "neither a video file nor a folder" in capsys.readouterr().err


def test_a_bad_participant_id_is_a_usage_error(
    env_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["publish", "--meeting", "m1", "--participant", "a.b", str(PERSON)])
    assert code == 2
    assert "participant id 'a.b'" in capsys.readouterr().err


def test_bad_settings_name_the_variable(
    env_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEMELEARNING_PUBLISHER_MAX_IN_FLIGHT", "0")
    code = main(["publish", "--meeting", "m1", str(PERSON)])
    assert code == 2
    assert "MEMELEARNING_PUBLISHER_MAX_IN_FLIGHT" in capsys.readouterr().err


async def test_ctrl_c_stops_after_confirming_what_is_in_flight(env_url: str) -> None:
    # given a publish that would run forever
    argv = ["-m", "memelearning", "publish", "--meeting", "m1", "--participants", "2"]
    argv += ["--fps", "25", "--loop", "--no-progress", str(PERSON)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    async with frames_queue(env_url) as queue:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *argv,
            env=env,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            # (the first frame waits for the process to start: seconds under load)
            async with asyncio.timeout(90), queue.queue.iterator() as incoming:
                async for message in incoming:  # frames are flowing
                    await message.ack()
                    break
            # when the user presses Ctrl-C
            process.send_signal(signal.SIGINT)
            async with asyncio.timeout(60):
                stdout, stderr = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        received = 1 + len(await queue.drain())
    # then it exits as interrupted, with everything it published confirmed and delivered
    assert process.returncode == 130, stderr.decode()
    published, confirmed, failed = _summary_counts(stdout.decode())
    assert published == confirmed == received
    assert failed == 0
