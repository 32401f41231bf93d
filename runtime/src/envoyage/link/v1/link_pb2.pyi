from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EdgeMessage(_message.Message):
    __slots__ = ("hello", "applied", "envoy", "pong", "proof", "refusal")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    ENVOY_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    applied: Applied
    envoy: EnvoyReport
    pong: Pong
    proof: EdgeProof
    refusal: Refusal
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., applied: _Optional[_Union[Applied, _Mapping]] = ..., envoy: _Optional[_Union[EnvoyReport, _Mapping]] = ..., pong: _Optional[_Union[Pong, _Mapping]] = ..., proof: _Optional[_Union[EdgeProof, _Mapping]] = ..., refusal: _Optional[_Union[Refusal, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("edge_id", "software_version", "have_version", "nonce")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    HAVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    software_version: str
    have_version: str
    nonce: bytes
    def __init__(self, edge_id: _Optional[str] = ..., software_version: _Optional[str] = ..., have_version: _Optional[str] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class EdgeProof(_message.Message):
    __slots__ = ("proof",)
    PROOF_FIELD_NUMBER: _ClassVar[int]
    proof: bytes
    def __init__(self, proof: _Optional[bytes] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Applied(_message.Message):
    __slots__ = ("version", "error", "problems")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    version: str
    error: str
    problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., error: _Optional[str] = ..., problems: _Optional[_Iterable[str]] = ...) -> None: ...

class EnvoyReport(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[EnvoyNode]
    def __init__(self, nodes: _Optional[_Iterable[_Union[EnvoyNode, _Mapping]]] = ...) -> None: ...

class EnvoyNode(_message.Message):
    __slots__ = ("node_id", "connected", "types")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    connected: bool
    types: _containers.RepeatedCompositeFieldContainer[TypeState]
    def __init__(self, node_id: _Optional[str] = ..., connected: _Optional[bool] = ..., types: _Optional[_Iterable[_Union[TypeState, _Mapping]]] = ...) -> None: ...

class TypeState(_message.Message):
    __slots__ = ("type_url", "acked_version", "nacked_version", "error")
    TYPE_URL_FIELD_NUMBER: _ClassVar[int]
    ACKED_VERSION_FIELD_NUMBER: _ClassVar[int]
    NACKED_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    type_url: str
    acked_version: str
    nacked_version: str
    error: str
    def __init__(self, type_url: _Optional[str] = ..., acked_version: _Optional[str] = ..., nacked_version: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class Pong(_message.Message):
    __slots__ = ("nonce",)
    NONCE_FIELD_NUMBER: _ClassVar[int]
    nonce: int
    def __init__(self, nonce: _Optional[int] = ...) -> None: ...

class HomeMessage(_message.Message):
    __slots__ = ("welcome", "resources", "ping", "challenge")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    resources: ResourceSet
    ping: Ping
    challenge: Challenge
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., resources: _Optional[_Union[ResourceSet, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., challenge: _Optional[_Union[Challenge, _Mapping]] = ...) -> None: ...

class Challenge(_message.Message):
    __slots__ = ("nonce", "salt", "proof")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    salt: bytes
    proof: bytes
    def __init__(self, nonce: _Optional[bytes] = ..., salt: _Optional[bytes] = ..., proof: _Optional[bytes] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("software_version", "link_version")
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LINK_VERSION_FIELD_NUMBER: _ClassVar[int]
    software_version: str
    link_version: int
    def __init__(self, software_version: _Optional[str] = ..., link_version: _Optional[int] = ...) -> None: ...

class ResourceSet(_message.Message):
    __slots__ = ("version", "resources")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    version: str
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    def __init__(self, version: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("type_url", "name", "version", "body")
    TYPE_URL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    type_url: str
    name: str
    version: str
    body: bytes
    def __init__(self, type_url: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., body: _Optional[bytes] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("nonce",)
    NONCE_FIELD_NUMBER: _ClassVar[int]
    nonce: int
    def __init__(self, nonce: _Optional[int] = ...) -> None: ...
