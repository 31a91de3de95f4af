"""The seccomp profile every container runs under, as OCI ``linux.seccomp``.

Pure: the same capabilities and machine always give the same profile.

The profile is equivalent in effect to the default profile of containerd
(``contrib/seccomp``), which Docker's and nerdctl's defaults match: an
allow-list of system calls, everything else failing with EPERM. The names
below are the facts of that profile, kept as our own data. Where the
reference profiles differ, we take the stricter side:

* ``io_uring_setup``/``_enter``/``_register`` are not allowed (containerd
  dropped them after a run of io_uring kernel CVEs; Docker still allows them);
* ``socket`` is allowed for every address family except ``AF_ALG`` (kernel
  crypto sockets) and ``AF_VSOCK`` (host/guest sockets), as containerd's
  current profile does;
* ``ptrace``, ``process_vm_readv`` and ``process_vm_writev`` are allowed
  without CAP_SYS_PTRACE, as both references do on kernels from 4.8 on (older
  kernels let ptrace bypass seccomp; 0-OS nodes run far newer ones). Without
  the capability they reach only the container's own processes.

Capabilities widen the profile exactly as the references do: a group of
calls per capability in the bounding set (:data:`CAPABILITY_SYSCALLS`).
Containers of this daemon hold containerd's default capabilities, of which
only CAP_SYS_CHROOT has a group (``chroot``); an Elevated container adds
CAP_SYS_ADMIN, which brings ``mount``, ``umount2``, ``unshare``, ``setns``,
an unrestricted ``clone`` and ``clone3`` and the rest of its group, nothing
more. Without CAP_SYS_ADMIN, ``clone`` is allowed only when it asks for no
new namespace (a masked-equal rule on its flags) and ``clone3``, whose flags
a filter cannot read, fails with ENOSYS so that libcs fall back to ``clone``.

runc (1.1.5 on Debian 12, with libseccomp 2.5.4) skips names its libseccomp
does not know, and answers ENOSYS for system calls newer than any it knows,
so the newest names below are inert on older nodes rather than errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: What a call outside the profile gets: SCMP_ACT_ERRNO with EPERM.
DEFAULT_ACTION = "SCMP_ACT_ERRNO"
EPERM = 1
ENOSYS = 38

#: ``platform.machine()`` -> the seccomp architectures the filter covers: the
#: native one and the compatibility ABIs a process could switch to.
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "amd64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "arm64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
}

#: Allowed for every container, whatever its capabilities.
ALLOWED_SYSCALLS: tuple[str, ...] = (
    "accept", "accept4", "access", "adjtimex", "alarm",
    "bind", "brk",
    "cachestat", "capget", "capset", "chdir", "chmod", "chown", "chown32",
    "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
    "close", "close_range", "connect", "copy_file_range", "creat",
    "dup", "dup2", "dup3",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
    "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group",
    "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark",
    "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat",
    "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork",
    "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64",
    "fsync", "ftruncate", "ftruncate64",
    "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat",
    "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32",
    "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid",
    "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresgid32",
    "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid",
    "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid",
    "getuid32", "getxattr", "getxattrat",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
    "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "ioprio_get", "ioprio_set", "io_setup", "io_submit", "ipc",
    "kill",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
    "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listmount", "listxattr",
    "listxattrat", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr",
    "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr", "lstat", "lstat64",
    "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore",
    "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2",
    "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap",
    "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "name_to_handle_at", "nanosleep", "newfstatat", "_newselect",
    "open", "openat", "openat2",
    "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev",
    "pwritev2",
    "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg",
    "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "removexattrat", "rename",
    "renameat", "renameat2", "restart_syscall", "rmdir", "rseq",
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
    "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg",
    "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
    "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
    "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
    "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area",
    "set_tid_address", "setuid", "setuid32", "setxattr", "setxattrat", "shmat", "shmctl",
    "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask",
    "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs", "statfs64",
    "statmount", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo",
    "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
    "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate",
    "truncate64",
    "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat",
    "utimensat_time64", "utimes",
    "vfork", "vmsplice",
    "wait4", "waitid", "waitpid", "write", "writev",
    # Kernel 4.8 and later check seccomp again after a ptrace stop.
    "process_vm_readv", "process_vm_writev", "ptrace",
)  # fmt: skip

#: Allowed only on these machines (keys as in :data:`ARCHITECTURES`).
MACHINE_SYSCALLS: dict[str, tuple[str, ...]] = {
    "x86_64": ("arch_prctl", "modify_ldt"),
    "amd64": ("arch_prctl", "modify_ldt"),
    "aarch64": ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
                "cacheflush", "set_tls"),
    "arm64": ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
              "cacheflush", "set_tls"),
}  # fmt: skip

#: Allowed when the capability is in the process's bounding set.
CAPABILITY_SYSCALLS: dict[str, tuple[str, ...]] = {
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_ADMIN": (
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
        "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
        "umount2", "unshare",
    ),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                       "process_vm_writev", "ptrace"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}  # fmt: skip

#: The capability that lifts the namespace rules on clone and clone3.
ADMIN_CAPABILITY = "CAP_SYS_ADMIN"

#: ``personality(2)`` personas allowed: PER_LINUX, PER_LINUX32,
#: UNAME26 | PER_LINUX, UNAME26 | PER_LINUX32, and 0xffffffff (query only).
PERSONALITIES: tuple[int, ...] = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

#: The CLONE_NEW* flags (NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
#: NEWNET): a clone without CAP_SYS_ADMIN must set none of them.
CLONE_NAMESPACE_FLAGS = (
    0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
)

#: socket(2) families refused: AF_ALG is 38, AF_NFC 39 (allowed), AF_VSOCK 40.
AF_ALG = 38
AF_VSOCK = 40


def _allow(names: Iterable[str], *args: dict[str, Any]) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": list(names), "action": "SCMP_ACT_ALLOW"}
    if args:
        rule["args"] = list(args)
    return rule


def _arg(index: int, op: str, value: int, value_two: int = 0) -> dict[str, Any]:
    arg: dict[str, Any] = {"index": index, "value": value, "op": op}
    if value_two:
        arg["valueTwo"] = value_two
    return arg


def seccomp_profile(capabilities: Iterable[str], machine: str) -> dict[str, Any]:
    """The ``linux.seccomp`` of a process with ``capabilities`` in its bounding
    set, on a node whose ``platform.machine()`` is ``machine``.

    An unknown machine gets no ``architectures`` (runc then filters the native
    one only) and none of the machine-specific calls.
    """
    granted = set(capabilities)
    rules = [_allow(ALLOWED_SYSCALLS)]
    # "family != AF_ALG and family != AF_VSOCK" cannot be one rule: runc
    # splits conditions on the same argument into separate rules, which
    # then allow either. So each allowed range of families is its own rule.
    rules.append(_allow(["socket"], _arg(0, "SCMP_CMP_LT", AF_ALG)))
    rules.append(_allow(["socket"], _arg(0, "SCMP_CMP_EQ", AF_ALG + 1)))
    rules.append(_allow(["socket"], _arg(0, "SCMP_CMP_GT", AF_VSOCK)))
    rules.extend(_allow(["personality"], _arg(0, "SCMP_CMP_EQ", value)) for value in PERSONALITIES)
    if machine_calls := MACHINE_SYSCALLS.get(machine):
        rules.append(_allow(machine_calls))
    for capability, names in CAPABILITY_SYSCALLS.items():
        if capability in granted:
            rules.append(_allow(names))
    if ADMIN_CAPABILITY not in granted:
        # clone's flags are its first argument on every machine we know
        # (s390 swaps the first two; we give no s390 architectures).
        rules.append(_allow(["clone"], _arg(0, "SCMP_CMP_MASKED_EQ", CLONE_NAMESPACE_FLAGS, 0)))
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    profile: dict[str, Any] = {"defaultAction": DEFAULT_ACTION, "defaultErrnoRet": EPERM}
    if architectures := ARCHITECTURES.get(machine):
        profile["architectures"] = list(architectures)
    profile["syscalls"] = rules
    return profile
