"""No value a tenant puts in a Container can end a task of the daemon.

The daemon runs as a process of its own (a dead task ends it, and the test
sees the process exit). Containers are Run with odd, extreme and malformed
values in every field of Container, the log backends' and stats endpoints'
URLs above all (IPv6 hosts, empty or out-of-range ports, huge channels...).
Each Run is accepted (and then its container runs with its log shim and
stats monitor) or refused with a call error. Then every task must still be
there: the process lives and its status object answers (the server), a
healthy container's stats keep arriving (the stats monitors' nursery), a
killed container is restarted (supervision), and a normal Run, Inspect and
Delete work. The same again after the daemon is SIGKILLed and started over,
since start-up reconciliation resumes every accepted container's monitor.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
from pathlib import Path
from typing import Any

import msgpack
import redis
import trio

from contd_trio.module.names import MODULE
from contd_trio.module.types import Logs, LogsRedis, MountInfo, NetworkInfo, Stats
from contd_trio.zbus.client import Client, open_client
from contd_trio.zbus.errors import RequestTimedOut
from tests.integration.faultkit import (
    Answer,
    Callers,
    ContdProcess,
    Findings,
    answer_problems,
    ask,
    cgroup_processes,
    container,
    leaf_errors,
    within,
)
from tools import services

CALL_TIMEOUT = 30.0
#: What containers with a log backend run: their output must reach their log.
TICKING = "sh -c 'trap \"exit 0\" TERM; while true; do echo tick; sleep 0.2 & wait; done'"


def endpoint_urls(port: int, dead_port: int) -> dict[str, str]:
    """Redis URLs a tenant may give as a log backend or stats endpoint."""
    return {
        "ipv6-noport": "redis://[::1]/c",
        "ipv6-port": f"redis://[::1]:{dead_port}/c",
        "empty-port": "redis://localhost:/c",
        "empty-port-ip": "redis://127.0.0.1:/c",
        "port-too-big": "redis://h:99999/c",
        "port-zero": "redis://127.0.0.1:0/c",
        "mapped-v4": f"redis://[::ffff:127.0.0.1]:{port}/c",
        "huge-channel": f"redis://127.0.0.1:{port}/" + "c" * 100_000,
        "userinfo": f"redis://user:secret@127.0.0.1:{port}/c",
        "query": f"redis://127.0.0.1:{port}/c?db=1#x",
        "zone": "redis://[fe80::1%25lo]:6379/c",
        "open-bracket": "redis://[::1/c",
        "long-host": "redis://" + "h" * 300 + ":6379/c",
        "slashes": f"redis://127.0.0.1:{port}/a/b/c",
        "space": f"redis://127.0.0.1:{port}/c d\n",
        "no-channel": f"redis://127.0.0.1:{port}/",
        "other-scheme": f"tcp://127.0.0.1:{port}/c",
    }


def tenant_cases(
    rootfs: Path, netns: str, source: Path, port: int, dead_port: int
) -> dict[str, dict[str, Any]]:
    """Label -> the Container fields that differ from a plain, valid one."""
    real = f"redis://127.0.0.1:{port}/shared"
    cases: dict[str, dict[str, Any]] = {}
    for label, url in endpoint_urls(port, dead_port).items():
        cases[f"s-{label}"] = {"stats": [Stats("redis", url)]}
        cases[f"l-{label}"] = {
            "logs": [Logs("redis", LogsRedis(stdout=url, stderr=url))],
            "entrypoint": TICKING,
        }
    cases |= {
        "s-type-upper": {"stats": [Stats("REDIS", real)]},
        "s-type-empty": {"stats": [Stats("", real)]},
        "s-empty-endpoint": {"stats": [Stats("redis", "")]},
        "s-twice": {"stats": [Stats("redis", real), Stats("redis", real)]},
        "s-shared": {"stats": [Stats("redis", real)]},  # the same endpoint as s-twice
        "l-type-x": {"logs": [Logs("x", LogsRedis(stdout=real))]},
        "l-empty": {"logs": [Logs("redis", LogsRedis())]},
        "l-stderr-only": {"logs": [Logs("redis", LogsRedis(stderr=real))], "entrypoint": TICKING},
        "n-max": {"name": "a" * 76},
        "n-long": {"name": "a" * 77},
        "n-unicode": {"name": "ç"},
        "n-dots": {"name": "a..b"},
        "n-slash": {"name": "a/b"},
        "n-empty": {"name": ""},
        "r-relative": {"rootfs": "rootfs"},
        "r-missing": {"rootfs": "/nonexistent"},
        "r-dotdot": {"rootfs": f"{rootfs}/../{rootfs.name}"},
        "r-nul": {"rootfs": f"{rootfs}\0"},
        "r-file": {"rootfs": "/etc/hostname"},
        "e-empty-value": {"env": ["A="]},
        "e-no-key": {"env": ["=B"]},
        "e-newline": {"env": ["A=1\nB=2"]},
        "e-path-empty": {"env": ["PATH="]},
        "e-many": {"env": [f"K{i}=v" for i in range(5000)]},
        "e-nul": {"env": ["A=\0"]},
        "e-huge": {"env": ["A=" + "v" * 100_000]},
        "w-relative": {"working_dir": "tmp"},
        "w-missing": {"working_dir": "/nonexistent/dir"},
        "w-file": {"working_dir": "/etc/passwd"},
        "w-nul": {"working_dir": "/tmp\0"},
        "net-empty": {"network": NetworkInfo("")},
        "net-dotdot": {"network": NetworkInfo("..")},
        "net-missing": {"network": NetworkInfo("nosuch")},
        "net-space": {"network": NetworkInfo(netns + " ")},
        "m-missing": {"mounts": [MountInfo("/nonexistent", "/mnt")]},
        "m-relative": {"mounts": [MountInfo(str(source), "mnt")]},
        "m-tmpfs": {"mounts": [MountInfo("", "/mnt", "tmpfs", ["size=1m"])]},
        "m-proc": {"mounts": [MountInfo("proc", "/mnt", "proc")]},
        "m-bogus-option": {"mounts": [MountInfo(str(source), "/mnt", "bind", ["bogus"])]},
        "m-file": {"mounts": [MountInfo("/etc/hostname", "/mnt/h")]},
        "m-over-proc": {"mounts": [MountInfo(str(source), "/proc")]},
        "m-dotdot": {"mounts": [MountInfo(str(source), "/mnt/../../etc")]},
        "m-many": {"mounts": [MountInfo(str(source), f"/m{i}") for i in range(200)]},
        "ep-missing": {"entrypoint": "nosuchbinary"},
        "ep-exits": {"entrypoint": "sh -c 'exit 0'"},
        "ep-unclosed": {"entrypoint": "sh -c 'x"},
        "ep-huge": {"entrypoint": "sleep " + "1" * 100_000},
        "ep-nul": {"entrypoint": "sleep\0 1000"},
        "ep-blank": {"entrypoint": "   "},
        "i-corex": {"interactive": True, "entrypoint": ""},
        "cpu-zero": {"cpu": 0},
        "cpu-all": {"cpu": os.cpu_count() or 1},
        "cpu-big": {"cpu": 2**32},
        "cpu-max": {"cpu": 2**64 - 1},
        "mem-1": {"memory": 1},
        "mem-4k": {"memory": 4096},
        "mem-2e63": {"memory": 2**63},
        "mem-max": {"memory": 2**64 - 1},
        "elevated": {"elevated": True},
        "created-zero": {"created_at": msgpack.Timestamp(0, 0)},
        "created-future": {"created_at": msgpack.Timestamp(2**33, 0)},
        "created-negative": {"created_at": msgpack.Timestamp(-(10**9), 0)},
        "prop-shared": {"rootfs_propagation": "shared"},
        "prop-bogus": {"rootfs_propagation": "bogus"},
        "st-1ns": {"shutdown_timeout_ns": 1},
        "st-max": {"shutdown_timeout_ns": 2**63 - 1},
    }
    return cases


class StatsListener:
    """Counts the stats messages published on one channel of the backend Redis."""

    def __init__(self, backend: services.RedisService, channel: str) -> None:
        self._pubsub = redis.Redis(host="127.0.0.1", port=backend.port).pubsub()
        self._pubsub.subscribe(channel)
        self.received = 0

    def poll(self) -> int:
        while message := self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.01):
            json.loads(message["data"])
            self.received += 1
        return self.received

    def close(self) -> None:
        self._pubsub.close()


async def still_serving(
    bus: Client, daemon: ContdProcess, listener: StatsListener, ns: str, netns: str, rootfs: Path, phase: str
) -> list[str]:
    """Every task of the daemon still does its job."""
    problems: list[str] = []
    if not daemon.alive():
        return [f"the daemon is gone ({daemon.state()}): {leaf_errors(daemon.log(whole=True))}"]
    if not await status_answers(bus):
        problems.append("its status object does not answer")
    # Two more stats messages: the monitors' nursery is alive, a full tick later.
    seen = listener.poll()
    if not await within(lambda: listener.poll() >= seen + 2, 15):
        problems.append(f"the healthy container's stats stopped ({listener.received} messages in all)")
    probe = f"probe-{phase}"
    run = await ask(bus, "Run", ns, container(rootfs, netns, probe), timeout=CALL_TIMEOUT)
    inspect = await ask(bus, "Inspect", ns, probe, timeout=CALL_TIMEOUT)
    delete = await ask(bus, "Delete", ns, probe, timeout=CALL_TIMEOUT)
    for what, answer in (("Run", run), ("Inspect", inspect), ("Delete", delete)):
        if answer.kind != "ok":
            problems.append(f"a normal {what} answered {answer}")
    return problems


async def status_answers(bus: Client) -> bool:
    try:
        await bus.status(MODULE, timeout=2)
    except RequestTimedOut:
        return False
    return True


def names_a_backend(answer: Answer, label: str) -> bool:
    backend = "stats" if label.startswith("s-") else "logs"
    return backend in answer.text.lower()


async def test_no_tenant_value_ends_a_daemon_task(
    private_redis: services.RedisService,
    backend_redis: services.RedisService,
    containerd: services.ContainerdService,
    ns: str,
    netns_name: str,
    rootfs: Path,
    corex: Path,
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    root = tmp_path / "contd-root"
    flags = ("-corex", str(corex), "-start-settle", "100ms", "-restart-delay", "300ms", "-timeout", "30")
    daemon = ContdProcess(private_redis, containerd, root, tmp_path / "contd.log", *flags)
    cases = tenant_cases(rootfs, netns_name, source, backend_redis.port, services.free_loopback_port())
    specs = {
        label: dataclasses.replace(container(rootfs, netns_name, label), **fields)
        for label, fields in cases.items()
    }
    listener = StatsListener(backend_redis, f"{ns}-sentinel")
    sentinel = container(
        rootfs, netns_name, "sentinel", stats=[Stats("redis", backend_redis.channel_url(f"{ns}-sentinel"))]
    )
    findings = Findings()
    callers: Callers | None = None
    daemon.start()
    try:
        async with open_client(private_redis.url) as bus:
            await bus.status(MODULE, timeout=30)
            callers = Callers(bus)
            async with trio.open_nursery() as nursery:
                for label, spec in specs.items():
                    callers.start(nursery, label, "Run", ns, spec, timeout=CALL_TIMEOUT)
                await within(lambda: not callers.unanswered() or not daemon.alive(), CALL_TIMEOUT + 5)
                nursery.cancel_scope.cancel()  # nobody answers for a dead daemon
            callers.mark_cancelled()
            if not daemon.alive():
                findings.check("the Runs", False, f"the daemon died: {leaf_errors(daemon.log())}")
                findings.assert_none("answers before it died:\n" + callers.report())
            findings.add("Run answers", answer_problems(callers))
            for label, answer in callers.answers.items():
                if label[:2] in ("s-", "l-") and answer.kind == "error":
                    findings.check(
                        "Run answers",
                        names_a_backend(answer, label),
                        f"{label}: the refusal does not name the backend: {answer}",
                    )
            accepted = {specs[label].name for label in callers.named("ok")}
            refused = {specs[label].name for label in callers.named("error")}
            held = set(services.ctr(containerd.address, "containers", "list", "-q", namespace=ns).split())
            processes = cgroup_processes(ns)
            for name in sorted(refused):
                findings.check("refused", name not in held, f"{name!r}: refused, yet containerd has it")
                findings.check("refused", name not in processes, f"{name!r}: refused, yet processes run")
            for name in sorted(accepted):
                findings.check(
                    "accepted", name in held, f"{name!r}: accepted, yet containerd has no such container"
                )
            # An accepted log backend works: the output reaches the log (through the log shim).
            silent: list[str] = []

            async def reaches_its_log(label: str) -> None:
                async def ticked() -> bool:
                    return "tick" in ((await ask(bus, "Logs", ns, specs[label].name, timeout=10)).value or "")

                if not await within(ticked, 10):
                    silent.append(label)

            async with trio.open_nursery() as nursery:
                for label in sorted(callers.named("ok")):
                    if label.startswith("l-"):
                        nursery.start_soon(reaches_its_log, label)
            for label in sorted(silent):
                findings.check(
                    "accepted log backends",
                    False,
                    f"{label}: accepted, yet its output does not reach its log in 10 s",
                )

            run = await ask(bus, "Run", ns, sentinel, timeout=CALL_TIMEOUT)
            assert run.kind == "ok", run
            findings.add(
                "after the Runs", await still_serving(bus, daemon, listener, ns, netns_name, rootfs, "a")
            )
            if daemon.alive():
                # Supervision is alive: a killed container is restarted.
                info = (await ask(bus, "Inspect", ns, "sentinel", timeout=CALL_TIMEOUT)).value or {}
                os.kill(info["Pid"], signal.SIGKILL)

                async def restarted() -> bool:
                    info = (await ask(bus, "Inspect", ns, "sentinel", timeout=CALL_TIMEOUT)).value or {}
                    return info.get("Status") == "running" and info.get("Restarts", 0) >= 1

                findings.check(
                    "supervision", await within(restarted, 20), "a killed container was not restarted in 20 s"
                )

            # Start-up reconciliation resumes every accepted container's monitor.
            daemon.kill()
            daemon.start()
            await within(functools.partial(status_answers, bus), 30)
            findings.add(
                "after a SIGKILL and a new start",
                await still_serving(bus, daemon, listener, ns, netns_name, rootfs, "b"),
            )
            deletes = Callers(bus)
            async with trio.open_nursery() as nursery:
                for name in sorted(accepted | {"sentinel"}):
                    deletes.start(nursery, name, "Delete", ns, name, timeout=CALL_TIMEOUT)
            findings.add("deleting every accepted container", answer_problems(deletes, allowed=("ok",)))
            findings.check("at the end", daemon.alive(), f"the daemon is gone: {leaf_errors(daemon.log())}")
    finally:
        daemon.stop()
        listener.close()
    whole_log = daemon.log(whole=True)
    findings.check(
        "the daemon's log",
        "Traceback" not in whole_log,
        f"it logged tracebacks (bugs): {leaf_errors(whole_log)}",
    )
    findings.assert_none(callers.report() if callers else "")
