"""The zbus codec against bytes captured from Go zbus v1.0.1.

Every Go request and response decodes to the values the capture shows, and
our encoding of those values decodes back to the same values (byte identity
is not the goal: Go writes every int as int64, and accepts any width).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contd_trio.zbus import codec

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "zbus-golden"


def _vectors(name: str) -> list[dict[str, Any]]:
    return json.loads((GOLDEN / name).read_text())["vectors"]


CORE = _vectors("go-v1.0.1.json")
CONTAINER = _vectors("go-container-v1.0.1.json")
ALL = CORE + CONTAINER


def plain(value: Any) -> Any:
    """A decoded value in the capture's reading form (timestamps as ISO text)."""
    if isinstance(value, msgpack.Timestamp):
        return {"timestamp": value.to_datetime().isoformat()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def nested(data: bytes | None) -> Any:
    return None if data is None else {"msgpack": plain(codec.unpack(data))}


def request_reading(request: codec.Request) -> dict[str, Any]:
    return {
        "ID": request.id,
        "Inputs": [nested(i) for i in request.inputs],
        "Object": {"Name": request.object.name, "Version": request.object.version},
        "ReplyTo": request.reply_to,
        "Method": request.method,
    }


def response_reading(response: codec.Response) -> dict[str, Any]:
    return {
        "ID": response.id,
        "Output": {
            "Data": nested(response.output.data),
            "Error": None if response.output.error is None else {"Message": response.output.error},
        },
        "Error": response.error,
    }


def ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


REQUESTS = [v for v in ALL if v["name"].startswith("request")]
RESPONSES = [v for v in ALL if v["name"].startswith("response")]
VALUES = [v for v in ALL if v["direction"] == "value"]


def test_the_capture_has_every_kind() -> None:
    assert len(REQUESTS) == 9 and len(RESPONSES) == 13 and len(VALUES) == 8


@pytest.mark.parametrize("vector", REQUESTS, ids=ids(REQUESTS))
def test_go_request_decodes_to_the_captured_values(vector: dict[str, Any]) -> None:
    request = codec.decode_request(bytes.fromhex(vector["hex"]))
    assert request_reading(request) == vector["decoded"]


@pytest.mark.parametrize("vector", REQUESTS, ids=ids(REQUESTS))
def test_our_request_encoding_decodes_back_identically(vector: dict[str, Any]) -> None:
    request = codec.decode_request(bytes.fromhex(vector["hex"]))
    reencoded = codec.encode_request(request)
    assert codec.decode_request(reencoded) == request
    # And as a raw msgpack value it has Go's shape: the same map, key for key.
    assert codec.unpack(reencoded) == codec.unpack(bytes.fromhex(vector["hex"]))


@pytest.mark.parametrize("vector", RESPONSES, ids=ids(RESPONSES))
def test_go_response_decodes_to_the_captured_values(vector: dict[str, Any]) -> None:
    response = codec.decode_response(bytes.fromhex(vector["hex"]))
    assert response_reading(response) == vector["decoded"]


@pytest.mark.parametrize("vector", RESPONSES, ids=ids(RESPONSES))
def test_our_response_encoding_decodes_back_identically(vector: dict[str, Any]) -> None:
    response = codec.decode_response(bytes.fromhex(vector["hex"]))
    reencoded = codec.encode_response(response)
    assert codec.decode_response(reencoded) == response
    assert codec.unpack(reencoded) == codec.unpack(bytes.fromhex(vector["hex"]))


@pytest.mark.parametrize("vector", VALUES, ids=ids(VALUES))
def test_go_values_round_trip(vector: dict[str, Any]) -> None:
    value = codec.unpack(bytes.fromhex(vector["hex"]))
    assert plain(value) == vector["decoded"]
    assert codec.unpack(codec.pack(value)) == value


def test_timestamps_keep_their_nanoseconds() -> None:
    (vector,) = [v for v in VALUES if "time.Unix" in v["name"]]
    value = codec.unpack(bytes.fromhex(vector["hex"]))
    assert value == msgpack.Timestamp(1700000000, 123456789)
    assert codec.pack(value) == bytes.fromhex(vector["hex"])


def test_go_zero_time_round_trips() -> None:
    (vector,) = [v for v in VALUES if "zero value" in v["name"]]
    value = codec.unpack(bytes.fromhex(vector["hex"]))
    assert value["CreatedAt"] == codec.GO_ZERO_TIME
    assert codec.unpack(codec.pack(codec.GO_ZERO_TIME)) == codec.GO_ZERO_TIME


def test_nil_and_empty_slices_stay_apart() -> None:
    assert codec.pack(None) == bytes.fromhex("c0")
    assert codec.pack([]) == bytes.fromhex("90")


def test_str_is_str_and_bytes_is_bin() -> None:
    assert codec.pack("a") == b"\xa1a"
    assert codec.pack(b"a") == b"\xc4\x01a"


def test_status_round_trips_in_go_shape() -> None:
    (vector,) = [v for v in RESPONSES if v["name"] == "response to status"]
    data = codec.decode_response(bytes.fromhex(vector["hex"])).output.data
    assert data is not None
    status = codec.decode_status(data)
    assert [str(o) for o in status.objects] == ["calculator@1.0", "utils@1.0"]
    assert status.workers[0].state == "free"
    assert codec.unpack(codec.pack(status)) == codec.unpack(data)


def test_results_encoding_follows_go_return_from_objects() -> None:
    assert codec.encode_results([]) is None
    assert codec.encode_results([3.0]) == codec.pack(3.0)
    assert codec.encode_results([7.0, 3.0]) == codec.pack([7.0, 3.0])


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc1", "not msgpack"),
        (codec.pack([1, 2]), "must be a map"),
        (codec.pack({"ID": "x", "Method": "Add"}), "no ReplyTo"),
        (codec.pack({"ID": "x", "ReplyTo": ""}), "no ReplyTo"),
        (codec.pack({"ID": "x", "ReplyTo": 5}), "no ReplyTo"),
    ],
)
def test_payloads_nobody_can_be_told_about(payload: bytes, reason: str) -> None:
    with pytest.raises(codec.MalformedPayload, match=reason) as caught:
        codec.decode_request(payload)
    assert caught.value.reply_to is None


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"ID": "i", "ReplyTo": "r", "Inputs": "x"}, "Inputs must be an array"),
        ({"ID": "i", "ReplyTo": "r", "Inputs": [1]}, r"Inputs\[0\] must be bin"),
        ({"ID": "i", "ReplyTo": "r", "Object": 3}, "Object must be a map"),
        ({"ID": "i", "ReplyTo": "r", "Method": 3}, "Method must be a string"),
    ],
)
def test_malformed_requests_that_can_be_answered(message: dict[str, Any], reason: str) -> None:
    with pytest.raises(codec.MalformedPayload, match=reason) as caught:
        codec.decode_request(codec.pack(message))
    assert caught.value.reply_to == "r"
    assert caught.value.request_id == "i"


