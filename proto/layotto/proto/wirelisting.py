"""Wire listings: a plain-text description of a gRPC API's services and messages.

A listing names every service, RPC, message, enum and field of an API with its wire
package, numbers and streaming shape, one declaration a line::

    #### file spec/proto/runtime/v1/runtime.proto  package spec.proto.runtime.v1
    service spec.proto.runtime.v1.Runtime {
      rpc GetState(spec.proto.runtime.v1.GetStateRequest) returns (spec.proto.runtime.v1.GetStateResponse)
    }
    message spec.proto.runtime.v1.Etag { string value=1 }
    enum spec.proto.runtime.v1.UnlockResponse.Status { SUCCESS=0, LOCK_UNEXIST=1 }

This module parses listings, compares them with compiled descriptors (the drift
test), and writes .proto sources from a listing at the listing's own file paths
(so a client can be built exactly as a peer's SDK would build it).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor as _d

__all__ = [
    "WireEnum",
    "WireField",
    "WireFile",
    "WireMessage",
    "WireRpc",
    "WireService",
    "compare_with_descriptors",
    "parse_listing",
    "write_proto_files",
]

_FIELD_RE = re.compile(r"^(?:(repeated|optional) )?(\S+) (\w+)=(\d+)(?: \(oneof (\w+)\))?$")
_RPC_RE = re.compile(r"^rpc (\w+)\((stream )?(\S+)\) returns \((stream )?(\S+)\)$")
_FILE_RE = re.compile(r"^#### file (\S+)\s+package (\S+)$")
_SCALARS = frozenset(
    [
        "double",
        "float",
        "int32",
        "int64",
        "uint32",
        "uint64",
        "sint32",
        "sint64",
        "fixed32",
        "fixed64",
        "sfixed32",
        "sfixed64",
        "bool",
        "string",
        "bytes",
    ]
)
_WELL_KNOWN = {
    "google.protobuf.Any": "google/protobuf/any.proto",
    "google.protobuf.Empty": "google/protobuf/empty.proto",
    "google.protobuf.Duration": "google/protobuf/duration.proto",
    "google.protobuf.Struct": "google/protobuf/struct.proto",
    "google.protobuf.Timestamp": "google/protobuf/timestamp.proto",
    "google.rpc.Status": "google/rpc/status.proto",
}


@dataclass(frozen=True)
class WireField:
    label: str  # "", "repeated" or "optional"
    type: str  # scalar, fully qualified name, or map<K,V>
    name: str
    number: int
    oneof: str | None


@dataclass(frozen=True)
class WireMessage:
    full_name: str
    fields: tuple[WireField, ...]


@dataclass(frozen=True)
class WireEnum:
    full_name: str
    values: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class WireRpc:
    name: str
    request: str
    client_streaming: bool
    response: str
    server_streaming: bool


@dataclass(frozen=True)
class WireService:
    full_name: str
    rpcs: tuple[WireRpc, ...]


@dataclass
class WireFile:
    path: str
    package: str
    messages: list[WireMessage] = field(default_factory=list)
    enums: list[WireEnum] = field(default_factory=list)
    services: list[WireService] = field(default_factory=list)


def _parse_message(line: str) -> WireMessage:
    match = re.match(r"message (\S+) \{(.*)\}$", line)
    if not match:
        raise ValueError(f"bad message line: {line!r}")
    fields = []
    body = match.group(2).strip()
    for part in body.split("; ") if body else []:
        fm = _FIELD_RE.match(part.strip().rstrip(";"))
        if not fm:
            raise ValueError(f"bad field {part!r} in {line!r}")
        label, type_, name, number, oneof = fm.groups()
        fields.append(WireField(label or "", type_, name, int(number), oneof))
    return WireMessage(match.group(1), tuple(fields))


def _parse_enum(line: str) -> WireEnum:
    match = re.match(r"enum (\S+) \{(.*)\}$", line)
    if not match:
        raise ValueError(f"bad enum line: {line!r}")
    values = []
    for part in match.group(2).split(","):
        name, number = part.strip().split("=")
        values.append((name, int(number)))
    return WireEnum(match.group(1), tuple(values))


def parse_listing(text: str) -> list[WireFile]:
    """Parse a listing into its files, in listing order."""
    files: list[WireFile] = []
    service: tuple[str, list[WireRpc]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#### file"):
            fm = _FILE_RE.match(line)
            if not fm:
                raise ValueError(f"bad file line: {line!r}")
            files.append(WireFile(fm.group(1), fm.group(2)))
        elif line.startswith("service "):
            service = (line.split()[1], [])
        elif line.startswith("rpc "):
            rm = _RPC_RE.match(line)
            if not rm or service is None:
                raise ValueError(f"bad rpc line: {line!r}")
            name, cs, req, ss, resp = rm.groups()
            service[1].append(WireRpc(name, req, bool(cs), resp, bool(ss)))
        elif line == "}":
            if service is not None:
                files[-1].services.append(WireService(service[0], tuple(service[1])))
            service = None
        elif line.startswith("message "):
            files[-1].messages.append(_parse_message(line))
        elif line.startswith("enum "):
            files[-1].enums.append(_parse_enum(line))
        else:
            raise ValueError(f"unrecognised line: {line!r}")
    return files


# ---------------------------------------------------------------- comparison

_TYPE_NAMES = {
    _d.FieldDescriptor.TYPE_DOUBLE: "double",
    _d.FieldDescriptor.TYPE_FLOAT: "float",
    _d.FieldDescriptor.TYPE_INT64: "int64",
    _d.FieldDescriptor.TYPE_UINT64: "uint64",
    _d.FieldDescriptor.TYPE_INT32: "int32",
    _d.FieldDescriptor.TYPE_FIXED64: "fixed64",
    _d.FieldDescriptor.TYPE_FIXED32: "fixed32",
    _d.FieldDescriptor.TYPE_BOOL: "bool",
    _d.FieldDescriptor.TYPE_STRING: "string",
    _d.FieldDescriptor.TYPE_BYTES: "bytes",
    _d.FieldDescriptor.TYPE_UINT32: "uint32",
    _d.FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    _d.FieldDescriptor.TYPE_SFIXED64: "sfixed64",
    _d.FieldDescriptor.TYPE_SINT32: "sint32",
    _d.FieldDescriptor.TYPE_SINT64: "sint64",
}


def _field_type(fd: _d.FieldDescriptor) -> str:
    if fd.message_type is not None:
        if fd.message_type.GetOptions().map_entry:
            key, value = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
            return f"map<{_field_type(key)},{_field_type(value)}>"
        return fd.message_type.full_name
    if fd.enum_type is not None:
        return fd.enum_type.full_name
    return _TYPE_NAMES[fd.type]


def _field_label(fd: _d.FieldDescriptor) -> str:
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        return ""
    if fd.is_repeated:
        return "repeated"
    oneof = fd.containing_oneof
    if oneof is not None and oneof.name.startswith("_") and len(oneof.fields) == 1:
        return "optional"
    return ""


def _real_oneof(fd: _d.FieldDescriptor) -> str | None:
    oneof = fd.containing_oneof
    if oneof is None or _field_label(fd) == "optional":
        return None
    return str(oneof.name)


def _compare_message(wire: WireMessage, desc: _d.Descriptor) -> list[str]:
    problems = []
    actual = {fd.name: fd for fd in desc.fields}
    for wf in wire.fields:
        fd = actual.pop(wf.name, None)
        where = f"{wire.full_name}.{wf.name}"
        if fd is None:
            problems.append(f"field {where} is missing")
            continue
        got = (_field_label(fd), _field_type(fd), fd.number, _real_oneof(fd))
        want = (wf.label, wf.type, wf.number, wf.oneof)
        if got != want:
            problems.append(f"field {where}: expected {want}, found {got}")
    problems += [f"field {wire.full_name}.{name} is not in the listing" for name in actual]
    return problems


def _compare_enum(wire: WireEnum, desc: _d.EnumDescriptor) -> list[str]:
    got = tuple((v.name, v.number) for v in desc.values)
    if got != wire.values:
        return [f"enum {wire.full_name}: expected {wire.values}, found {got}"]
    return []


def _compare_service(wire: WireService, desc: _d.ServiceDescriptor) -> list[str]:
    problems = []
    actual = {m.name: m for m in desc.methods}
    for rpc in wire.rpcs:
        md = actual.pop(rpc.name, None)
        if md is None:
            problems.append(f"rpc {wire.full_name}/{rpc.name} is missing")
            continue
        got = (md.input_type.full_name, md.client_streaming, md.output_type.full_name, md.server_streaming)
        want = (rpc.request, rpc.client_streaming, rpc.response, rpc.server_streaming)
        if got != want:
            problems.append(f"rpc {wire.full_name}/{rpc.name}: expected {want}, found {got}")
    problems += [f"rpc {wire.full_name}/{name} is not in the listing" for name in actual]
    return problems


def _all_types(files: Iterable[_d.FileDescriptor]) -> tuple[dict[str, _d.Descriptor], dict[str, _d.EnumDescriptor]]:
    messages: dict[str, _d.Descriptor] = {}
    enums: dict[str, _d.EnumDescriptor] = {}

    def walk(desc: _d.Descriptor) -> None:
        messages[desc.full_name] = desc
        for nested_enum in desc.enum_types:
            enums[nested_enum.full_name] = nested_enum
        for nested in desc.nested_types:
            if not nested.GetOptions().map_entry:
                walk(nested)

    for fd in files:
        for msg in fd.message_types_by_name.values():
            walk(msg)
        for enum in fd.enum_types_by_name.values():
            enums[enum.full_name] = enum
    return messages, enums


def compare_with_descriptors(listing: list[WireFile], files: Iterable[_d.FileDescriptor]) -> list[str]:
    """Every difference between a listing and compiled file descriptors, as sentences.

    Compares packages, services, RPCs (types and streaming), messages, fields (label,
    type, number, oneof) and enum values, both ways: anything extra is reported too.
    """
    files = list(files)
    messages, enums = _all_types(files)
    services = {s.full_name: s for fd in files for s in fd.services_by_name.values()}
    packages = {fd.package for fd in files}
    problems: list[str] = []
    listed_messages, listed_enums, listed_services = set(), set(), set()
    for wf in listing:
        if wf.package not in packages:
            problems.append(f"package {wf.package} (file {wf.path}) is missing")
        for wm in wf.messages:
            listed_messages.add(wm.full_name)
            if wm.full_name not in messages:
                problems.append(f"message {wm.full_name} is missing")
            else:
                problems += _compare_message(wm, messages[wm.full_name])
        for we in wf.enums:
            listed_enums.add(we.full_name)
            if we.full_name not in enums:
                problems.append(f"enum {we.full_name} is missing")
            else:
                problems += _compare_enum(we, enums[we.full_name])
        for ws in wf.services:
            listed_services.add(ws.full_name)
            if ws.full_name not in services:
                problems.append(f"service {ws.full_name} is missing")
            else:
                problems += _compare_service(ws, services[ws.full_name])
    problems += [f"message {n} is not in the listing" for n in sorted(set(messages) - listed_messages)]
    problems += [f"enum {n} is not in the listing" for n in sorted(set(enums) - listed_enums)]
    problems += [f"service {n} is not in the listing" for n in sorted(set(services) - listed_services)]
    return problems


# ------------------------------------------------------------------ emitting


class _Emitter:
    def __init__(self, files: list[WireFile], path_of: dict[str, str]) -> None:
        self.owner: dict[str, WireFile] = {}
        self.message_names: set[str] = set()
        self.path_of = path_of
        for wf in files:
            for m in wf.messages:
                self.owner[m.full_name] = wf
                self.message_names.add(m.full_name)
            for e in wf.enums:
                self.owner[e.full_name] = wf

    def ref(self, type_: str, current: WireFile, imports: set[str]) -> str:
        if type_.startswith("map<"):
            key, value = type_[4:-1].split(",")
            return f"map<{self.ref(key, current, imports)}, {self.ref(value, current, imports)}>"
        if type_ in _SCALARS:
            return type_
        if type_ in _WELL_KNOWN:
            imports.add(_WELL_KNOWN[type_])
            return type_
        owner = self.owner[type_]
        if owner is not current:
            imports.add(self.path_of[owner.path])
        return "." + type_

    def emit_file(self, wf: WireFile) -> str:
        imports: set[str] = set()
        children: dict[str, list[WireMessage | WireEnum]] = defaultdict(list)
        top: list[WireMessage | WireEnum] = []
        items: list[WireMessage | WireEnum] = [*wf.messages, *wf.enums]
        for item in items:
            parent = item.full_name.rsplit(".", 1)[0]
            (children[parent] if parent in self.message_names else top).append(item)
        body: list[str] = []
        for svc in wf.services:
            body.append(f"service {svc.full_name.rsplit('.', 1)[1]} {{")
            for rpc in svc.rpcs:
                req = ("stream " if rpc.client_streaming else "") + self.ref(rpc.request, wf, imports)
                resp = ("stream " if rpc.server_streaming else "") + self.ref(rpc.response, wf, imports)
                body.append(f"  rpc {rpc.name}({req}) returns ({resp});")
            body.append("}")
        for item in top:
            body += self.emit_type(item, wf, imports, children, 0)
        head = ['syntax = "proto3";', f"package {wf.package};"]
        head += [f'import "{i}";' for i in sorted(imports)]
        return "\n".join(head + body) + "\n"

    def emit_type(
        self,
        item: WireMessage | WireEnum,
        wf: WireFile,
        imports: set[str],
        children: dict[str, list[WireMessage | WireEnum]],
        depth: int,
    ) -> list[str]:
        pad = "  " * depth
        short = item.full_name.rsplit(".", 1)[1]
        if isinstance(item, WireEnum):
            values = [f"{pad}  {name} = {number};" for name, number in item.values]
            return [f"{pad}enum {short} {{", *values, f"{pad}}}"]
        out = [f"{pad}message {short} {{"]
        for child in children.get(item.full_name, []):
            out += self.emit_type(child, wf, imports, children, depth + 1)
        seen_oneofs: set[str] = set()
        for fl in item.fields:
            if fl.oneof is None:
                label = f"{fl.label} " if fl.label else ""
                out.append(f"{pad}  {label}{self.ref(fl.type, wf, imports)} {fl.name} = {fl.number};")
            elif fl.oneof not in seen_oneofs:
                seen_oneofs.add(fl.oneof)
                out.append(f"{pad}  oneof {fl.oneof} {{")
                for member in (f for f in item.fields if f.oneof == fl.oneof):
                    ref = self.ref(member.type, wf, imports)
                    out.append(f"{pad}    {ref} {member.name} = {member.number};")
                out.append(f"{pad}  }}")
        out.append(f"{pad}}}")
        return out


def write_proto_files(files: list[WireFile], out_dir: Path) -> list[Path]:
    """Write one .proto per listed file, at the listing's own path under out_dir."""
    emitter = _Emitter(files, {wf.path: wf.path for wf in files})
    written = []
    for wf in files:
        target = out_dir / wf.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(emitter.emit_file(wf))
        written.append(target)
    return written
