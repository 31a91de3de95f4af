"""Backend URLs: one table of cases for the one parser, which validation,
the stats monitors and the log shim all use."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contd_trio import logshim
from contd_trio.errors import InvalidArgument
from contd_trio.module.backends import LOG_BACKENDS, STATS_BACKENDS, RedisChannel, check_backends
from contd_trio.module.redis_publisher import address_refusal
from contd_trio.module.types import Container, Logs, LogsRedis, Stats

#: url -> (host, port, channel), or the reason it is refused.
CASES: dict[str, tuple[str, int, bytes] | str] = {
    "redis://127.0.0.1:6380/out": ("127.0.0.1", 6380, b"out"),
    "redis://host/ch": ("host", 6379, b"ch"),
    "redis://stats.local/a/b": ("stats.local", 6379, b"a/b"),
    "redis://[::1]:7000/a/b": ("::1", 7000, b"a/b"),
    "redis://[::1]/c": ("::1", 6379, b"c"),
    "redis://[fe80::1]:1/c": ("fe80::1", 1, b"c"),
    "redis://h:65535/c": ("h", 65535, b"c"),
    "tcp://h:1/c": "scheme",
    "REDIS://h/c": "scheme",
    "redis://h:1": "channel",
    "redis://h/": "channel",
    "redis://:1/c": "host",
    "redis://::1/c": "host",
    "redis://h:/c": "port",
    "redis://h:x/c": "port",
    "redis://h:0/c": "port",
    "redis://h:99999/c": "port",
    "redis://h:\u0661/c": "port",  # a digit, but not an ASCII one
    "redis://[::1]x/c": "port",
    "redis://[nothost]/c": "IPv6",
    "redis://[::1/c": "IPv6",
    "redis://user:pw@h/c": "user",
    "redis://h/c?x=1": "query",
    "redis://h/c#f": "fragment",
    "redis://h/c\nd": "control",
    "redis://ho st/c": "host",
    "": "scheme",
}


@pytest.mark.parametrize(("url", "expected"), list(CASES.items()))
def test_the_one_parser(url: str, expected: tuple[str, int, bytes] | str) -> None:
    if isinstance(expected, tuple):
        assert logshim.parse_redis_url(url) == expected
        assert RedisChannel.parse(url) == RedisChannel(*expected)
    else:
        with pytest.raises(ValueError, match=expected):
            logshim.parse_redis_url(url)


@pytest.mark.parametrize(("url", "expected"), list(CASES.items()))
def test_validation_accepts_exactly_what_the_shim_and_monitors_can_use(
    url: str, expected: tuple[str, int, bytes] | str
) -> None:
    as_log = Container(logs=[Logs("redis", LogsRedis("redis://h/out", url))])
    as_stats = Container(stats=[Stats("redis", url)])
    if isinstance(expected, tuple):
        check_backends(as_log)
        check_backends(as_stats)
    elif url:
        with pytest.raises(InvalidArgument, match=r"logs\[0\] stderr"):
            check_backends(as_log)
    if not isinstance(expected, tuple):
        with pytest.raises(InvalidArgument, match=r"stats\[0\] endpoint"):
            check_backends(as_stats)


@given(st.text(max_size=60))
def test_the_parser_only_ever_raises_value_error(url: str) -> None:
    try:
        host, port, channel = logshim.parse_redis_url("redis://" + url)
    except ValueError:
        return
    assert host and 1 <= port <= 65535 and channel


def test_unknown_types_are_named() -> None:
    with pytest.raises(InvalidArgument, match=r"logs\[0\] type 'file' is not known \(known: redis\)"):
        check_backends(Container(logs=[Logs("file", LogsRedis("x", ""))]))
    with pytest.raises(InvalidArgument, match=r"stats\[1\] type 'influx'"):
        check_backends(Container(stats=[Stats("redis", "redis://h/c"), Stats("influx", "x")]))


def test_the_log_shim_gets_one_argument_per_url() -> None:
    entry = Logs("redis", LogsRedis("redis://h/o", "redis://h/e"))
    assert LOG_BACKENDS["redis"].shim_args(2, entry) == {
        "--stdout.2": "redis://h/o",
        "--stderr.2": "redis://h/e",
    }
    assert set(STATS_BACKENDS) == {"redis"}


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", None),
        ("::1", None),
        ("10.1.2.3", None),
        ("169.254.1.1", None),
        ("fe80::1", None),
        ("fe80::1%lo", None),
        ("2001:db8::1", None),
        ("::ffff:127.0.0.1", None),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("0.1.2.3", "reserved"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_where_a_redis_can_be(address: str, refused: str | None) -> None:
    refusal = address_refusal(address)
    if refused is None:
        assert refusal is None
    else:
        assert refusal is not None and refused in refusal


def test_a_stats_endpoint_at_no_redis_address_is_refused_by_run() -> None:
    unspecified = r"^stats\[0\] endpoint 'redis://0.0.0.0:1/c': 0.0.0.0 is an unspecified address$"
    with pytest.raises(InvalidArgument, match=unspecified):
        check_backends(Container(stats=[Stats("redis", "redis://0.0.0.0:1/c")]))
    with pytest.raises(InvalidArgument, match=r"^stats\[0\] endpoint .* ff02::1 is a multicast address$"):
        check_backends(Container(stats=[Stats("redis", "redis://[ff02::1]/c")]))
    check_backends(
        Container(stats=[Stats("redis", "redis://localhost/c"), Stats("redis", "redis://[::1]/c")])
    )


def test_entries_naming_one_redis_share_a_destination() -> None:
    destination = STATS_BACKENDS["redis"].destination
    assert destination(Stats("redis", "redis://h/a")) == destination(Stats("redis", "redis://h:6379/b"))
    assert destination(Stats("redis", "redis://h/a")) != destination(Stats("redis", "redis://h:6380/a"))
    assert destination(Stats("redis", "redis://[::1]:7/a")) == "redis://[::1]:7"