def test_decoding_is_as_liberal_as_go() -> None:
    # Missing keys are zero values, unknown keys are ignored, bin may stand for str.
    request = codec.decode_request(codec.pack({"ReplyTo": b"r", "Extra": 1, "Inputs": None}))
    assert request == codec.Request(id="", inputs=[], object=codec.ObjectID("", ""), reply_to="r", method="")


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats(allow_nan=False)
        | st.text()
        | st.binary(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=20,
    )
)
def test_any_value_round_trips(value: Any) -> None:
    assert codec.unpack(codec.pack(value)) == value


def test_object_id_parsing() -> None:
    assert codec.ObjectID.parse("container@0.0.1") == codec.ObjectID("container", "0.0.1")
    assert codec.queue_name("container", codec.ObjectID("container", "0.0.1")) == "container.container@0.0.1"
    assert (
        codec.event_channel("server", codec.ObjectID("utils", "1.0"), "TikTok") == "server.utils@1.0.TikTok"
    )
    for bad in ("container", "@1", "c@"):
        with pytest.raises(ValueError, match="name@version"):
            codec.ObjectID.parse(bad)


def test_invalid_utf8_in_the_envelope_round_trips_byte_for_byte() -> None:
    # Go strings are bytes: a buggy Go module can send an ID or a ReplyTo
    # that is not UTF-8. The answer carries exactly those bytes back.
    raw = (
        b"\x85\xa2ID\xa4i\xff\xfed\xa6Inputs\x90\xa6Object\x82\xa4Name\xa1o\xa7Version\xa11"
        b"\xa7ReplyTo\xa3r\xffo\xa6Method\xa1M"
    )
    request = codec.decode_request(raw)
    answer = codec.encode_response(codec.Response(id=request.id))
    assert b"\xa4i\xff\xfed" in answer
    assert codec.wire_key(request.reply_to) == b"r\xffo"


