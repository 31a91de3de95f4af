"""Method tables: from a decoded request to a call, and from its outcome to an Output.

Every served method is declared explicitly: its positional argument types,
an optional variadic type, and its result types. Nothing is guessed by
reflection, so what the server accepts is exactly what a reader sees here.
The protocol error messages are Go zbus v1.0.1's, word for word.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import codec
from .errors import CallError, ProtocolError
from .gotypes import ArgumentTypeError, GoType

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    """One served method.

    Attributes:
        handler: ``async def handler(*args)``; returns nothing, one value, or a
            tuple with one value per declared result. It raises
            :class:`CallError` (or a subclass) for its own failures.
        params: the types of its positional arguments.
        variadic: the type of its trailing ``...T`` arguments, if any.
        results: the types of its non-error return values.
    """

    handler: Handler
    params: Sequence[GoType[Any]] = ()
    variadic: GoType[Any] | None = None
    results: Sequence[GoType[Any]] = ()
    #: What the server's log line about a call says of its arguments
    #: (e.g. ``{"ns": ..., "id": ...}``); nothing when None.
    describe: Callable[..., Mapping[str, Any]] | None = None

    def zero_results(self) -> bytes | None:
        """What Go puts in ``Output.Data`` next to an error: the zero values."""
        return codec.encode_results([t.encode(t.zero) for t in self.results])

    def encode_results(self, returned: Any) -> bytes | None:
        if not self.results:
            return None
        if len(self.results) == 1:
            values: Sequence[Any] = (returned,)
        else:
            if not isinstance(returned, tuple) or len(returned) != len(self.results):
                raise TypeError(
                    f"handler must return a tuple of {len(self.results)} values, not {returned!r}"
                )
            values = returned
        return codec.encode_results([t.encode(v) for t, v in zip(self.results, values, strict=True)])


@dataclass(frozen=True)
class BoundCall:
    """A request resolved to its method and decoded arguments, ready to run."""

    object_id: codec.ObjectID
    name: str
    method: Method
    args: tuple[Any, ...]

    def context(self) -> Mapping[str, Any]:
        """Key=value context for log lines about this call."""
        if self.method.describe is None:
            return {}
        try:
            return self.method.describe(*self.args)
        except Exception:  # a log helper must never fail a call
            return {}

    @property
    def action(self) -> str:
        """How Go's status shows a busy worker: ``[object@version].Method()``."""
        return f"[{self.object_id}].{self.name}()"

    async def run(self) -> codec.Output:
        """Run the handler and turn its outcome into an Output.

        Raises:
            Exception: anything but :class:`CallError` the handler raised; the
                server decides how an unexpected failure is answered.
        """
        try:
            returned = await self.method.handler(*self.args)
        except CallError as exc:
            return codec.Output(data=self.method.zero_results(), error=exc.message)
        return codec.Output(data=self.method.encode_results(returned))


class Dispatcher:
    """The objects a server serves, each with its method table."""

    def __init__(self) -> None:
        self._objects: dict[codec.ObjectID, Mapping[str, Method]] = {}

    def register(self, object_id: codec.ObjectID, methods: Mapping[str, Method]) -> None:
        if object_id == codec.STATUS_OBJECT:
            raise ValueError("object id is reserved")
        if object_id in self._objects:
            raise ValueError(f"object {object_id} already exists")
        self._objects[object_id] = dict(methods)

    def objects(self) -> list[codec.ObjectID]:
        return list(self._objects)

    def bind(self, request: codec.Request) -> BoundCall:
        """Resolve a request to a call.

        Raises:
            ProtocolError: unknown object, no such method, wrong number of
                arguments, or an argument that does not decode to its type.
        """
        methods = self._objects.get(request.object)
        if methods is None:
            raise ProtocolError("unknown object")
        method = methods.get(request.method)
        if method is None:
            raise ProtocolError("not a function")
        return BoundCall(request.object, request.method, method, _decode_args(method, request.inputs))


def _decode_args(method: Method, inputs: Sequence[bytes]) -> tuple[Any, ...]:
    expected = len(method.params)
    got = len(inputs)
    if got < expected or (method.variadic is None and got > expected):
        raise ProtocolError(f"invalid number of arguments expecting {expected} got {got}")
    types: Iterable[GoType[Any]] = list(method.params) + [method.variadic] * (got - expected)  # type: ignore[list-item]
    args = []
    for index, (go_type, raw) in enumerate(zip(types, inputs, strict=True)):
        try:
            value = codec.unpack(raw)
        except Exception as exc:
            raise ProtocolError(
                f"invalid argument type [{index}] expecting {go_type.go_name} got undecodable msgpack"
            ) from exc
        try:
            args.append(go_type.decode(value))
        except (ArgumentTypeError, TypeError, ValueError) as exc:
            raise ProtocolError(f"invalid argument type [{index}] {_detail(exc, go_type)}") from exc
    return tuple(args)


def _detail(exc: Exception, go_type: GoType[Any]) -> str:
    text = str(exc)
    if text.startswith("expecting "):
        return text
    return f"expecting {go_type.go_name} got {text}"
