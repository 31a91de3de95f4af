"""contd-logshim: writes one container's output to its log file, rotating it,
and forwards each line to Redis channels. Standard library only.

containerd's runc shim starts one of these per container task through a
``binary://`` stdio URI, with the container's stdout on fd 3, its stderr on
fd 4 and a pipe on fd 5 that it waits on before starting the container. It
is a child of the runc shim, so it outlives containerd and the daemon: a
container never blocks on its output because the daemon is down (0-OS issue
718), and no line is lost when the daemon restarts. Being the only writer of
the file, it rotates it between lines (0-OS issue 1608) without losing any.

The daemon installs this file as a module run by ``<python> -S`` (no
site-packages) from a shell script that first closes fd 5 and sets
``CONTD_LOGSHIM_READY_SENT=1`` (see ``install_logshim``), and it imports
only C modules and ``os``: each one costs about 3.5 MB of unique memory
when 20 run (``signal``, ``socket``, ``selectors`` and ``urllib`` would add
2 MB more through ``enum`` and ``re``). Arguments come from the URI's query, in any order: ``--log PATH
--max-bytes N`` and, per log backend i, ``--stdout.<i>
redis://host:port/channel --stderr.<i> redis://host:port/channel``, with
``--netns PATH``, the container's network namespace.

A log backend is the tenant's: the shim joins the container's network
namespace (setns) before it opens any connection, so it reaches only what
the container itself could, never the host's loopback or networks. A shim
that cannot join it forwards nothing (the lines stay in the log file). A
backend costs the shim a bounded wait per round (connect, send, answer:
``BACKEND_SECONDS``) and bounded memory (lines kept while it is away, in
count and bytes); one that misbehaves is dropped and tried again later.

A full disk neither ends the shim nor blocks the container: lines that
cannot be written are dropped and counted, the shim keeps reading, and once
a write succeeds again a line in the log says how many were lost.

Each line is written as the CRI log format has it (what containerd's CRI
plugin writes for Kubernetes): ``<time> <stream> <F|P> <text>``, the time
(RFC 3339, UTC, nanoseconds) when the shim read it, the stream ``stdout``
or ``stderr``, and ``P`` for a piece of a line longer than 64 KiB (``F``
ends a line). The files stay readable with ``cat`` and ``tail``.

The output of a container is one stream of bytes across its files and its
restarts: the index beside the log (``<id>.log.idx``) gives the offset in
that stream where each file starts, by inode, with a random id of the
stream. The daemon maps a reader's cursor (stream id and offset) to a file
with it, whatever was rotated or restarted meanwhile. The shim rewrites the
index atomically (write, fsync, rename) before each rotation: the new
file's inode and start are recorded before its name appears, and a file's
start never changes, so a reader that opens the files first and reads the
index afterwards always finds the files it holds. A shim that finds no
usable index starts a new stream (a new id), which readers see as a reset.

The daemon also runs it for an exec process, whose output must stay
bounded however much it writes: then ``--stderr-log PATH`` keeps stderr
apart and ``--raw 1`` writes the bytes as they come (no line ending added,
no time, no index).
"""

from __future__ import annotations

import _signal
import _socket
import errno
import os
import select
import sys
import time

STDOUT_FD, STDERR_FD, READY_FD = 3, 4, 5
#: Set by the installed executable once it has closed fd 5 itself (which
#: then no longer is the ready pipe: the first file opened may take it).
READY_SENT_ENV = "CONTD_LOGSHIM_READY_SENT"
READ_SIZE = 64 * 1024
#: A line longer than this is written (and forwarded) in pieces.
MAX_LINE = 64 * 1024
#: Lines, and bytes of them, kept for Redis while it is unreachable; the
#: oldest go first past either. This memory is the node's, not the tenant's.
MAX_PENDING_LINES = 10_000
MAX_PENDING_BYTES = 2 * 1024 * 1024
#: A Redis gets this long to connect, take a batch and answer it; a batch
#: is at most this much (more waits for the next round).
BACKEND_SECONDS = 2.0
MAX_BATCH_BYTES = 1024 * 1024
#: The most an answer to a PUBLISH may take (":<count>\r\n").
MAX_REPLY_BYTES = 32
RETRY_FIRST, RETRY_MAX = 0.5, 5.0
#: setns(2)'s flag for a network namespace.
CLONE_NEWNET = 0x40000000


