"""The zbus server and client against a real Redis."""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis
import trio
import trio.testing

from contd_trio.zbus import codec, demo, gotypes
from contd_trio.zbus.client import Client, open_client
from contd_trio.zbus.dispatch import Method
from contd_trio.zbus.errors import CallError, ProtocolError, RequestTimedOut
from contd_trio.zbus.server import Server, slot_lent
from contd_trio.zbus.transport import open_redis_transport, parse_broker_url
from tests.helpers import wait_until
from tools import services

TESTING = codec.ObjectID("testing", "1.0")
GOLDEN = Path(__file__).resolve().parent.parent / "data" / "zbus-golden" / "go-v1.0.1.json"


async def join(sep: str, *parts: str) -> str:
    return sep.join(parts)


async def boom() -> None:
    raise KeyError("the method has a bug")


#: What a ``Lend`` call waits for, by name (set by the test that calls it).
GATES: dict[str, trio.Event] = {}
#: The order in which ``Lend`` and ``Note`` calls ran to their end, in the server.
FINISHED: list[str] = []


async def lend(gate: str) -> str:
    """Waits for its gate with its worker slot lent back, then says so."""
    async with slot_lent():
        await GATES[gate].wait()
    FINISHED.append(gate)
    return gate


async def note(text: str) -> None:
    FINISHED.append(text)


TESTING_METHODS = {
    "Join": Method(join, params=(gotypes.STRING,), variadic=gotypes.STRING, results=(gotypes.STRING,)),
    "Boom": Method(boom),
    "Lend": Method(lend, params=(gotypes.STRING,), results=(gotypes.STRING,)),
    "Note": Method(note, params=(gotypes.STRING,)),
}


def sync_redis(broker: str) -> redis.Redis:
    return redis.Redis(**parse_broker_url(broker).redis_kwargs())


class Served:
    """A demo server for one test, on a module name of its own."""

    def __init__(self, server: Server, broker: str) -> None:
        self.server = server
        self.module = server.module
        self.broker = broker

    def queue(self, object_id: codec.ObjectID) -> str:
        return codec.queue_name(self.module, object_id)


async def serve_demo(
    broker: str, task_status: trio.TaskStatus[Served], *, tiktok: bool = True, **options: Any
) -> None:
    module = f"t{uuid.uuid4().hex[:10]}"
    async with open_redis_transport(broker) as transport:
        server = demo.make_server(transport, module=module, **options)
        server.register(TESTING, TESTING_METHODS)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            if tiktok:
                nursery.start_soon(demo.publish_tiktok, server, 0.05)
            task_status.started(Served(server, broker))


@pytest.fixture
async def served(broker: str, nursery: trio.Nursery) -> Served:
    return await nursery.start(serve_demo, broker)


@pytest.fixture
async def client(broker: str) -> AsyncIterator[Client]:
    async with open_client(broker) as c:
        yield c


async def test_demo_methods(served: Served, client: Client) -> None:
    m = served.module
    assert await client.call(m, demo.CALCULATOR, "Add", 1.0, 2.0) == 3.0
    assert await client.call(m, demo.CALCULATOR, "AddSub", 5.0, 2.0) == [7.0, 3.0]
    assert await client.call(m, demo.CALCULATOR, "Pow", 2.0, 10.0) == 1024.0
    assert await client.call(m, demo.CALCULATOR, "Avg", [10.0, 20.0]) == 15.0
    assert await client.call(m, demo.CALCULATOR, "Avg", None) == 0.0
    assert await client.call(m, demo.UTILS, "Capitalize", "hello world") == "HELLO WORLD"
    assert await client.call(m, demo.UTILS, "Tuple") == [10, "hello world", 0.5]
    assert await client.call(m, demo.UTILS, "Sleep", 1_000_000) is None
    with pytest.raises(CallError, match=r"^division by zero$"):
        await client.call(m, demo.CALCULATOR, "Divide", 1.0, 0.0)


async def test_variadic_arguments(served: Served, client: Client) -> None:
    assert await client.call(served.module, TESTING, "Join", "-") == ""
    assert await client.call(served.module, TESTING, "Join", "-", "a", "b", "c") == "a-b-c"


