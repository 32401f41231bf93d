"""The state-of-the-world ADS protocol (StreamAggregatedResources): each response of a
type carries every resource of it the stream asked for (CDS and LDS: all of them)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2

from . import types as T
from .snapshot import Snapshot
from .stream import Stream, absent_endpoints, bounded_message, names_problem

log = logging.getLogger("envoyage.xds")


@dataclass
class _SotwType:
    names: set[str] = field(default_factory=set)
    envoy_version: str = ""  # the version Envoy reported having
    sent_version: str | None = None
    sent_names: set[str] = field(default_factory=set)  # names requested when we last sent
    sent_resources: set[str] = field(default_factory=set)  # names in the last response
    nonce: str = ""
    watch_open: bool = False
    nacked_version: str | None = None
    answered_nonce: str = ""


class SotwStream(Stream):
    delta = False

    def request_problem(self, req) -> str | None:
        return names_problem(req.resource_names)

    def sent_cluster_names(self) -> set[str]:
        st = self.types.get(T.CLUSTER)
        return set(st.sent_resources) if st else set()

    def handle(self, req: discovery_pb2.DiscoveryRequest) -> discovery_pb2.DiscoveryResponse | None:
        type_url = req.type_url
        first = type_url not in self.types
        st = self.types.setdefault(type_url, _SotwType())
        if first and req.version_info and not req.response_nonce:
            # a reconnect: Envoy says which version it holds; if that is the current
            # one nothing is sent, and status knows at once that this type is in sync
            snap = self.snapshot()
            self._callbacks(
                "on_reported",
                type_url,
                req.version_info,
                snap is not None and snap.version(type_url) == req.version_info,
            )
        if req.response_nonce and req.response_nonce != st.nonce:
            log.debug(
                "node %s %s: stale nonce %s (latest %s) ignored",
                self.node_id,
                T.short(type_url),
                req.response_nonce,
                st.nonce,
            )
            return None
        if req.response_nonce and req.response_nonce != st.answered_nonce:
            st.answered_nonce = req.response_nonce  # one ACK/NACK per response
            if req.HasField("error_detail"):
                st.nacked_version = st.sent_version
                msg = bounded_message(req.error_detail.message)
                log.warning("node %s NACKed %s version %s: %s", self.node_id, T.short(type_url), st.sent_version, msg)
                self._callbacks("on_nack", type_url, st.sent_version or "", msg)
            else:
                st.nacked_version = None
                self._callbacks("on_ack", type_url, req.version_info)
        st.envoy_version = req.version_info
        names = set(req.resource_names) - {"*"}
        # Names Envoy newly asks for need an answer even at an unchanged version (a
        # warming cluster waits for them) -- unless this is a reconnect and Envoy
        # already holds the current version.
        new_names = False
        if type_url not in T.WILDCARD_TYPES and st.sent_version is not None:
            new_names = bool(names - st.sent_names)
        st.names = names
        st.watch_open = True
        return self.respond(type_url, force=new_names)

    def response(
        self, type_url: str, st: _SotwType, snap: Snapshot, version: str, force: bool
    ) -> discovery_pb2.DiscoveryResponse | None:
        have = st.sent_version if st.sent_version is not None else st.envoy_version
        if not force and (version == have or version == st.nacked_version):
            return None
        resources = snap.get(type_url)
        if type_url in T.WILDCARD_TYPES:
            chosen = list(resources.values())
        elif type_url == T.ENDPOINT:
            chosen = [resources.get(n) or absent_endpoints(n) for n in sorted(st.names)]
        else:
            chosen = [resources[n] for n in sorted(st.names) if n in resources]
        nonce = self._nonce()
        resp = discovery_pb2.DiscoveryResponse(
            version_info=version, type_url=type_url, nonce=nonce, resources=[r.packed for r in chosen]
        )
        st.sent_version, st.nonce, st.watch_open = version, nonce, False
        st.sent_names = set(st.names)
        st.sent_resources = {r.name for r in chosen}
        log.debug("node %s: sotw %s version %s, %d resources", self.node_id, T.short(type_url), version, len(chosen))
        self._callbacks("on_response", type_url, resp)
        return resp