# -- decode_request on anything ----------------------------------------------------------

MSGPACK_INTEGERS = st.integers(-(2**63), 2**64 - 1)
MSGPACK_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | MSGPACK_INTEGERS
    | st.floats()
    | st.text()
    | st.binary()
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=3) | MSGPACK_INTEGERS | st.binary(max_size=3), children, max_size=4
        )
    ),
    max_leaves=12,
)
REQUEST_KEYS = st.sampled_from(["ID", "ReplyTo", "Object", "Method", "Inputs", "Name", "Version"])
REQUEST_LIKE = st.dictionaries(
    REQUEST_KEYS,
    MSGPACK_VALUES
    | st.dictionaries(REQUEST_KEYS, MSGPACK_VALUES, max_size=3)
    | st.lists(st.binary(max_size=8) | MSGPACK_VALUES, max_size=3),
    max_size=6,
)


def _decode_or_malformed(payload: bytes) -> None:
    try:
        request = codec.decode_request(payload)
    except codec.MalformedPayload as exc:
        assert exc.reason
        assert exc.reply_to is None or (isinstance(exc.reply_to, str) and exc.reply_to)
        assert isinstance(exc.request_id, str)
    else:
        assert isinstance(request.reply_to, str) and request.reply_to
        assert all(isinstance(item, bytes) for item in request.inputs)
        assert isinstance(request.id, str) and isinstance(request.method, str)


@given(st.binary(max_size=200))
def test_any_bytes_are_a_request_or_malformed(payload: bytes) -> None:
    _decode_or_malformed(payload)


@given(MSGPACK_VALUES)
def test_any_msgpack_value_is_a_request_or_malformed(value: Any) -> None:
    _decode_or_malformed(msgpack.packb(value, use_bin_type=True))


@given(REQUEST_LIKE, st.binary(max_size=8))
def test_any_request_shaped_map_is_a_request_or_malformed(message: dict[str, Any], tail: bytes) -> None:
    payload = msgpack.packb(message, use_bin_type=True)
    _decode_or_malformed(payload)
    _decode_or_malformed(payload + tail)  # trailing bytes
    _decode_or_malformed(payload[: len(payload) // 2])  # truncated


@given(st.sampled_from(["ID", "ReplyTo", "Method", "Inputs", "Object"]), st.binary(max_size=20))
def test_a_timestamp_extension_of_any_length_anywhere_is_a_request_or_malformed(
    key: str, data: bytes
) -> None:
    # ext 8 with type -1 (the timestamp), whatever its length; msgpack refuses most lengths.
    timestamp = b"\xc7" + bytes([len(data)]) + b"\xff" + data
    fields = {"ID": codec.pack("i"), "ReplyTo": codec.pack("r"), key: timestamp}
    payload = bytes([0x80 | len(fields)]) + b"".join(codec.pack(k) + v for k, v in fields.items())
    _decode_or_malformed(payload)