def log(message: str) -> None:
    # Goes to the runc shim's stderr, which ends up in containerd's log.
    os.write(
        2,
        f"contd-logshim {os.environ.get('CONTAINER_NAMESPACE', '?')}/"
        f"{os.environ.get('CONTAINER_ID', '?')}: {message}\n".encode(),
    )


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")


def parse_redis_url(url: str) -> tuple[str, int, bytes]:
    """``redis://host[:port]/channel`` -> host, port, channel.

    The daemon's only parser of backend URLs: validation, the stats
    monitors and this shim all read them here, so whatever Run accepts the
    shim can use. Plain string work (no ``urllib``, no ``re``): this process
    must stay small. The host is a name, an IPv4 address or a bracketed IPv6
    address; the port, when given, 1 to 65535 (6379 otherwise); the channel
    is the rest, not empty. No user, query or fragment, no control characters.

    Raises:
        ValueError: the reason, in words.
    """
    if not url.startswith("redis://"):
        raise ValueError("the scheme must be redis://")
    if any(c in url for c in "?#@") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ValueError("no user, query, fragment or control characters are allowed")
    netloc, slash, channel = url[len("redis://") :].partition("/")
    if not slash or not channel:
        raise ValueError("the channel (the path after the host) is missing")
    if netloc.startswith("["):
        host, bracket, rest = netloc[1:].partition("]")
        if not bracket or not host or not set(host) <= _IPV6_CHARS or host.count(":") < 2:
            raise ValueError("a bracketed host must be an IPv6 address")
    else:
        host = netloc.partition(":")[0]
        rest = netloc[len(host) :]
        if not host or not set(host) <= _HOST_CHARS:
            raise ValueError("the host must be a name or an address")
    port = 6379
    if rest:
        port_text = rest[1:]
        if rest[:1] != ":" or not port_text.isdigit() or not port_text.isascii():
            raise ValueError("the port must be a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError("the port must be from 1 to 65535")
    return host, port, channel.encode("utf-8", "surrogateescape")


def parse_args(argv: list[str]) -> dict[str, str]:
    """``--key value`` pairs, in any order (Go map order builds the list)."""
    options: dict[str, str] = {}
    it = iter(argv)
    for key in it:
        if not key.startswith("--"):
            raise SystemExit(f"contd-logshim: unexpected argument {key!r}")
        options[key[2:]] = next(it, "")
    if not options.get("log"):
        raise SystemExit("contd-logshim: --log PATH is required")
    return options


INDEX_SUFFIX = ".idx"
INDEX_VERSION = b"v1"


def stamp(now_ns: int) -> bytes:
    """A time as CRI log lines start: RFC 3339, UTC, nanoseconds."""
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    # Not strftime: it loads the C library's locale data, memory this process need not have.
    return b"%04d-%02d-%02dT%02d:%02d:%02d.%09dZ" % (*time.gmtime(seconds)[:6], nanos)


def read_index(path: str) -> tuple[str, dict[int, int]] | None:
    """The stream id and the start of each file (by inode) an index
    records; None when there is no index or it cannot be read."""
    try:
        with open(path, "rb") as f:
            words = f.read(4096).split()
    except OSError:
        return None
    if len(words) < 3 or words[0] != INDEX_VERSION or not words[1].isalnum():
        return None
    starts = {}
    for word in words[2:]:
        inode, colon, start = word.partition(b":")
        if not colon or not inode.isdigit() or not start.isdigit():
            return None
        starts[int(inode)] = int(start)
    return words[1].decode(), starts


def write_index(path: str, stream_id: str, starts: list[tuple[int, int]]) -> None:
    """Replace the index atomically (and durably: the data is synced
    before the rename)."""
    text = b" ".join([INDEX_VERSION, stream_id.encode(), *(b"%d:%d" % pair for pair in starts)])
    staging = path + ".tmp"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, text + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(staging, path)


def _identity(path: str) -> tuple[int, int] | None:
    """A file's inode and size; None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size


class LogFile:
    """An append-only log, rotated at ``max_bytes`` (one old file kept);
    ``indexed``: with the index of where each file starts in the stream.

    A write that fails (the disk is full) drops its lines and counts them;
    the next write that succeeds first ends a line cut short and, in an
    indexed log, says how many lines were lost. The shim goes on reading
    meanwhile, so the container never blocks on, or dies of, a full disk."""

    def __init__(self, path: str, max_bytes: int, indexed: bool = False) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.index = path + INDEX_SUFFIX if indexed else ""
        self.fd = -1
        self.size = 0
        self.inode = 0
        #: Where this file starts in the container's output stream, and that stream's id.
        self.start = 0
        self.stream_id = ""
        #: Lines dropped since the last write that succeeded, and why.
        self.lost = 0
        self.lost_reason = ""
        #: Whether the file ends with a whole line (a failed write may cut one).
        self.at_line_start = True
        if self.index:
            self._resume()
        self._open()
        if self.index:
            try:
                self._index_current()
            except OSError as exc:  # no room for the index: readers see a log without one
                log(f"cannot write the index of {path}: {exc}")

    def _open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        st = os.fstat(self.fd)
        self.size, self.inode = st.st_size, st.st_ino

    def _resume(self) -> None:
        # A rotation cut short (the shim was killed between its renames):
        # the new file is indexed already, finish giving it its name.
        pending = self.path + ".new"
        if not os.path.exists(self.path) and os.path.exists(pending):
            os.replace(pending, self.path)

    def _index_current(self) -> None:
        """Continue the stream the index describes, or start a new one when
        the current file is not in it (no index, or a file made since)."""
        found = read_index(self.index)
        old = _identity(self.path + ".1")
        if found is not None and self.inode in found[1]:
            self.stream_id, starts = found
            self.start = starts[self.inode]
            return
        self.stream_id = os.urandom(8).hex()
        files = [(self.inode, 0)]
        if old is not None:
            self.start = old[1]
            files = [(self.inode, self.start), (old[0], 0)]
        write_index(self.index, self.stream_id, files)

    def write(self, data: bytes) -> None:
        """Append whole lines, rotating between two lines whenever the next
        ones would not fit (a single line longer than the cap goes alone)."""
        if (self.lost or (self.index and not self.at_line_start)) and not self._recover():
            self._drop(data, "")
            return
        while data:
            room = self.max_bytes - self.size
            if len(data) <= room:
                self._append(data)
                return
            cut = data.rfind(b"\n", 0, room) + 1
            if cut == 0 and self.size == 0:
                cut = data.find(b"\n") + 1 or len(data)  # one over-long line: alone
            if cut and not self._append(data[:cut]):
                self._drop(data[cut:], "")
                return
            data = data[cut:]
            if not self.rotate():
                self._drop(data, "")
                return

    def _append(self, data: bytes) -> bool:
        """Write all of ``data``; False when the file refused some (dropped, counted)."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except OSError as exc:
                self._drop(view, exc.strerror or str(exc))
                return False
            if written:
                self.at_line_start = view[written - 1] == 10
            self.size += written
            view = view[written:]
        return True

    def _drop(self, data: bytes | memoryview, reason: str) -> None:
        if not self.lost and reason:
            log(f"cannot write {self.path}: {reason}; dropping lines until it can")
        self.lost += bytes(data).count(b"\n")
        self.lost_reason = reason or self.lost_reason

    def _recover(self) -> bool:
        """Before the next lines: end a line cut short and, in an indexed
        log, note how many were lost. False while the file still refuses."""
        lost, reason = self.lost, self.lost_reason
        note = b"" if self.at_line_start or not self.index else b"\n"
        if lost and self.index:
            note += b"%s stderr F contd-logshim: %d lines of output were lost: %s\n" % (
                stamp(time.time_ns()),
                lost,
                reason.encode(),
            )
        self.lost = 0
        if not self._append(note):
            self.lost = lost  # the note is not a line of the container's
            return False
        if lost:
            log(f"writing {self.path} again; {lost} lines were lost")
        return True

    def rotate(self) -> bool:
        """Start a new file, the current one kept as ``.1``; False when
        there is no room for the new file or the index (the current goes on)."""
        if not self.index:
            os.close(self.fd)
            self._rename(self.path, self.path + ".1")
            self._open()
            return True
        # The new file is made and indexed before it takes the log's name.
        pending = self.path + ".new"
        try:
            fd = os.open(pending, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            self._drop(b"", exc.strerror or str(exc))
            return False
        inode = os.fstat(fd).st_ino
        start = self.start + self.size
        try:
            write_index(self.index, self.stream_id, [(inode, start), (self.inode, self.start)])
        except OSError as exc:
            os.close(fd)
            os.unlink(pending)
            self._drop(b"", exc.strerror or str(exc))
            return False
        os.close(self.fd)
        self._rename(self.path, self.path + ".1")
        os.replace(pending, self.path)
        self.fd, self.inode, self.start, self.size = fd, inode, start, 0
        return True

    @staticmethod
    def _rename(source: str, target: str) -> None:
        # Not contextlib.suppress: importing contextlib would cost this process memory.
        try:  # noqa: SIM105
            os.replace(source, target)
        except FileNotFoundError:
            pass  # removed by hand: its lines are gone

    def close(self) -> None:
        os.close(self.fd)


class RedisChannel:
    """PUBLISHes lines on one channel of one Redis, keeping them while it is
    away (bounded in lines and bytes; the oldest go first). A Redis that is
    slow, silent or answers nonsense costs the log at most
    ``BACKEND_SECONDS`` per round: the connection is dropped and tried again
    later, longer and longer apart."""

    def __init__(self, url: str) -> None:
        try:
            host, port, self.channel = parse_redis_url(url)
        except ValueError:
            raise SystemExit(f"contd-logshim: {url!r} is not redis://host:port/channel") from None
        self.address = (host, port)
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.dropped = 0
        self.sock: _socket.socket | None = None
        self.retry_at = 0.0
        self.delay = RETRY_FIRST
        #: Not to be reached at all (the container's network could not be joined).
        self.disabled = False

    def add(self, line: bytes) -> None:
        if self.disabled:
            self.dropped += 1
            return
        self.pending.append(line)
        self.pending_bytes += len(line)
        excess = 0
        while len(self.pending) - excess > MAX_PENDING_LINES or (
            self.pending_bytes > MAX_PENDING_BYTES and len(self.pending) - excess > 1
        ):
            self.pending_bytes -= len(self.pending[excess])
            excess += 1
        if excess:
            del self.pending[:excess]
            self.dropped += excess

    def flush(self, now: float) -> None:
        if not self.pending or now < self.retry_at:
            return
        deadline = time.monotonic() + BACKEND_SECONDS
        try:
            if self.sock is None:
                self.sock = connect(self.address, BACKEND_SECONDS)
            lines = self._batch()
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            self.sock.sendall(b"".join(self._publish(line) for line in lines))
            self._read_replies(len(lines), deadline)
        except OSError as exc:
            if self.sock is not None:
                self.sock.close()
                self.sock = None
            self.retry_at = now + self.delay
            log(
                f"redis {self.address[0]}:{self.address[1]} unreachable ({exc}); "
                f"{len(self.pending)} lines kept, retrying in {self.delay:g}s"
            )
            self.delay = min(self.delay * 2, RETRY_MAX)
            return
        del self.pending[: len(lines)]
        self.pending_bytes -= sum(len(line) for line in lines)
        self.delay = RETRY_FIRST
        if self.dropped:
            log(f"dropped {self.dropped} lines while redis was unreachable")
            self.dropped = 0

    def _batch(self) -> list[bytes]:
        size = 0
        for count, line in enumerate(self.pending):
            size += len(line)
            if count and size > MAX_BATCH_BYTES:
                return self.pending[:count]
        return list(self.pending)

    def _publish(self, line: bytes) -> bytes:
        return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
            len(self.channel),
            self.channel,
            len(line),
            line,
        )

    def _read_replies(self, count: int, deadline: float) -> None:
        """Read ``count`` answers, by ``deadline``, of a bounded size."""
        assert self.sock is not None
        data = bytearray()
        limit = count * MAX_REPLY_BYTES
        while data.count(b"\r\n") < count:
            if len(data) > limit:
                raise OSError(errno.EPROTO, f"redis answered {count} PUBLISH with more than {limit} bytes")
            left = deadline - time.monotonic()
            if left <= 0:
                raise OSError(errno.ETIMEDOUT, "redis did not answer in time")
            self.sock.settimeout(left)
            chunk = self.sock.recv(limit + 1 - len(data) + 2)
            if not chunk:
                raise OSError(errno.ECONNRESET, "redis closed the connection")
            data += chunk
        if data[:1] == b"-" or b"\r\n-" in data:
            reply = bytes(data[:200]).decode(errors="replace").strip()
            raise OSError(errno.EPROTO, "redis refused PUBLISH: " + reply)


def connect(address: tuple[str, int], timeout: float) -> _socket.socket:
    error: OSError = OSError(errno.EHOSTUNREACH, f"no address for {address[0]}")
    for family, kind, proto, _, sockaddr in _socket.getaddrinfo(*address, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


def join_network(path: str) -> None:
    """Enter the network namespace at ``path`` (the container's): a tenant's
    log backend is reached from the tenant's network, never the host's.

    Raises:
        OSError: it could not be opened or joined.
    """
    # Imported only here (a shim with backends): ctypes costs this process memory.
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns {path}: {os.strerror(code)}")
    finally:
        os.close(fd)


class Stream:
    """One of the container's two outputs: splits it into lines, each
    written with the time it was read, its stream and whether it is whole
    (``raw``: writes what comes as it comes, adding nothing; no backends then)."""

    def __init__(
        self, fd: int, channels: list[RedisChannel], raw: bool = False, name: bytes = b"stdout"
    ) -> None:
        self.fd = fd
        self.channels = channels
        self.raw = raw
        self.name = name
        self.carry = b""

    def feed(self, data: bytes, logfile: LogFile, now: bytes = b"") -> None:
        if self.raw:
            logfile.write(data)
            return
        data = self.carry + data
        end = data.rfind(b"\n") + 1
        if end == 0 and len(data) < MAX_LINE:
            self.carry = data
            return
        now = now or stamp(time.time_ns())
        if end == 0:
            # A very long line: let it out in pieces.
            self.carry = b""
            logfile.write(b"%s %s P %s\n" % (now, self.name, data))
            for channel in self.channels:
                channel.add(data)
            return
        whole, self.carry = data[:end], data[end:]
        head = b"%s %s F " % (now, self.name)
        logfile.write(head + whole[:-1].replace(b"\n", b"\n" + head) + b"\n")
        for channel in self.channels:
            for line in whole.splitlines():
                channel.add(line)

    def finish(self, logfile: LogFile) -> None:
        if self.carry:
            self.feed(b"\n", logfile)


def serve(options: dict[str, str]) -> int:
    max_bytes = int(options.get("max-bytes") or 10 * 1024 * 1024)
    # An exec's output: stderr kept apart, bytes as they came (no line ending added).
    raw = options.get("raw") == "1"
    logfile = LogFile(options["log"], max_bytes, indexed=not raw)
    logfiles = {STDOUT_FD: logfile, STDERR_FD: logfile}
    if options.get("stderr-log"):
        logfiles[STDERR_FD] = LogFile(options["stderr-log"], max_bytes)
    channels: dict[str, RedisChannel] = {}
    streams = []
    for fd, name in ((STDOUT_FD, "stdout"), (STDERR_FD, "stderr")):
        urls = [url for key, url in sorted(options.items()) if key.split(".")[0] == name and url]
        backends = [channels.setdefault(url, RedisChannel(url)) for url in urls]
        streams.append(Stream(fd, backends, raw, name.encode()))
    if channels and options.get("netns"):
        try:
            join_network(options["netns"])
        except OSError as exc:
            # Never from the host's network instead: the lines stay in the log file only.
            log(f"not forwarding to any log backend: cannot join the container's network: {exc}")
            for channel in channels.values():
                channel.disabled = True

    stopping = []
    _signal.signal(_signal.SIGTERM, lambda *_: stopping.append(True))
    _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)

    poller = select.poll()
    by_fd = {}
    for stream in streams:
        os.set_blocking(stream.fd, False)
        poller.register(stream.fd, select.POLLIN)
        by_fd[stream.fd] = stream
    if os.environ.get(READY_SENT_ENV) != "1":
        # Ready: containerd may start the container now.
        try:
            os.write(READY_FD, b"1")
            os.close(READY_FD)
        except OSError:
            pass

    while by_fd:
        waiting = any(c.pending for c in channels.values())
        timeout = 0 if stopping else (500 if waiting else None)
        try:
            events = poller.poll(timeout)
        except InterruptedError:
            continue
        if stopping and not events:
            break  # the shim asked us to go, and nothing more is readable
        read_at = stamp(time.time_ns())
        for fd, _ in events:
            stream = by_fd[fd]
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                stream.feed(data, logfiles[fd], read_at)
            else:
                stream.finish(logfiles[fd])
                poller.unregister(fd)
                os.close(fd)
                del by_fd[fd]
        now = time.monotonic()
        for channel in channels.values():
            channel.flush(now)

    for stream in streams:
        stream.finish(logfiles[stream.fd])
    # Last chance for the lines still held for Redis (bounded: the runc shim
    # waits 12 s for us, and a round with one backend may take BACKEND_SECONDS).
    deadline = time.monotonic() + 5
    while any(c.pending for c in channels.values()) and time.monotonic() < deadline:
        for channel in channels.values():
            if time.monotonic() >= deadline:
                break
            channel.retry_at = 0.0
            channel.flush(time.monotonic())
        time.sleep(0.2)
    for each in {id(f): f for f in logfiles.values()}.values():
        each.close()
    return 0


def main() -> int:
    return serve(parse_args(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
