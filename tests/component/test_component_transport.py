"""The zbus transport facing a peer that is not Redis.

Faults injected at the transport's peer: the broker address leads to a
listener of this test's own that answers bytes no Redis sends, or nothing.
These check our handling of a confused broker; the real-Redis behaviour is
in ``tests/integration/test_transport.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from contd_trio.zbus.errors import BusUnavailable
from contd_trio.zbus.transport import open_redis_transport

Answer = Callable[[trio.SocketStream], Awaitable[None]]


async def _serve(path: Path, answer: Answer, task_status: trio.TaskStatus[None]) -> None:
    with trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM) as listener:
        await listener.bind(str(path))
        listener.listen()
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                sock, _ = await listener.accept()
                nursery.start_soon(_answering, answer, trio.SocketStream(sock))


async def _answering(answer: Answer, stream: trio.SocketStream) -> None:
    async with stream:
        await answer(stream)


async def _garbage(stream: trio.SocketStream) -> None:
    await stream.receive_some(4096)
    await stream.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")


async def _huge_bulk(stream: trio.SocketStream) -> None:
    await stream.receive_some(4096)
    await stream.send_all(b"$99999999999\r\n")


async def _deep_arrays(stream: trio.SocketStream) -> None:
    await stream.receive_some(4096)
    await stream.send_all(b"*1\r\n" * 100)


async def _wrong_shape(stream: trio.SocketStream) -> None:
    # Whatever is asked, an answer of the wrong type for it.
    while await stream.receive_some(4096):
        await stream.send_all(b"+OK\r\n")


@pytest.mark.parametrize("answer", [_garbage, _huge_bulk, _deep_arrays, _wrong_shape])
async def test_a_peer_that_is_not_redis_is_bus_unavailable(
    tmp_path: Path, nursery: trio.Nursery, answer: Answer
) -> None:
    path = tmp_path / "not-redis.sock"
    await nursery.start(_serve, path, answer)
    async with open_redis_transport(f"unix://{path}") as transport:
        with trio.fail_after(5):
            with pytest.raises(BusUnavailable):
                await transport.pop("q", 0, 1)
            with pytest.raises(BusUnavailable):
                await transport.send_batch([("reply", b"k", b"v")], 60)
    nursery.cancel_scope.cancel()


async def test_a_peer_that_never_answers_is_bus_unavailable_at_the_deadline(
    tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-command deadline is shortened for the test (it is 10 s)."""
    from contd_trio.zbus import transport as transport_module

    monkeypatch.setattr(transport_module, "COMMAND_TIMEOUT_SECONDS", 0.5)

    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    path = tmp_path / "silent.sock"
    await nursery.start(_serve, path, silent)
    async with open_redis_transport(f"unix://{path}") as transport:
        with trio.fail_after(5), pytest.raises(BusUnavailable, match="did not answer"):
            await transport.ping()
    nursery.cancel_scope.cancel()
