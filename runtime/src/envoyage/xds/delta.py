"""The incremental ("delta") ADS protocol (DeltaAggregatedResources): each response
carries only the resources that changed for the stream, and the names removed."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2

from . import types as T
from .snapshot import Snapshot
from .stream import Stream, absent_endpoints, bounded_message, names_problem

log = logging.getLogger("envoyage.xds")


@dataclass
class _DeltaType:
    wildcard: bool = False
    subscribed: set[str] = field(default_factory=set)
    sent: dict[str, str] = field(default_factory=dict)  # name -> version Envoy has
    nonce: str = ""
    watch_open: bool = True
    initial_pending: bool = True
    last_version: str = ""  # system_version_info of the latest response
    answered_nonce: str = ""
    dirty: bool = True  # subscriptions changed since the last diff
    # what `sent` held before the response in flight, for the names it carries: a NACK
    # rejects the whole response, so Envoy still has exactly that
    pending: dict[str, str | None] = field(default_factory=dict)
    nacked_version: str = ""  # a rejected snapshot version is never sent again
    resync: bool = False  # after a NACK: the next response is a full diff, not parent->child


class DeltaStream(Stream):
    delta = True

    def request_problem(self, req) -> str | None:
        st = self.types.get(req.type_url)
        return names_problem(req.resource_names_subscribe, len(st.subscribed) if st else 0) or names_problem(
            list(req.initial_resource_versions)
        )

    def sent_cluster_names(self) -> set[str]:
        st = self.types.get(T.CLUSTER)
        return set(st.sent) if st else set()

    @staticmethod
    def _wants(st: _DeltaType, type_url: str, name: str) -> bool:
        """Is `name` covered by this stream's subscription? (set lookups only: O(1))"""
        if st.wildcard or name in st.subscribed:
            return True
        return type_url == T.VHOST and name.split("/", 1)[0] in st.subscribed

    def handle(self, req: discovery_pb2.DeltaDiscoveryRequest) -> discovery_pb2.DeltaDiscoveryResponse | None:
        type_url = req.type_url
        log.debug(
            "node %s: delta %s request subscribe=%s unsubscribe=%s nonce=%s%s",
            self.node_id,
            T.short(type_url),
            list(req.resource_names_subscribe)[:5],
            list(req.resource_names_unsubscribe)[:5],
            req.response_nonce,
            " NACK" if req.HasField("error_detail") else "",
        )
        st = self.types.get(type_url)
        reconnect = False
        if st is None:
            st = self.types[type_url] = _DeltaType()
            subscribe = set(req.resource_names_subscribe)
            st.wildcard = type_url in T.WILDCARD_TYPES and (not subscribe or "*" in subscribe)
            st.sent = dict(req.initial_resource_versions)
            reconnect = bool(req.initial_resource_versions)
        if req.response_nonce:
            if req.response_nonce != st.nonce:
                log.debug("node %s %s: stale nonce %s ignored", self.node_id, T.short(type_url), req.response_nonce)
            elif req.response_nonce != st.answered_nonce:
                st.answered_nonce = req.response_nonce  # one ACK/NACK per response
                st.watch_open = True
                if req.HasField("error_detail"):
                    msg = bounded_message(req.error_detail.message)
                    log.warning("node %s NACKed delta %s: %s", self.node_id, T.short(type_url), msg)
                    for name, before in st.pending.items():
                        if before is None:
                            st.sent.pop(name, None)
                        else:
                            st.sent[name] = before
                    st.nacked_version, st.resync = st.last_version, True
                    st.pending = {}
                    self._callbacks("on_nack", type_url, st.last_version, msg)
                else:
                    st.pending = {}
                    self._callbacks("on_ack", type_url, st.last_version)
        if req.resource_names_subscribe or req.resource_names_unsubscribe:
            st.dirty = True
        for name in req.resource_names_subscribe:
            if name == "*":
                st.wildcard = True
                continue
            st.subscribed.add(name)
            if name not in req.initial_resource_versions:
                st.sent.pop(name, None)  # (re)subscription: Envoy wants it now
        for name in req.resource_names_unsubscribe:
            if name == "*":
                st.wildcard = False
                continue
            st.subscribed.discard(name)
            st.sent.pop(name, None)
        resp = self.respond(type_url)
        if reconnect:
            # Envoy listed every resource it holds with its version: in sync when the
            # answer changes and removes nothing (compared per resource)
            snap = self.snapshot()
            in_sync = snap is not None and (resp is None or (not resp.resources and not resp.removed_resources))
            version = snap.version(type_url) if snap is not None and in_sync else ""
            self._callbacks("on_reported", type_url, version, in_sync)
        return resp

    def response(
        self, type_url: str, st: _DeltaType, snap: Snapshot, version: str, force: bool
    ) -> discovery_pb2.DeltaDiscoveryResponse | None:
        if (
            not st.initial_pending
            and not st.dirty
            and (version == st.nacked_version or (st.last_version == version and not st.resync))
        ):
            return None  # nothing changed since the last response (or Envoy rejected this version)
        resources = snap.get(type_url)
        parent = snap.changes.get(type_url)
        if (
            parent is not None
            and not st.initial_pending
            and not st.dirty
            and not st.resync
            and parent[0] == st.last_version
        ):
            # Envoy has this snapshot's parent: only what changed in between can differ
            changed = sorted(
                (
                    resources[n]
                    for n in parent[1]
                    if self._wants(st, type_url, n) and st.sent.get(n) != resources[n].version
                ),
                key=lambda r: r.name,
            )
            removed = sorted(n for n in parent[2] if n in st.sent)
        else:
            if st.wildcard:
                wanted = resources
            elif type_url == T.VHOST:  # a subscription to a route configuration covers all its hosts
                wanted = {n: r for n, r in resources.items() if self._wants(st, type_url, n)}
            elif type_url == T.ENDPOINT:  # every endpoint subscription is answered
                wanted = {n: resources.get(n) or absent_endpoints(n) for n in st.subscribed}
            else:
                wanted = {n: resources[n] for n in st.subscribed if n in resources}
            changed = sorted((r for n, r in wanted.items() if st.sent.get(n) != r.version), key=lambda r: r.name)
            removed = sorted(n for n in st.sent if n not in wanted and self._wants(st, type_url, n))
        st.dirty = st.resync = False
        if not changed and not removed and not st.initial_pending:
            st.last_version = version
            return None
        st.initial_pending = False
        nonce = self._nonce()
        resp = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=snap.version(type_url),
            type_url=type_url,
            nonce=nonce,
            resources=[discovery_pb2.Resource(name=r.name, version=r.version, resource=r.packed) for r in changed],
            removed_resources=removed,
        )
        st.pending = {n: st.sent.get(n) for n in itertools.chain((r.name for r in changed), removed)}
        for r in changed:
            st.sent[r.name] = r.version
        for n in removed:
            st.sent.pop(n, None)
        st.nonce, st.watch_open = nonce, False
        st.last_version = version
        if version != st.nacked_version:
            st.nacked_version = ""
        log.debug("node %s: delta %s +%d -%d", self.node_id, T.short(type_url), len(changed), len(removed))
        self._callbacks("on_response", type_url, resp)
        return resp
