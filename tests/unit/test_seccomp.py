"""The seccomp profile: what every container may call, and what capabilities add.

Expected names are written out here, not read from the module's tables, so
a slip in a table fails a test.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from contd_trio.containerd.seccomp import ALLOWED_SYSCALLS, seccomp_profile
from contd_trio.containerd.spec import DEFAULT_CAPABILITIES, HostFacts, SpecRequest, build_spec

PLAIN = list(DEFAULT_CAPABILITIES)
ELEVATED = [*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"]
CLONE_NEW_FLAGS = 0x7E020000
#: What CAP_SYS_ADMIN adds in the reference profiles, and nothing else does.
ADMIN_CALLS = {
    "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
    "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
    "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
    "umount2", "unshare",
}  # fmt: skip
#: Never allowed to a container of this daemon, elevated or not.
NEVER = {
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "pivot_root", "acct", "iopl", "ioperm", "settimeofday", "clock_settime",
    "add_key", "keyctl", "request_key", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "open_by_handle_at", "vhangup", "nfsservctl", "kcmp", "pidfd_getfd",
    "process_madvise", "mbind", "set_mempolicy", "get_mempolicy", "uselib", "ustat", "sysfs",
    "_sysctl", "create_module", "get_kernel_syms", "query_module",
}  # fmt: skip


def unconditional(profile: dict[str, Any]) -> set[str]:
    """Names some rule allows whatever the arguments."""
    return {
        name
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
        for name in rule["names"]
    }


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [rule for rule in profile["syscalls"] if name in rule["names"]]


def test_default_action_is_eperm() -> None:
    profile = seccomp_profile(PLAIN, "x86_64")
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == 1


X86_CALLS = {"arch_prctl", "modify_ldt"}
ARM_CALLS = {
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
}


@pytest.mark.parametrize(
    ("machine", "architectures", "own_calls", "foreign_calls"),
    [
        ("x86_64", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], X86_CALLS, ARM_CALLS),
        ("aarch64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"], ARM_CALLS, X86_CALLS),
    ],
)
def test_architectures_follow_the_machine(
    machine: str, architectures: list[str], own_calls: set[str], foreign_calls: set[str]
) -> None:
    profile = seccomp_profile(PLAIN, machine)
    assert profile["architectures"] == architectures
    assert own_calls <= unconditional(profile)
    assert not foreign_calls & unconditional(profile)


def test_an_unknown_machine_filters_its_native_architecture_only() -> None:
    profile = seccomp_profile(PLAIN, "riscv64")
    assert "architectures" not in profile
    assert not {"arch_prctl", "set_tls"} & unconditional(profile)


def test_ordinary_work_is_allowed() -> None:
    allowed = unconditional(seccomp_profile(PLAIN, "x86_64"))
    for name in ("read", "write", "openat", "execve", "mmap", "futex", "epoll_wait", "accept4",
                 "bind", "listen", "connect", "sendto", "recvfrom", "wait4", "fork", "vfork",
                 "getdents64", "statx", "rt_sigaction", "exit_group", "pipe2", "dup3", "ptrace",
                 "chroot", "mknod", "setuid", "capset"):  # fmt: skip
        assert name in allowed, name


def test_a_plain_container_gets_no_admin_calls() -> None:
    profile = seccomp_profile(PLAIN, "x86_64")
    assert not (ADMIN_CALLS - {"clone", "clone3"}) & unconditional(profile)
    assert not NEVER & unconditional(profile)


def test_clone_of_a_plain_container_may_not_make_namespaces() -> None:
    profile = seccomp_profile(PLAIN, "x86_64")
    assert rules_for(profile, "clone") == [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NEW_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}],
        }
    ]
    # clone3 passes its flags in memory a filter cannot read: ENOSYS sends libc back to clone.
    assert rules_for(profile, "clone3") == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]


def test_elevated_adds_the_admin_group_and_nothing_more() -> None:
    plain = seccomp_profile(PLAIN, "x86_64")
    elevated = seccomp_profile(ELEVATED, "x86_64")
    assert unconditional(elevated) - unconditional(plain) == ADMIN_CALLS
    assert unconditional(plain) <= unconditional(elevated)
    assert not NEVER & unconditional(elevated)
    # clone and clone3 unrestricted: the masked rule and the ENOSYS are gone.
    assert all(not rule.get("args") for rule in rules_for(elevated, "clone"))
    assert all(rule["action"] == "SCMP_ACT_ALLOW" for rule in rules_for(elevated, "clone3"))


@pytest.mark.parametrize(
    ("capability", "calls"),
    [
        ("CAP_SYS_PTRACE", {"kcmp", "pidfd_getfd", "process_madvise"}),
        ("CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}),
        ("CAP_SYS_TIME", {"settimeofday", "stime", "clock_settime", "clock_settime64"}),
        ("CAP_SYS_BOOT", {"reboot"}),
        ("CAP_DAC_READ_SEARCH", {"open_by_handle_at"}),
    ],
)
def test_other_capabilities_add_their_calls_only_when_granted(capability: str, calls: set[str]) -> None:
    assert not calls & unconditional(seccomp_profile(PLAIN, "x86_64"))
    assert calls <= unconditional(seccomp_profile([*PLAIN, capability], "x86_64"))


def test_chroot_comes_with_cap_sys_chroot() -> None:
    assert "chroot" in unconditional(seccomp_profile(["CAP_SYS_CHROOT"], "x86_64"))
    assert "chroot" not in unconditional(seccomp_profile(["CAP_CHOWN"], "x86_64"))


def test_personality_only_for_the_usual_personas() -> None:
    rules = rules_for(seccomp_profile(PLAIN, "x86_64"), "personality")
    assert [rule["args"] for rule in rules] == [
        [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}] for value in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF)
    ]


def test_socket_for_every_family_but_alg_and_vsock() -> None:
    rules = rules_for(seccomp_profile(PLAIN, "x86_64"), "socket")
    assert [rule["args"] for rule in rules] == [
        [{"index": 0, "value": 38, "op": "SCMP_CMP_LT"}],
        [{"index": 0, "value": 39, "op": "SCMP_CMP_EQ"}],
        [{"index": 0, "value": 40, "op": "SCMP_CMP_GT"}],
    ]

    def allowed(family: int) -> bool:
        ops = {"SCMP_CMP_LT": int.__lt__, "SCMP_CMP_EQ": int.__eq__, "SCMP_CMP_GT": int.__gt__}
        return any(ops[arg["op"]](family, arg["value"]) for rule in rules for arg in rule["args"])

    assert [family for family in range(64) if not allowed(family)] == [38, 40]


@pytest.mark.parametrize("capabilities", [PLAIN, ELEVATED])
def test_a_name_is_never_both_unconditional_and_conditional(capabilities: list[str]) -> None:
    """libseccomp refuses a second rule of another kind for a call that
    already has one: such a profile would fail in runc."""
    profile = seccomp_profile(capabilities, "x86_64")
    conditional = {
        name
        for rule in profile["syscalls"]
        if rule.get("args") or rule["action"] != "SCMP_ACT_ALLOW"
        for name in rule["names"]
    }
    assert not conditional & unconditional(profile)


def test_runc_vocabulary_only() -> None:
    for capabilities in (PLAIN, ELEVATED):
        profile = seccomp_profile(capabilities, "x86_64")
        assert set(profile) <= {"defaultAction", "defaultErrnoRet", "architectures", "syscalls"}
        for rule in profile["syscalls"]:
            assert set(rule) <= {"names", "action", "errnoRet", "args"}
            assert rule["action"] in {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"}
            assert rule["names"] and all(isinstance(n, str) and n for n in rule["names"])
            for arg in rule.get("args", ()):
                assert arg["op"] in {"SCMP_CMP_EQ", "SCMP_CMP_LT", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"}
                assert 0 <= arg["value"] < 2**64
        assert json.loads(json.dumps(profile)) == profile


def test_allowed_names_are_unique() -> None:
    assert len(ALLOWED_SYSCALLS) == len(set(ALLOWED_SYSCALLS))


def test_same_input_same_profile() -> None:
    assert seccomp_profile(ELEVATED, "x86_64") == seccomp_profile(list(reversed(ELEVATED)), "x86_64")


# ------------------------------------------------------------ in the spec


def spec_of(elevated: bool, machine: str = "x86_64") -> dict[str, Any]:
    request = SpecRequest(
        namespace="ns",
        container_id="c",
        rootfs="/r",
        args=("/x",),
        env=(),
        cwd="/",
        netns="n",
        cpu=1,
        memory=1 << 28,
        elevated=elevated,
    )
    return build_spec(request, HostFacts(cpu_count=1, machine=machine))


def test_every_spec_has_the_profile_of_its_capabilities() -> None:
    assert spec_of(elevated=False)["linux"]["seccomp"] == seccomp_profile(PLAIN, "x86_64")
    assert spec_of(elevated=True)["linux"]["seccomp"] == seccomp_profile(ELEVATED, "x86_64")
    assert spec_of(elevated=False, machine="aarch64")["linux"]["seccomp"]["architectures"] == [
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM",
    ]
