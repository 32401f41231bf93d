"""Validation before anything is pushed (pure functions).

Service-level checks turn a bad or conflicting service into a named problem; that
service is dropped and everything else is pushed. Snapshot-level invariants (every
reference resolves, every resource is a well-formed message) refuse the whole
snapshot: failing one of those is a bug, and the last good snapshot keeps serving.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError, Message

from ..model import BUILT_ACCESS_MODES, BUILT_AUTH, ServiceState, zones_problem
from . import types as T
from .snapshot import InconsistentSnapshot, Snapshot


def check_services(
    states: Iterable[ServiceState], withheld: Mapping[str, str] | None = None, zones: tuple[str, ...] = ()
) -> tuple[list[ServiceState], dict[str, list[str]]]:
    """Return the services that may be served and the problems of every service.

    Domain conflicts: the service seen first (first_seen, then name) keeps the domain;
    the other gets a problem naming the winner and is not served until it is resolved.
    `withheld`: services not to serve now (Envoy rejected them), with the problem to show.
    `zones`: the installation's domains; a service naming a domain outside them is not
    served (a container or an API client cannot claim someone else's name).
    """
    withheld = withheld or {}
    ordered = sorted(states, key=lambda s: (s.first_seen, s.origin, s.name))
    owner: dict[str, str] = {}
    accepted: list[ServiceState] = []
    problems: dict[str, list[str]] = {}
    for state in ordered:
        spec = state.spec
        if spec is None:  # the source could not describe it (e.g. bad labels): not served
            problems[state.name] = list(state.source_problems) or ["no valid configuration"]
            continue
        name, own = spec.name, state.source_problems
        if name in withheld:
            problems[name] = [*own, withheld[name]]
            continue
        outside = [p for p in (zones_problem(d, zones) for d in spec.domains) if p] if zones else None
        if outside:
            problems[name] = [*own, *outside, "not served"]
            continue
        taken = [domain for domain in spec.domains if domain in owner]
        if taken:
            problems[name] = [
                *own,
                *(f"domain '{domain}' is already served by service '{owner[domain]}'" for domain in taken),
                "not served until the conflict is resolved",
            ]
            continue
        for domain in spec.domains:
            owner[domain] = name
        notes = []
        if spec.access not in BUILT_ACCESS_MODES:
            notes.append(f"access mode '{spec.access}' is not built yet; the service answers 403 (fails closed)")
        if spec.auth not in BUILT_AUTH:
            notes.append(f"auth '{spec.auth}' is not built yet; the service answers 403 (fails closed)")
        if own or notes:
            problems[name] = [*own, *notes]
        accepted.append(state)
    return accepted, problems


def check_message(type_url: str, msg: Message) -> None:
    """Protobuf validity: the message is initialized and survives a round trip."""
    expected = T.MESSAGE_CLASSES[type_url]
    if not isinstance(msg, expected):
        raise InconsistentSnapshot(f"{T.short(type_url)} resource is a {type(msg).__name__}, not {expected.__name__}")
    if not msg.IsInitialized():
        raise InconsistentSnapshot(f"{T.short(type_url)} resource is missing required fields")
    try:
        expected.FromString(msg.SerializeToString())
    except DecodeError as exc:  # pragma: no cover - would be a protobuf bug
        raise InconsistentSnapshot(f"{T.short(type_url)} resource does not round-trip: {exc}") from exc


def check_framing(type_url: str, name: str, data: bytes) -> None:
    """The bytes of a resource made from bytes are a well-formed message at the top level:
    every field's tag and length is whole and the last field ends where the bytes end."""
    try:
        empty_pb2.Empty.FromString(data)  # every field is unknown to Empty: only framing is parsed
    except DecodeError:
        raise InconsistentSnapshot(
            f"{T.short(type_url)} resource {name!r} made from bytes is not a well-formed message "
            f"(a field's tag or length does not fit its {len(data)} bytes)"
        ) from None


def check_snapshot(snapshot: Snapshot, previous: Snapshot | None = None) -> None:
    """Invariants; raises InconsistentSnapshot naming the first broken one.

    Messages that are the very same resources as in `previous` (already checked) are
    not checked again.
    """
    for type_url in T.PUSH_ORDER:
        resources = snapshot.get(type_url)
        change = snapshot.changes.get(type_url)
        if previous is not None and change is not None and change[0] == previous.version(type_url):
            # built from a snapshot with the very same resources of this type as
            # `previous`: only what is new or changed since is not checked yet
            names: Iterable[str] = change[1]
        else:
            before = previous.get(type_url) if previous is not None else {}
            names = [name for name, res in resources.items() if before.get(name) is not res]
        for name in names:
            res = resources[name]
            if res.decoded_only:
                # made from bytes (translate.py) of messages serialized from checked
                # translations: not decoded again (~6 ms at 5,000 hosts), but its framing
                # is walked (C, microseconds), so a splicing bug is a refused snapshot
                # and the last good one keeps serving, not a NACK from every Envoy
                check_framing(type_url, res.name, res.data)
            else:
                check_message(type_url, res.message)
    snapshot.consistent()
    with_hosts = list(snapshot.get(T.ROUTE).values()) + list(snapshot.get(T.VHOST).values())
    keys = list(itertools.chain.from_iterable([res.domain_keys for res in with_hosts]))
    if len(set(keys)) == len(keys):
        return  # no domain twice in one route configuration
    domains: dict[tuple[str, str], str] = {}
    groups = list(snapshot.get(T.ROUTE).items())
    groups += [(name.split("/", 1)[0], res) for name, res in snapshot.get(T.VHOST).items()]
    for rc_name, res in groups:
        for host, host_domains, _targets in res.hosts:
            for domain in host_domains:
                key = (rc_name, domain.lower())
                if key in domains:
                    raise InconsistentSnapshot(f"domain '{domain}' is in virtual hosts {domains[key]!r} and {host!r}")
                domains[key] = host