async def test_an_unexpected_exception_is_a_call_error_not_a_protocol_error(
    served: Served, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(CallError, match=r"^internal error: RuntimeError: Aaaaah!$"):
        await client.call(served.module, demo.UTILS, "Panic")
    with pytest.raises(CallError, match=r"^internal error: KeyError: 'the method has a bug'$"):
        await client.call(served.module, TESTING, "Boom")
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert any("Aaaaah!" in str(r.exc_info[1]) for r in tracebacks if r.exc_info)
    # The server is still serving.
    assert await client.call(served.module, demo.CALCULATOR, "Add", 1.0, 1.0) == 2.0


@pytest.mark.parametrize(
    ("object_id", "method", "args", "message"),
    [
        (demo.CALCULATOR, "NoSuch", (), "not a function"),
        (demo.CALCULATOR, "Add", (1.0,), "invalid number of arguments expecting 2 got 1"),
        (demo.CALCULATOR, "Add", ("x", "y"), "invalid argument type [0] expecting float64 got string"),
        (
            demo.CALCULATOR,
            "Avg",
            ([1.0, "x"],),
            "invalid argument type [0] expecting []float64: element expecting float64 got string",
        ),
    ],
)
async def test_protocol_errors(
    served: Served,
    client: Client,
    object_id: codec.ObjectID,
    method: str,
    args: tuple[Any, ...],
    message: str,
) -> None:
    with pytest.raises(ProtocolError) as caught:
        await client.call(served.module, object_id, method, *args, timeout=10)
    assert caught.value.message == message


async def test_unknown_object(served: Served) -> None:
    # A request names its object; one pushed to a served queue for another
    # object gets Go's "unknown object" (nobody reads an unserved queue at all).
    r = sync_redis(served.broker)
    reply_to = f"unknown.{uuid.uuid4()}"
    request = codec.Request(
        id="u1", inputs=[], object=codec.ObjectID("nope", "1.0"), reply_to=reply_to, method="Add"
    )
    r.rpush(served.queue(demo.CALCULATOR), codec.encode_request(request))
    with trio.fail_after(10):
        while (got := r.lpop(reply_to)) is None:
            await trio.sleep(0.01)
    assert codec.decode_response(got) == codec.Response(id="u1", error="unknown object")


async def test_go_captured_requests_get_go_shaped_answers(served: Served) -> None:
    vectors = {v["name"]: v for v in json.loads(GOLDEN.read_text())["vectors"]}
    cases = [
        ("request calculator@1.0 Add(1.0, 2.0)", demo.CALCULATOR, "response to Add(1,2)"),
        ("request calculator@1.0 Divide(2.0, 0.0)", demo.CALCULATOR, "response to Divide(1,0)"),
        ('request utils@1.0 Capitalize("hello world")', demo.UTILS, None),
        ("request calculator@1.0 Avg([10.0, 10.0, 10.0])", demo.CALCULATOR, None),
    ]
    r = sync_redis(served.broker)
    answers = {}
    for name, object_id, _ in cases:
        raw = bytes.fromhex(vectors[name]["hex"])
        request = codec.decode_request(raw)
        r.delete(request.reply_to)
        r.rpush(served.queue(object_id), raw)
        await wait_until(functools.partial(r.exists, request.reply_to), interval=0.01)
        # The reply key expires (Go: 5 min); checked before the only reply is taken.
        assert 0 < r.ttl(request.reply_to) <= codec.REPLY_TTL_SECONDS
        reply = r.lpop(request.reply_to)
        assert isinstance(reply, bytes)
        response = codec.decode_response(reply)
        assert response.id == request.id
        answers[name] = response
    for name, _, golden_name in cases:
        if golden_name:
            golden = codec.decode_response(bytes.fromhex(vectors[golden_name]["hex"]))
            assert answers[name].output == golden.output
            assert answers[name].error == golden.error
    assert codec.unpack(answers[cases[2][0]].output.data or b"") == "HELLO WORLD"
    assert codec.unpack(answers[cases[3][0]].output.data or b"") == 10.0


async def test_200_concurrent_calls_are_all_answered(served: Served, client: Client) -> None:
    results: dict[int, float] = {}

    async def one(i: int) -> None:
        results[i] = await client.call(served.module, demo.CALCULATOR, "Add", float(i), 1.0, timeout=30)

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(one, i)
    assert results == {i: i + 1.0 for i in range(200)}


async def test_a_slow_method_does_not_delay_fast_ones(served: Served, client: Client) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(client.call, served.module, demo.UTILS, "Sleep", 60 * 10**9)
        await wait_until(lambda: served.server.in_flight == 4)
        with trio.fail_after(10):
            for _ in range(20):
                assert await client.call(served.module, demo.CALCULATOR, "Add", 1.0, 1.0) == 2.0
        assert served.server.in_flight == 4  # answered while every sleeper still sleeps
        nursery.cancel_scope.cancel()


async def test_a_request_lending_its_slot_does_not_block_others_with_one_worker(
    broker: str, nursery: trio.Nursery, client: Client
) -> None:
    served = await nursery.start(lambda task_status: serve_demo(broker, task_status, workers=1))
    name = uuid.uuid4().hex
    gate = GATES[name] = trio.Event()
    answers: list[str] = []

    async def call_lend() -> None:
        answers.append(await client.call(served.module, TESTING, "Lend", name))

    async with trio.open_nursery() as callers:
        callers.start_soon(call_lend)
        await wait_until(lambda: served.server.lending == 1, interval=0.01)
        with trio.fail_after(10):
            for _ in range(5):
                assert await client.call(served.module, demo.CALCULATOR, "Add", 1.0, 1.0) == 2.0
            status = await client.status(served.module)
        # Truthful: the one slot is free, and the lender is still in flight.
        assert [w.state for w in status.workers] == ["free"]
        assert served.server.in_flight == 1 and not answers
        gate.set()
    assert len(answers) == 1
    assert served.server.in_flight == 0 and served.server.lending == 0
    assert [w.state for w in served.server.status().workers] == ["free"]


async def test_a_lender_takes_its_slot_back_before_new_requests(
    broker: str, nursery: trio.Nursery, client: Client
) -> None:
    served = await nursery.start(lambda task_status: serve_demo(broker, task_status, workers=1))
    r = sync_redis(broker)
    name = uuid.uuid4().hex
    gate = GATES[name] = trio.Event()

    async with trio.open_nursery() as callers:
        callers.start_soon(client.call, served.module, TESTING, "Lend", name)
        await wait_until(lambda: served.server.lending == 1, interval=0.01)
        # The lent slot serves a slow request; a fast one waits in Redis behind it.
        callers.start_soon(client.call, served.module, demo.UTILS, "Sleep", 500 * 10**6)
        await wait_until(lambda: served.server.in_flight == 2, interval=0.01)
        queued = uuid.uuid4().hex
        callers.start_soon(client.call, served.module, TESTING, "Note", queued)
        await wait_until(lambda: r.llen(served.queue(TESTING)) == 1, interval=0.01)
        gate.set()  # the lender wants a slot again while the Sleep holds it
    # The Sleep's slot went to the lender first, the queued request came after.
    assert [n for n in FINISHED if n in (name, queued)] == [name, queued]
    assert served.server.in_flight == 0 and served.server.lending == 0


async def test_a_lender_cancelled_while_waiting_for_its_slot_still_answers(
    broker: str, nursery: trio.Nursery, client: Client
) -> None:
    served = await nursery.start(lambda task_status: serve_demo(broker, task_status, workers=1, timeout=1.0))
    name = uuid.uuid4().hex
    gate = GATES[name] = trio.Event()
    failures: list[str] = []

    async def call(object_id: codec.ObjectID, method: str, *args: Any) -> None:
        with pytest.raises(CallError) as caught:
            await client.call(served.module, object_id, method, *args, timeout=30)
        failures.append(str(caught.value))

    async with trio.open_nursery() as callers:
        callers.start_soon(call, TESTING, "Lend", name)
        await wait_until(lambda: served.server.lending == 1, interval=0.01)
        # Taken after the Lend, so its deadline comes later: the Lend's deadline
        # passes while it waits for the slot the Sleep holds.
        callers.start_soon(call, demo.UTILS, "Sleep", 60 * 10**9)
        await wait_until(lambda: served.server.in_flight == 2, interval=0.01)
        gate.set()
    assert failures == ["[testing@1.0].Lend() timed out after 1s", "[utils@1.0].Sleep() timed out after 1s"]
    assert served.server.in_flight == 0 and served.server.lending == 0
    assert [w.state for w in served.server.status().workers] == ["free"]
    assert await client.call(served.module, demo.CALCULATOR, "Add", 1.0, 1.0, timeout=10) == 2.0


async def test_a_request_past_its_deadline_is_cancelled_and_answered(
    broker: str, nursery: trio.Nursery, client: Client
) -> None:
    served = await nursery.start(lambda task_status: serve_demo(broker, task_status, timeout=0.5))
    started = trio.current_time()
    with pytest.raises(CallError, match=r"^\[utils@1.0\].Sleep\(\) timed out after 500ms$"):
        await client.call(served.module, demo.UTILS, "Sleep", 60 * 10**9, timeout=10)
    assert trio.current_time() - started < 5
    assert served.server.in_flight == 0


async def test_status_while_busy_and_requests_beyond_capacity_wait_in_redis(
    broker: str, nursery: trio.Nursery, client: Client
) -> None:
    served = await nursery.start(lambda task_status: serve_demo(broker, task_status, workers=4))
    r = sync_redis(broker)
    queue = served.queue(demo.UTILS)
    fifth: list[str] = []

    async def call_fifth() -> None:
        fifth.append(await client.call(served.module, demo.UTILS, "Capitalize", "fifth"))

    async with trio.open_nursery() as callers:
        for _ in range(4):
            callers.start_soon(client.call, served.module, demo.UTILS, "Sleep", 2 * 10**9)
        await wait_until(lambda: served.server.in_flight == 4, interval=0.01)
        callers.start_soon(call_fifth)
        await wait_until(lambda: r.llen(queue) == 1, interval=0.01)
        # The reader answers status requests while every worker is busy...
        status = await client.status(served.module)
        assert sorted(map(str, status.objects)) == ["calculator@1.0", "testing@1.0", "utils@1.0"]
        assert [w.state for w in status.workers] == ["busy"] * 4
        assert {w.action for w in status.workers} == {"[utils@1.0].Sleep()"}
        assert all(isinstance(w.start_time, msgpack.Timestamp) for w in status.workers)
        # ...and, having gone round, still left the fifth in Redis, as Go's server does.
        assert r.llen(queue) == 1 and fifth == []
    assert fifth == ["FIFTH"]  # served once a worker was free
    status = await client.status(served.module)
    assert [w.state for w in status.workers] == ["free"] * 4


def raw_request(object_id: codec.ObjectID, method: str, *args: Any) -> tuple[str, bytes]:
    """A request as a Go client pushes it, with its ReplyTo (to look for its answer)."""
    reply_to = f"test.{uuid.uuid4()}"
    inputs = [codec.pack(arg) for arg in args]
    request = codec.Request(id=reply_to, inputs=inputs, object=object_id, reply_to=reply_to, method=method)
    return reply_to, codec.encode_request(request)


async def test_stopping_gives_back_what_the_reader_took_after_the_stop(broker: str) -> None:
    """The reader's round trip to Redis is held (a fault injected into our
    own transport wrapper; Redis is real) once it has taken a request; the
    stop comes meanwhile. What it took goes back to the head of its queue,
    in order, for the next server: it is neither started nor lost."""
    r = sync_redis(broker)
    module = f"t{uuid.uuid4().hex[:10]}"
    queue = codec.queue_name(module, demo.UTILS)
    took = trio.Event()
    release = trio.Event()
    async with open_redis_transport(broker) as transport:
        exchange = transport.exchange

        async def held_exchange(*args: Any, **kwargs: Any) -> list[tuple[str, bytes]]:
            taken = await exchange(*args, **kwargs)
            if any(q == queue for q, _payload in taken):
                took.set()
                await release.wait()
            return taken

        transport.exchange = held_exchange  # type: ignore[method-assign]
        server = demo.make_server(transport, module=module, workers=4)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            requests = [raw_request(demo.UTILS, "Capitalize", f"r{i}") for i in range(3)]
            r.rpush(queue, *(payload for _reply_to, payload in requests))
            with trio.fail_after(10):
                await took.wait()
            nursery.start_soon(server.stop, 5.0)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
            with trio.fail_after(10):
                await server.wait_stopped()
    assert r.lrange(queue, 0, -1) == [payload for _reply_to, payload in requests]
    assert not any(r.exists(reply_to) for reply_to, _payload in requests)
    r.delete(queue)


async def test_stopping_wakes_a_parked_reader_and_serves_what_is_in_flight(
    broker: str, nursery: trio.Nursery, client: Client
) -> None:
    """Every worker busy: the reader waits on its wake-up list only. A stop
    wakes it; the request in flight is still served within the grace, and
    the requests waiting in Redis stay there, in order."""
    served = await nursery.start(lambda task_status: serve_demo(broker, task_status, workers=1))
    r = sync_redis(broker)
    queue = served.queue(demo.UTILS)
    slept: list[object] = []

    async def sleep_call() -> None:
        slept.append(await client.call(served.module, demo.UTILS, "Sleep", 500 * 10**6))

    async with trio.open_nursery() as callers:
        callers.start_soon(sleep_call)
        await wait_until(lambda: served.server.in_flight == 1, interval=0.01)
        waiting = [raw_request(demo.UTILS, "Capitalize", f"w{i}") for i in range(2)]
        r.rpush(queue, *(payload for _reply_to, payload in waiting))
        with trio.fail_after(10):
            await served.server.stop(5.0)
            await served.server.wait_stopped()
    assert slept == [None]
    assert r.lrange(queue, 0, -1) == [payload for _reply_to, payload in waiting]
    assert not any(r.exists(reply_to) for reply_to, _payload in waiting)
    r.delete(queue)


async def test_garbage_never_kills_the_reader(
    served: Served, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="contd.zbus")
    r = sync_redis(served.broker)
    queue = served.queue(demo.CALCULATOR)
    reply_to = f"garbage.{uuid.uuid4()}"
    for payload in [
        b"",
        b"\xc1",
        b"not msgpack at all",
        codec.pack([1, 2, 3]),
        codec.pack({"ID": "no-reply-to", "Method": "Add"}),
        codec.pack(
            {
                "ID": "bad-inputs",
                "ReplyTo": reply_to,
                "Inputs": "x",
                "Object": demo.CALCULATOR.to_go(),
                "Method": "Add",
            }
        ),
    ]:
        r.rpush(queue, payload)
    assert await client.call(served.module, demo.CALCULATOR, "Add", 2.0, 2.0, timeout=10) == 4.0
    answer = codec.decode_response(r.blpop([reply_to], 5)[1])
    assert answer.id == "bad-inputs"
    assert answer.error == "invalid request: Inputs must be an array, not string"
    dropped = [r for r in caplog.records if r.getMessage() == "dropped a payload that is not a request"]
    assert len(dropped) == 5


async def test_a_queue_of_the_wrong_type_does_not_stop_the_others(served: Served, client: Client) -> None:
    r = sync_redis(served.broker)
    r.set(served.queue(demo.UTILS), "not a list")
    try:
        assert await client.call(served.module, demo.CALCULATOR, "Add", 2.0, 3.0, timeout=10) == 5.0
    finally:
        r.delete(served.queue(demo.UTILS))
    assert await client.call(served.module, demo.UTILS, "Capitalize", "ok", timeout=10) == "OK"


async def test_events_reach_subscribers(served: Served, client: Client) -> None:
    async with client.subscribe(served.module, demo.UTILS, "TikTok") as ticks:
        seen = []
        with trio.fail_after(5):
            async for tick in ticks:
                seen.append(tick)
                if len(seen) == 3:
                    break
    assert all(isinstance(t, msgpack.Timestamp) for t in seen)
    assert [t.to_unix_nano() for t in seen] == sorted(t.to_unix_nano() for t in seen)


async def test_a_client_deadline_without_a_server(client: Client) -> None:
    with pytest.raises(RequestTimedOut, match=r"within 0\.3 seconds"):
        await client.call(f"nobody{uuid.uuid4().hex[:6]}", demo.CALCULATOR, "Add", 1.0, 2.0, timeout=0.3)


async def test_redis_restarted_mid_test(
    private_redis: services.RedisService, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="contd.zbus")

    def messages() -> list[str]:
        return [record.getMessage() for record in caplog.records]

    # No TikTok events: the only message to send while Redis is away is the answer.
    served = await nursery.start(lambda task_status: serve_demo(private_redis.url, task_status, tiktok=False))
    async with open_client(private_redis.url) as client:
        assert await client.call(served.module, demo.CALCULATOR, "Add", 1.0, 2.0, timeout=10) == 3.0
        async with trio.open_nursery() as calls:
            answers = []

            async def slow_call() -> None:
                answers.append(await client.call(served.module, demo.UTILS, "Sleep", 2 * 10**9, timeout=30))

            calls.start_soon(slow_call)
            await wait_until(lambda: served.server.in_flight == 1, interval=0.01)
            private_redis.stop()
            assert served.server.in_flight == 1  # Redis went away before the Sleep ended
            # The Sleep ends while Redis is away, and sending its answer fails...
            await wait_until(lambda: served.server.in_flight == 0)
            await wait_until(lambda: "could not send answers, keeping them" in messages())
            private_redis.restart()
        # ...and that answer was sent once it came back.
        assert answers == [None]
        with trio.fail_after(15):
            assert await client.call(served.module, demo.CALCULATOR, "Add", 2.0, 2.0) == 4.0
    assert "redis unavailable, retrying" in messages() and "redis reachable again" in messages()
