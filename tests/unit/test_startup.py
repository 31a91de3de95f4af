"""``.startup.toml`` parsing and env merging, as 0-OS's startup.go."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contd_trio.errors import InvalidArgument
from contd_trio.module.startup import Startup, merge_env, parse_startup

# The shape an flist converted from a zinit image carries (as in zos's
# startup_test.go), with values of our own.
NGINX = """
[startup]

[startup.entry]
name = "core.system"

[startup.entry.args]
name = "/usr/sbin/nginx"
dir = "/var/www"
args = [
    "-g",
    "daemon off; error_log /dev/stderr;",
    'say "hi"',
    'back\\slash',
]

[startup.entry.args.env]
WORKERS = "4"
LISTEN = "8080"
MODE = "production"
"""


def test_parse_full_entry() -> None:
    startup = parse_startup(NGINX)
    assert startup == Startup(
        entrypoint=r'/usr/sbin/nginx "-g" "daemon off; error_log /dev/stderr;" "say \"hi\"" "back\\slash"',
        working_dir="/var/www",
        env={"WORKERS": "4", "LISTEN": "8080", "MODE": "production"},
    )


def test_entrypoint_splits_back_into_the_arguments() -> None:
    startup = parse_startup(NGINX)
    assert startup is not None
    assert shlex.split(startup.entrypoint) == [
        "/usr/sbin/nginx",
        "-g",
        "daemon off; error_log /dev/stderr;",
        'say "hi"',
        "back\\slash",
    ]


def _toml_string(value: str) -> str:
    escaped = "".join(c if c.isprintable() and c not in '"\\' else f"\\U{ord(c):08X}" for c in value)
    return f'"{escaped}"'


@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12)))
def test_any_arguments_round_trip(args: list[str]) -> None:
    toml_args = ", ".join(_toml_string(a) for a in args)
    text = (
        '[startup.entry]\nname = "core.system"\n'
        f'[startup.entry.args]\nname = "/bin/prog"\nargs = [{toml_args}]\n'
    )
    startup = parse_startup(text)
    assert startup is not None
    assert shlex.split(startup.entrypoint) == ["/bin/prog", *args]


def test_core_base_with_a_program() -> None:
    startup = parse_startup(
        '[startup.entry]\nname = "core.base"\n[startup.entry.args]\nname = "/sbin/init"\n'
    )
    assert startup == Startup(entrypoint="/sbin/init")


def test_program_name_with_a_space_is_quoted() -> None:
    text = '[startup.entry]\nname = "core.system"\n[startup.entry.args]\nname = "/opt/my app"\n'
    startup = parse_startup(text)
    assert startup is not None
    assert shlex.split(startup.entrypoint) == ["/opt/my app"]


@pytest.mark.parametrize(
    "text",
    [
        '[startup.entry]\nname = "core.base"\n[startup.entry.args]\ndir = "/x"\n',
        '[startup.entry]\nname = "core.other"\n[startup.entry.args]\nname = "/bin/x"\ndir = "/x"\n',
        '[startup.entry]\n[startup.entry.args]\nname = "/bin/x"\ndir = "/x"\n',
    ],
)
def test_entry_without_a_program_still_gives_dir_and_env(text: str) -> None:
    # As 0-OS: the env and dir of any entry apply; only the entrypoint needs a program.
    assert parse_startup(text) == Startup(entrypoint="", working_dir="/x", env={})


@pytest.mark.parametrize(
    "text",
    ["", "# nothing\n", '[startup]\n[startup.other]\nname = "core.system"\n', "[something]\nx = 1\n"],
)
def test_no_entry(text: str) -> None:
    assert parse_startup(text) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[startup.entry\n", "Expected ']'"),
        ('[startup.entry]\nname = "a"\nname = "b"\n', "Cannot overwrite a value (at line 3"),
        ("[startup.entry]\nname = 5\n", "startup.entry.name must be a string, not int"),
        ('startup = "x"\n', "startup must be a table, not str"),
        ('[startup]\nentry = ["x"]\n', "startup.entry must be a table, not list"),
        ('[startup.entry]\nargs = "x"\n', "startup.entry.args must be a table, not str"),
        ('[startup.entry.args]\nargs = "-x"\n', "startup.entry.args.args must be a list, not str"),
        ("[startup.entry.args]\nargs = [1]\n", "startup.entry.args.args[0] must be a string, not int"),
        ("[startup.entry.args]\ndir = 1\n", "startup.entry.args.dir must be a string, not int"),
        ("[startup.entry.args.env]\nN = 1\n", "startup.entry.args.env.N must be a string, not int"),
        ('[startup.entry.args.env]\n"A=B" = "1"\n', "env key 'A=B' is not a variable name"),
    ],
)
def test_malformed(text: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_startup(text)
    assert str(info.value).startswith("rootfs .startup.toml: ")
    assert reason in str(info.value)


def test_merge_env_request_wins_and_order_is_stable() -> None:
    merged = merge_env(["LISTEN=80", "DEBUG=1", "WORKERS=8"], {"WORKERS": "4", "LISTEN": "8080", "MODE": "p"})
    assert merged == ["WORKERS=8", "LISTEN=80", "MODE=p", "DEBUG=1"]


def test_merge_env_as_zos_test() -> None:
    # zos's TestMergeEnvs: the request's HELLO wins over the startup file's.
    assert sorted(merge_env(["FOO=BAR", "HELLO=WORLD"], {"HELLO": "HELLO"})) == ["FOO=BAR", "HELLO=WORLD"]


def test_merge_env_edges() -> None:
    assert merge_env(None, {}) == []
    assert merge_env(None, {"A": "1"}) == ["A=1"]
    assert merge_env(["A=1"], {}) == ["A=1"]
    assert merge_env(["A=1", "B=2", "A=3"], {}) == ["A=3", "B=2"]
    assert merge_env(["A="], {"A": "x"}) == ["A="]
    assert merge_env(["X=a=b"], {"X": "c"}) == ["X=a=b"]
