"""Base classes of the component model."""

from __future__ import annotations

import enum
import json
import math
from abc import ABC
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar


class ConfigError(Exception):
    """A configuration problem, reported as one line naming where it is and what fits."""


class LocatedConfigError(ConfigError):
    """A ConfigError whose message starts with the file it is in (a Dapr manifest's component):
    not to be prefixed with the runtime config's file again."""


def read_config_text(path: Path, where: str = "") -> str:
    """The UTF-8 text of a file the config names, or a one-line ConfigError naming ``where`` (if
    given) and the path and saying why it cannot be read: missing, a directory, permission
    denied, or not UTF-8 (with the offset of the first bad byte)."""
    head = f"{where}: {path}" if where else str(path)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{head}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        bad = error.object[error.start]
        raise ConfigError(f"{head}: not UTF-8 text (byte 0x{bad:02x} at offset {error.start})") from None


def config_entries(raw: Any, where: str, known: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    """A config list of mappings using only the ``known`` keys: (where each one is, the mapping)."""
    shape = "{" + ", ".join(known) + "}"
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of {shape}")
    entries = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{at}: expected {shape}")
        unknown = sorted(set(item) - set(known))
        if unknown:
            raise ConfigError(f"{at}.{unknown[0]}: unknown key (known: {', '.join(known)})")
        entries.append((at, item))
    return entries


class Feature(enum.StrEnum):
    """Optional capabilities a component may declare; the API layer checks them."""

    ETAG = "ETAG"
    FIRST_WRITE = "FIRST_WRITE"
    TRANSACTIONAL = "TRANSACTIONAL"
    TTL = "TTL"
    BULK = "BULK"
    QUERY = "QUERY_API"
    LOCK_KEEP_ALIVE = "KEEP_ALIVE"
    SEQUENCER_SEGMENTS = "SEGMENTS"
    ORDERED = "ORDERED"
    DEAD_LETTER = "DEAD_LETTER"  # the broker itself dead-letters expired or rejected messages
    WILDCARD_TOPICS = "WILDCARD_TOPICS"  # subscribe to a topic pattern; messages carry their real topic
    INPUT_BINDING = "INPUT_BINDING"  # a binding that delivers events to the app (Dapr's capability name)
    OUTPUT_BINDING = "OUTPUT_BINDING"  # a binding the app invokes with operations (Dapr's capability name)
    SHARED = "SHARED"  # a scheduler whose items runtimes on several machines share, each due item fired once


@dataclass(frozen=True)
class MetadataField:
    """One metadata key a component reads: documented and validated from here."""

    name: str
    description: str
    type: type = str
    default: Any = None
    required: bool = False
    example: str = ""
    value_type: Any = None  # for a JSON object (type=dict): the type every value must have
    minimum: float | None = None  # for numbers (and a dict's numeric values): the smallest allowed
    maximum: float | None = None  # ... and the largest
    secret: bool = False  # never shown: --print-config and logs mask it (its name says so: masking.is_secret_key)

    def _check_range(self, value: Any, where: str) -> Any:
        low = self.minimum if self.minimum is not None else -float("inf")
        high = self.maximum if self.maximum is not None else float("inf")
        if not low <= value <= high:
            raise ConfigError(f"{where}: must be between {_number(low)} and {_number(high)}, got {value!r}")
        return value

    def parse(self, raw: str, where: str) -> Any:
        if self.type is bool:
            lowered = raw.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ConfigError(f"{where}.{self.name}: expected true or false, got {raw!r}")
        if self.type is dict:
            try:
                value = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise ConfigError(f"{where}.{self.name}: expected a JSON object, got {raw!r}") from None
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{self.name}: expected a JSON object, got {raw!r}")
            wanted = self.value_type
            for key, item in value.items():
                if wanted is not None and (not isinstance(item, wanted) or isinstance(item, bool)):
                    raise ConfigError(f"{where}.{self.name}.{key}: expected {wanted.__name__}, got {item!r}")
                if wanted in (int, float):
                    self._check_range(item, f"{where}.{self.name}.{key}")
            return value
        if self.type in (int, float):
            try:
                number = self.type(raw)
            except ValueError:
                raise ConfigError(f"{where}.{self.name}: expected a number, got {raw!r}") from None
            if math.isnan(number):  # NaN compares false with every bound
                raise ConfigError(f"{where}.{self.name}: expected a number, got {raw!r}")
            return self._check_range(number, f"{where}.{self.name}")
        return raw

    def bounds(self) -> str:
        """The allowed range as the docs show it ("1 .. 1000000"), or "" when unbounded."""
        if self.minimum is None and self.maximum is None:
            return ""
        low = "" if self.minimum is None else _number(self.minimum)
        high = "" if self.maximum is None else _number(self.maximum)
        return f"{low} .. {high}".strip()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


KiB = 1024
MiB = 1024 * KiB

#: the size of a streamed read's messages, shared by the stores that stream (file, oss)
CHUNK_SIZE = MetadataField(
    "chunkSize",
    "Bytes of data in one message of a streamed read (GetFile, GetObject; the last may be shorter); keep it "
    "below the runtime's max_message_bytes.",
    type=int,
    default=1 * MiB,
    minimum=1 * KiB,
    maximum=8 * MiB,
)

#: the runtime-level key namespacing of lock and sequencer keys, as in Layotto
KEY_PREFIX = MetadataField(
    "keyPrefix",
    "How keys are namespaced: appid (default: by the runtime's app id), name (by the component's name), "
    "none, or any other string (used as the namespace).",
    default="appid",
)


@dataclass(frozen=True)
class Limits:
    """Sizes a component's backend cannot take, in bytes (UTF-8 for keys); ``None``: no limit
    below the runtime's own request size limit. The API layer refuses requests beyond them
    with INVALID_ARGUMENT naming the field and the limit, before the backend is asked."""

    max_key_bytes: int | None = None
    max_value_bytes: int | None = None
    #: all keys and values of one transaction together (a backend that takes it as one request)
    max_transaction_bytes: int | None = None
    #: operations in one transaction
    max_transaction_items: int | None = None
    #: keys (and the other text it stores, e.g. lock owners) are text columns that cannot hold NUL
    #: (U+0000), as PostgreSQL's TEXT: the API layer refuses a NUL with INVALID_ARGUMENT
    text_without_nul: bool = False

    def described(self) -> list[str]:
        """Every limit that is set, in words, as the component docs list them."""
        found = []
        if self.max_key_bytes is not None:
            found.append(f"keys up to {self.max_key_bytes:,} bytes")
        if self.max_value_bytes is not None:
            found.append(f"values up to {self.max_value_bytes:,} bytes")
        if self.max_transaction_bytes is not None:
            found.append(f"transactions up to {self.max_transaction_bytes:,} bytes of keys and values")
        if self.max_transaction_items is not None:
            found.append(f"transactions up to {self.max_transaction_items:,} operations")
        if self.text_without_nul:
            found.append("keys (and lock owners) without NUL (U+0000) characters")
        return found


@dataclass(frozen=True)
class ComponentSpec:
    """What a component type is: its name, building block, features, metadata and size limits."""

    type: str
    building_block: str
    description: str
    features: frozenset[Feature] = frozenset()
    metadata: tuple[MetadataField, ...] = ()
    version: str = "v1"
    limits: Limits = Limits()
    #: an output binding's operations, as InvokeBinding names them (Dapr's names)
    operations: tuple[str, ...] = ()

    def parse_metadata(self, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Typed metadata with defaults applied; unknown or missing keys are errors."""
        known = {f.name: f for f in self.metadata}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            choices = ", ".join(known) or "none"
            raise ConfigError(f"{where}.{unknown[0]}: unknown metadata key for {self.type} (known: {choices})")
        values: dict[str, Any] = {}
        for name, spec in known.items():
            if name in raw:
                values[name] = spec.parse(str(raw[name]), where)
            elif spec.required:
                raise ConfigError(f"{where}.{name}: required by {self.type} ({spec.description})")
            else:
                values[name] = spec.default
        return values


@dataclass(frozen=True)
class ComponentContext:
    """What the runtime tells every component at init. ``peer(block, name)`` answers a component
    loaded before this one (secret stores load first), or raises ConfigError naming it."""

    app_id: str
    data_dir: Path
    peer: Callable[[str, str], Component] | None = None


@dataclass(frozen=True)
class Health:
    """A component's health as the actuator reports it."""

    up: bool
    details: Mapping[str, str] = field(default_factory=dict)


class Backend(Protocol):
    """A shared connection helper (RedisConnection, PostgresConnection, ...) a component uses."""

    async def close(self) -> None: ...

    async def health(self) -> Health: ...


B = TypeVar("B", bound=Backend)


class Component(ABC):
    """Base of every component: built by its registry, then initialised with metadata."""

    spec: ClassVar[ComponentSpec]

    def __init__(self, name: str) -> None:
        self.name = name
        #: the parsed metadata the component was initialised with (set by the loader)
        self.metadata: Mapping[str, Any] = {}
        self._backend: Backend | None = None

    def connect(self, backend: B) -> B:
        """Make ``backend`` the connection that ``close()`` closes and ``health()`` asks."""
        self._backend = backend
        return backend

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        """Connect to the backend; ``metadata`` is already parsed by the spec."""

    async def close(self) -> None:
        """Release connections; called once at shutdown."""
        if self._backend is not None:
            await self._backend.close()

    async def health(self) -> Health:
        return await self._backend.health() if self._backend is not None else Health(up=True)

    def supports(self, feature: Feature) -> bool:
        return feature in self.spec.features
