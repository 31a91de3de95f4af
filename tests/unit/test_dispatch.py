"""Method tables: protocol errors worded as Go zbus words them, results shaped as Go shapes them."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from contd_trio.zbus import codec, gotypes
from contd_trio.zbus.dispatch import Dispatcher, Method
from contd_trio.zbus.errors import CallError, ProtocolError

OBJ = codec.ObjectID("calculator", "1.0")


async def add(a: float, b: float) -> float:
    return a + b


async def divide(a: float, b: float) -> float:
    if b == 0:
        raise CallError("division by zero")
    return a / b


async def join(sep: str, *parts: str) -> str:
    return sep.join(parts)


async def pair() -> tuple[int, str]:
    return 1, "x"


def dispatcher() -> Dispatcher:
    d = Dispatcher()
    d.register(
        OBJ,
        {
            "Add": Method(add, params=(gotypes.FLOAT64, gotypes.FLOAT64), results=(gotypes.FLOAT64,)),
            "Divide": Method(divide, params=(gotypes.FLOAT64, gotypes.FLOAT64), results=(gotypes.FLOAT64,)),
            "Join": Method(
                join, params=(gotypes.STRING,), variadic=gotypes.STRING, results=(gotypes.STRING,)
            ),
            "Pair": Method(pair, results=(gotypes.INT, gotypes.STRING)),
        },
    )
    return d


def request(method: str, *args: Any, obj: codec.ObjectID = OBJ) -> codec.Request:
    return codec.Request(
        id="1", inputs=[codec.pack(a) for a in args], object=obj, reply_to="r", method=method
    )


async def run(method: str, *args: Any) -> codec.Output:
    return await dispatcher().bind(request(method, *args)).run()


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (request("Add", 1.0, 2.0, obj=codec.ObjectID("nope", "1.0")), "unknown object"),
        (request("NoSuch"), "not a function"),
        (request("Add", 1.0), "invalid number of arguments expecting 2 got 1"),
        (request("Add", 1.0, 2.0, 3.0), "invalid number of arguments expecting 2 got 3"),
        (request("Join"), "invalid number of arguments expecting 1 got 0"),
        (request("Add", "x", "y"), "invalid argument type [0] expecting float64 got string"),
        (request("Join", ",", "a", 3), "invalid argument type [2] expecting string got int"),
    ],
)
def test_protocol_errors_are_go_worded(req: codec.Request, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        dispatcher().bind(req)
    assert caught.value.message == message


def test_nil_is_taken_as_the_go_zero_value() -> None:
    call = dispatcher().bind(request("Add", 1.0, None))
    assert call.args == (1.0, 0.0)
    assert trio.run(call.run) == codec.Output(data=codec.pack(1.0))


def test_undecodable_argument_is_a_protocol_error() -> None:
    req = request("Add", 1.0, 2.0)
    req.inputs[1] = b"\xc1"
    with pytest.raises(ProtocolError, match=r"invalid argument type \[1\] expecting float64"):
        dispatcher().bind(req)


def test_integers_are_accepted_for_floats() -> None:
    assert trio.run(run, "Add", 1, 2).data == codec.pack(3.0)


def test_one_result_is_encoded_alone_and_several_as_an_array() -> None:
    assert trio.run(run, "Add", 1.0, 2.0) == codec.Output(data=codec.pack(3.0))
    assert trio.run(run, "Pair") == codec.Output(data=codec.pack([1, "x"]))
    assert trio.run(run, "Join", "-", "a", "b", "c") == codec.Output(data=codec.pack("a-b-c"))


def test_a_call_error_carries_go_zero_results() -> None:
    # Go's Divide returns (0, err): the captured answer has Data 0.0 and the message.
    assert trio.run(run, "Divide", 1.0, 0.0) == codec.Output(data=codec.pack(0.0), error="division by zero")


def test_the_status_object_id_is_reserved() -> None:
    with pytest.raises(ValueError, match="reserved"):
        Dispatcher().register(codec.STATUS_OBJECT, {})


def test_go_type_decoders() -> None:
    assert gotypes.UINT.decode(2**64 - 1) == 2**64 - 1
    with pytest.raises(gotypes.ArgumentTypeError, match="out of range"):
        gotypes.UINT.decode(-1)
    with pytest.raises(gotypes.ArgumentTypeError, match="expecting bool got int"):
        gotypes.BOOL.decode(1)
    with pytest.raises(gotypes.ArgumentTypeError, match="expecting int got bool"):
        gotypes.INT.decode(True)
    assert gotypes.STRING.decode(b"bin") == "bin"
    assert gotypes.slice_of(gotypes.STRING).decode(None) is None
    assert gotypes.slice_of(gotypes.STRING).decode([]) == []
    assert gotypes.TIME.decode(None) == codec.GO_ZERO_TIME
