"""The control plane's core: registry -> translate -> validate -> snapshot cache.

One `ControlPlane` object owns the pieces; the control API, discovery and the CLI all
change desired state through it, and every change ends in `reconcile()`, which pushes
a new snapshot (or keeps the last good one and says why).

Its collaborators (the registry, the snapshot cache, the DNS controller, the edge link,
the tunnel monitor, discovery) come through the constructor; nothing is attached later.
Those built before the plane that must call it (the edge link's verdicts, discovery)
get a `PlaneHandle`, which the plane's constructor binds to itself. What the plane
reports is typed (`envoyage.status`).
"""

from __future__ import annotations

import collections
import gc
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .. import __version__
from ..config import Config, dump_config
from ..hostnet import HostNetworks
from ..model import InputError, ServiceSpec, merge_update, parse_service, zones_problem
from ..module_utils._wireguard import address_plan
from ..networks import DockerNetwork, local_docker_networks, vpn_only_networks
from ..status import (
    DiscoveryStatus,
    EdgeLinkStatus,
    ReconcileStatus,
    RegistryStatus,
    ServiceCounts,
    StatusReport,
    XdsStatus,
)
from ..store.registry import Registry
from ..xds import types as T
from ..xds.assemble import HomeSettings, TunnelSettings, assemble_edge, assemble_home
from ..xds.cache import SnapshotCache, snapshot_key
from ..xds.server import AdsServer
from ..xds.snapshot import InconsistentSnapshot
from ..xds.status import BaseCallbacks, StatusTracker
from ..xds.translate import EdgeLimits, EdgeSettings, HomeAccess, TranslationCache
from ..xds.verdicts import EDGE_REJECTED, Verdicts, services_in_change

if TYPE_CHECKING:
    from ..dns.controller import DnsController
    from ..link.server import EdgeLinkServer, LinkListener
    from .tunnel import TunnelMonitor

log = logging.getLogger("envoyage.control")

ROLE_HOME = "home"
DELTA_HOME = snapshot_key(ROLE_HOME, delta=True)
ROLE_EDGE = "edge"


def _unique(networks: list[DockerNetwork]) -> list[DockerNetwork]:
    """One entry per subnet (a bridge seen on home and reported by dockerd is one network;
    dockerd's name is kept)."""
    out: dict[str, DockerNetwork] = {}
    for net in networks:
        key = str(ipaddress.ip_network(net.subnet, strict=False))
        if key not in out or out[key].name.startswith(("docker", "br-")):
            out[key] = net
    return list(out.values())


class NotFound(KeyError):
    pass


class Conflict(KeyError):
    pass


class RegistryRefused(Exception):
    """The registry is not served (damaged or older than it was): no changes until the
    operator restores it or accepts it."""


class OwnedBySource(Exception):
    """A discovered service can only be changed at its source (its container's labels)."""

    def __init__(self, name: str, source: str):
        super().__init__(f"service '{name}' comes from {source} discovery; change its labels instead")
        self.name, self.source = name, source


def tunnel_plan(config: Config) -> dict[str, str] | None:
    """Topology A's tunnel addresses ("prefix", "home", "vps"); None in topology C."""
    return address_plan(config.tunnel_prefix) if config.topology == "a" else None


class DiscoverySource(Protocol):
    """A discovery source as the plane sees it (Docker's `DockerWatcher`)."""

    def status(self) -> DiscoveryStatus: ...


class PlaneHandle:
    """The plane's entry points for collaborators built before it.

    The plane reads the edge link's and discovery's status, so they are built first; the
    edge link reports the VPS Envoy's verdicts to the plane and discovery hands it the
    desired state. They are given this handle's methods, and `ControlPlane(...,
    handle=...)` binds the handle to the plane it constructs (once)."""

    def __init__(self) -> None:
        self._plane: ControlPlane | None = None

    @property
    def bound(self) -> bool:
        return self._plane is not None

    def bind(self, plane: ControlPlane) -> None:
        if self._plane is not None and self._plane is not plane:
            raise RuntimeError("this PlaneHandle is bound to another control plane already")
        self._plane = plane

    def _bound(self) -> ControlPlane:
        if self._plane is None:
            raise RuntimeError("PlaneHandle used before its ControlPlane was constructed")
        return self._plane

    def edge_verdict(self, node_id: str, type_url: str, version: str, message: str | None, acked: str) -> None:
        """The edge link's `on_verdict`: an ACK or NACK of the VPS Envoy."""
        self._bound().on_envoy_verdict(node_id, type_url, version, message, key=ROLE_EDGE, acked_version=acked)

    def sync_discovered(self, source: str, desired: list, reason: str = "") -> bool:
        return self._bound().sync_discovered(source, desired, reason)

    def set_docker_networks(self, networks: list[DockerNetwork]) -> None:
        self._bound().set_docker_networks(networks)

    def discovered(self, source: str) -> Callable[[str, list], None]:
        """`sync(reason, desired)` for the discovery source named `source`."""

        def sync(reason: str, desired: list) -> None:
            self.sync_discovered(source, desired, reason)

        return sync


def edge_limits(config: Config) -> EdgeLimits:
    """The edge listener's bounds on hostile clients, from the `edge.*` settings."""
    return EdgeLimits(
        max_connections=config.edge_max_connections,
        request_headers_timeout_ms=int(config.edge_request_headers_timeout * 1000),
        idle_timeout_ms=int(config.edge_idle_timeout * 1000),
        stream_idle_timeout_ms=int(config.edge_stream_idle_timeout * 1000),
        http2_max_concurrent_streams=config.edge_http2_max_concurrent_streams,
        http2_initial_stream_window=config.edge_http2_initial_stream_window,
        http2_initial_connection_window=config.edge_http2_initial_connection_window,
    )


class ControlPlane:
    """`config` decides what is built; every collaborator the plane does not build itself
    is a constructor argument, `None` where the setup has none:

    - `registry`: the desired state (default: the SQLite registry at `config.db_path`);
    - `host_networks`: who counts as the LAN for vpn-only (default: read from the host);
    - `cache`: the snapshot cache the xDS server and the edge link serve (default: a new
      one; pass one to build an edge link on it first);
    - `handle`: the handle the collaborators built before the plane call it through;
      bound to this plane here;
    - `dns`: the DNS controller that keeps Unbound's zones equal to the served domains
      (`dns.enabled`), else None;
    - `edge_link`, `link_listener`: topology A's edge link server (on `cache`) and the
      listener that serves it on the tunnel address, else None;
    - `tunnel`: topology A's tunnel monitor, else None;
    - `discovery`: the discovery sources by name (Docker), each with a `status()`.

    The plane reads these (status, problems, DNS domains); starting and stopping them is
    the daemon's."""

    def __init__(
        self,
        config: Config,
        registry: Registry | None = None,
        host_networks: HostNetworks | None = None,
        *,
        cache: SnapshotCache | None = None,
        handle: PlaneHandle | None = None,
        dns: DnsController | None = None,
        edge_link: EdgeLinkServer | None = None,
        link_listener: LinkListener | None = None,
        tunnel: TunnelMonitor | None = None,
        discovery: Mapping[str, DiscoverySource] | None = None,
    ):
        self.config = config
        self.tunnel_plan = tunnel_plan(config)
        self.cache = cache if cache is not None else SnapshotCache()
        if handle is not None and handle.bound:
            raise RuntimeError("this PlaneHandle is bound to another control plane already")
        if edge_link is not None:
            if self.tunnel_plan is None:
                raise ValueError("an edge link needs topology 'a'")
            if edge_link.cache is not self.cache:
                raise ValueError("the edge link must serve the control plane's snapshot cache (pass it as `cache`)")
        if link_listener is not None and link_listener.servicer is not edge_link:
            raise ValueError("the link listener must serve the control plane's edge link")
        self.dns = dns
        self.edge_link = edge_link
        self.link_listener = link_listener
        self.tunnel = tunnel
        self.discovery: Mapping[str, DiscoverySource] = dict(discovery or {})
        self.registry = registry or Registry(config.db_path)
        # problems with the configuration that do not stop the daemon (shown in status)
        self.config_problems: list[str] = []
        # who counts as the LAN for vpn-only: the configured networks (or home's
        # default-route networks), never the tunnel prefix or one of home's Docker networks
        self.host_networks = host_networks if host_networks is not None else HostNetworks.read()
        self.docker_networks: tuple[DockerNetwork, ...] = ()
        self.access_problems: list[str] = []
        self.translations = TranslationCache(access=self._home_access())
        # topology A: the edge role's translation (its own cache: other settings)
        self.edge_translations = (
            TranslationCache(
                edge=EdgeSettings(
                    http_port=config.edge_http_port,
                    addresses=tuple(config.edge_addresses) or ("0.0.0.0",),
                    access_log_path=str(config.edge_access_log),
                    home_tunnel_address=self.tunnel_plan["home"],
                    home_tunnel_port=config.home_tunnel_port,
                    health_interval_ms=int(config.edge_health_interval * 1000),
                    limits=edge_limits(config),
                )
            )
            if self.tunnel_plan
            else None
        )
        self.status = StatusTracker(
            on_nack=self._record_nack, on_connect=self._record_connect, forget_after=config.xds_forget_after
        )
        # Envoy's verdicts per node role: what home's Envoy rejects is held back from every
        # role (the VPS reaches a service through home's Envoy); what the VPS Envoy rejects,
        # or anything that speaks as it on the edge's socket, only from the edge's set
        self.verdicts = Verdicts()
        self.edge_verdicts = Verdicts(rejected_text=EDGE_REJECTED)
        # recent snapshots per key, to tell which services a NACKed version changed
        self.history: dict[str, collections.deque] = {}
        # nodes that ACKed our configuration before (they always get in, even at the stream limit)
        self.known_nodes: set[str] = {n["node_id"] for n in self.registry.nodes()}
        self._acked_this_run: set[str] = set()
        self.ads = AdsServer(
            self.cache,
            callbacks=[self.status, _VerdictCallbacks(self)],
            max_streams=config.xds_max_streams,
            known=self.known_nodes.__contains__,
            first_request_timeout=config.xds_first_request_timeout,
        )
        self.started_at = time.time()
        self._lock = threading.Lock()
        # a registry older or smaller than it last was is not pushed (every site would
        # lose its routes): Envoy keeps what it has until the operator restores or accepts
        self.registry_problem = self.registry.integrity_problem()
        if self.registry_problem and config.accept_registry:
            log.warning("accepting the registry as it is (--accept-registry): %s", self.registry_problem)
            self.registry_problem = None
        if self.registry_problem:
            log.error(
                "NOT SERVING the registry: %s. Restore it from a backup (docs/operations.md) or start "
                "with --accept-registry to serve it as it is",
                self.registry_problem,
            )
            self.registry.event("registry.refused", "", self.registry_problem)
        else:
            self.registry.accept_as_is()
        self.last_reconcile: ReconcileStatus | None = None
        # which snapshot variants to build: False = state of the world, True = delta (VHDS).
        # A variant is built once a node of that kind has connected (so a home with one
        # delta Envoy never pays for the SotW route configuration, and vice versa).
        self.variants: set[bool] = set()
        self._reconciles = 0
        self._gc_timer: threading.Timer | None = None
        self.home_settings = HomeSettings(
            http_address=config.home_http_address,
            http_port=config.home_http_port,
            access_log_path=str(config.access_log_path),
            tunnel=TunnelSettings(
                home_address=self.tunnel_plan["home"], port=config.home_tunnel_port, edge_ip=self.tunnel_plan["vps"]
            )
            if self.tunnel_plan
            else None,
        )
        if handle is not None:
            handle.bind(self)  # last: nothing calls a half-built plane

    # -- desired state ----------------------------------------------------------
    def list_services(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.registry.services()]

    def get_service(self, name: str) -> dict[str, Any]:
        state = self.registry.get(name)
        if state is None:
            raise NotFound(name)
        return state.to_json()

    def add_service(self, data: Any) -> dict[str, Any]:
        return self.add_services([data], batch=False)[0]

    def _writable(self) -> None:
        if self.registry_problem:
            raise RegistryRefused(
                f"no changes while the registry is not served: {self.registry_problem}; restore "
                "it from a backup or restart with --accept-registry (docs/operations.md)"
            )

    def add_services(self, items: list, batch: bool = True) -> list[dict[str, Any]]:
        """Validate every item first, then add all in one transaction and push once."""
        self._writable()
        specs = []
        seen: set[str] = set()
        for i, data in enumerate(items):
            try:
                spec = parse_service(data)
                if spec.source != "manual":
                    raise InputError(
                        "source",
                        f"'{spec.source}' services are created by {spec.source} discovery, "
                        "not through the API; leave 'source' out (manual)",
                    )
                if spec.name in seen:
                    raise InputError("name", f"'{spec.name}' appears twice in this request")
                self._check_zones(spec)
            except InputError as exc:
                if not batch:
                    raise
                raise InputError(f"[{i}].{exc.field}", exc.message) from None
            seen.add(spec.name)
            specs.append(spec)
        try:
            self.registry.add_many(specs)
        except KeyError as exc:
            raise Conflict(exc.args[0]) from None
        what = specs[0].name if len(specs) == 1 else f"{len(specs)} services"
        self.reconcile(reason=f"{what} added")
        return [self.get_service(s.name) for s in specs]

    def _manual(self, name: str):
        state = self.registry.get(name)
        if state is None:
            raise NotFound(name)
        if state.source != "manual":
            raise OwnedBySource(name, state.source)
        return state

    def update_service(self, name: str, changes: Any, replace: bool = False) -> dict[str, Any]:
        """PATCH semantics, or with `replace` PUT semantics: `changes` is the whole service."""
        self._writable()
        state = self._manual(name)
        if replace:
            if isinstance(changes, dict) and changes.get("name", name) != name:
                raise InputError("name", "does not match the service in the URL")
            spec: ServiceSpec = parse_service(changes, name=name)
        elif state.spec is None:
            raise InputError(
                "body",
                f"the stored desired state of '{name}' cannot be read, so it cannot be "
                "changed field by field: replace it whole (PUT) or remove it and add it again",
            )
        else:
            spec = merge_update(state.spec, changes)
        if spec.source != state.source:
            raise InputError("source", f"a {state.source} service stays {state.source}")
        self._check_zones(spec)
        self.registry.update(spec)
        self.reconcile(reason=f"service {name} updated")
        return self.get_service(name)

    def preview_service(self, name: str, data: Any) -> dict[str, Any]:
        """The manual service `data` (PUT semantics) as it would be stored, normalized;
        nothing is stored. Bad input raises InputError as a real change would."""
        if isinstance(data, dict) and data.get("name", name) != name:
            raise InputError("name", "does not match the service in the URL")
        spec = parse_service(data, name=name)
        if spec.source != "manual":
            raise InputError(
                "source",
                f"'{spec.source}' services are created by {spec.source} discovery, "
                "not through the API; leave 'source' out (manual)",
            )
        self._check_zones(spec)
        return spec.to_json()

    def _check_zones(self, spec: ServiceSpec) -> None:
        """A manual service may only name the installation's domains (`domains`)."""
        for i, domain in enumerate(spec.domains):
            problem = zones_problem(domain, self.config.domains)
            if problem:
                raise InputError(f"domains[{i}]", problem)

    def remove_service(self, name: str) -> None:
        self._writable()
        self._manual(name)
        if not self.registry.remove(name):
            raise NotFound(name)
        self.reconcile(reason=f"service {name} removed")

    # -- who may use vpn-only ------------------------------------------------------
    def _home_access(self) -> HomeAccess:
        """vpn-only's networks from the configuration and what home's network looks like;
        `access_problems` names every entry that is refused."""
        cfg, host = self.config, self.host_networks
        docker = list(host.bridges) + local_docker_networks(self.docker_networks, host.local_addresses)
        networks, self.access_problems = vpn_only_networks(
            cfg.lan_cidrs,
            cfg.vpn_cidrs,
            default_lan=host.default_lan,
            tunnel_prefix=self.tunnel_plan["prefix"] if self.tunnel_plan else None,
            docker_networks=_unique(docker),
        )
        loopback_listed = any(ipaddress.ip_network(n).is_loopback for n in networks)
        return HomeAccess(
            networks=networks,
            edge_ip=self.tunnel_plan["vps"] if self.tunnel_plan else None,
            denied=() if loopback_listed else host.own_addresses(),
        )

    def set_docker_networks(self, networks: list[DockerNetwork]) -> None:
        """Docker discovery hands over dockerd's networks; vpn-only is re-judged when they
        change (a new network that overlaps a LAN entry refuses that entry at once)."""
        ordered = tuple(sorted(networks, key=lambda n: (n.name, n.subnet)))
        if ordered == self.docker_networks:
            return
        host = HostNetworks.read()  # a new network brings a new bridge address on home
        with self._lock:
            self.docker_networks = ordered
            self.host_networks = host
            access = self._home_access()
            if access != self.translations.access:
                self.translations = TranslationCache(access=access)
            else:
                return
        for problem in self.access_problems:
            log.warning("vpn-only: %s", problem)
        self.reconcile(reason="docker networks")

    def sync_discovered(self, source: str, desired: list, reason: str = "") -> bool:
        """Discovery hands over the complete desired state of its source."""
        if self.registry_problem:
            return False  # discovery resyncs once the registry is served again
        changed, skipped = self.registry.sync_source(source, desired)
        for name in skipped:
            log.warning(
                "%s: service name '%s' is taken by a service from another source; set envoyage.name on the container",
                source,
                name,
            )
        if changed:
            self.reconcile(reason=f"{source}: {reason}" if reason else source)
        return bool(changed)

    # -- the spine ----------------------------------------------------------------
    def reconcile(self, reason: str = "") -> ReconcileStatus:
        """Rebuild the home snapshot from the registry and hand it to the cache."""
        if self.registry_problem:
            self.last_reconcile = ReconcileStatus(
                ok=False, reason=reason, at=time.time(), error=f"registry not served: {self.registry_problem}"
            )
            return self.last_reconcile
        with self._lock:
            started = time.perf_counter()
            states = self.registry.services()
            withheld = self.verdicts.withheld(states)  # home's verdicts: for every role
            # the VPS Envoy's verdicts: from the edge's set only (shown with the service's problems)
            edge_only = {n: p for n, p in self.edge_verdicts.withheld(states).items() if n not in withheld}
            try:
                assembly = assemble_home(
                    states,
                    self.home_settings,
                    self.translations,
                    previous=self.cache.get_snapshot(ROLE_HOME),
                    previous_delta=self.cache.get_snapshot(DELTA_HOME),
                    sotw=False in self.variants,
                    delta=True in self.variants,
                    withheld=withheld,
                    zones=self.config.domains,
                )
                changed = False
                # home first (its Envoy is woken at once), then the edge's set
                built = [(ROLE_HOME, lambda: assembly.snapshot), (DELTA_HOME, lambda: assembly.delta_snapshot)]
                edge_translations = self.edge_translations
                if edge_translations is not None:
                    built.append(
                        (
                            ROLE_EDGE,
                            lambda: (
                                assemble_edge(
                                    states,
                                    edge_translations,
                                    previous=self.cache.get_snapshot(ROLE_EDGE),
                                    withheld={**withheld, **edge_only},
                                    zones=self.config.domains,
                                ).snapshot
                            ),
                        )
                    )
                for key, make in built:
                    snap = make()
                    if snap is not None and self.cache.set_snapshot(key, snap):
                        changed = True
                        self.history.setdefault(key, collections.deque(maxlen=HISTORY)).append(snap)
                    self.verdicts.under_test(key, self.cache.get_snapshot(key))
                    self.edge_verdicts.under_test(key, self.cache.get_snapshot(key))
            except InconsistentSnapshot as exc:
                # An invariant failed: a bug. Keep serving the last good snapshot.
                log.error("snapshot refused (%s); the last good snapshot keeps serving: %s", reason, exc)
                self.registry.event("snapshot.refused", ROLE_HOME, str(exc))
                self.last_reconcile = ReconcileStatus(ok=False, reason=reason, at=time.time(), error=str(exc))
                return self.last_reconcile
            if self.dns is not None:
                served = set(assembly.served)
                self.dns.set_domains(
                    d for st in states if st.name in served and st.spec is not None for d in st.spec.domains
                )
            service_problems = assembly.problems
            if edge_only:
                service_problems = dict(service_problems)
                for name, problem in edge_only.items():
                    service_problems[name] = list(service_problems.get(name, [])) + [problem]
            for name, problems in self.registry.set_problems(service_problems):
                if problems:
                    log.warning("service %s: %s", name, "; ".join(problems))
                else:
                    log.info("service %s: problems resolved", name)
            elapsed = (time.perf_counter() - started) * 1000
            self.last_reconcile = ReconcileStatus(
                ok=True,
                reason=reason,
                at=time.time(),
                changed=changed,
                served=len(assembly.served),
                versions={key: _versions(self.cache.get_snapshot(key)) for key in self.cache.keys()},
                build_ms=round(elapsed, 2),
            )
            if changed:
                log.info(
                    "snapshot pushed (%s): %d services, %.1f ms", reason or "startup", len(assembly.served), elapsed
                )
            self._settle_gc(big=elapsed > 100)
            return self.last_reconcile

    def _settle_gc(self, big: bool) -> None:
        """Keep the cyclic GC off the request path.

        With thousands of services the state is hundreds of thousands of long-lived
        objects; a full collection walks them all (tens of ms, at random moments). They
        are frozen after each reconcile. A real collection, which also frees cyclic
        garbage frozen in between, runs every 100 reconciles, and a second after a big
        change (a batch of thousands leaves much of it) so it does not compete with the
        push of that change."""
        self._reconciles += 1
        if self._reconciles % 100 == 0:
            self._collect()
        elif big and self._gc_timer is None:
            self._gc_timer = threading.Timer(1.0, self._collect)
            self._gc_timer.daemon = True
            self._gc_timer.start()
        gc.freeze()

    def _collect(self) -> None:
        # No lock needed: the gc calls are atomic under the interpreter lock, and a
        # reconcile freezing in between only keeps a few objects out of this pass.
        self._gc_timer = None
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    # -- status ---------------------------------------------------------------------
    def status_report(self) -> StatusReport:
        """What `GET /v1/status` and `envoyage status` show (`.to_json()` for the JSON)."""
        services = self.registry.services()
        return StatusReport(
            version=__version__,
            started_at=self.started_at,
            config=dump_config(self.config),
            services=ServiceCounts(total=len(services), with_problems=sum(1 for s in services if s.problems)),
            snapshots={key: _versions(self.cache.get_snapshot(key)) for key in self.cache.keys()},
            last_reconcile=self.last_reconcile,
            registry=RegistryStatus(
                path=str(self.registry.path), generation=self.registry.generation(), problem=self.registry_problem
            ),
            xds=XdsStatus(
                streams=self.ads.stream_count(),
                max_streams=self.ads.max_streams,
                refused=self.ads.refused,
                evicted=self.ads.evicted,
            ),
            nodes=self.status.snapshot(),
            discovery={name: d.status() for name, d in self.discovery.items()},
            known_nodes=self.registry.nodes(),
            topology=self.config.topology,
            tunnel=self.tunnel.status() if self.tunnel is not None else None,
            edge=self.edge_link.status() if self.edge_link is not None else None,
            dns=self.dns.status() if self.dns is not None else None,
            problems=self.problems(),
        )

    def problems(self) -> list[str]:
        """Everything wrong that is not a single service's problem, in sentences."""
        out = list(self.config_problems) + list(self.access_problems)
        if self.dns is not None:
            dns = self.dns.status()
            if dns.error:
                since = time.strftime("%H:%M:%S", time.localtime(dns.error_since))
                out.append(
                    f"dns: {dns.error} (since {since}; LAN clients get the last applied answers, HTTP is not affected)"
                )
            for name in dns.foreign:
                out.append(
                    f"dns: Unbound already has a zone {name} from its own configuration; LAN clients get "
                    "that zone's answers (remove it from Unbound's configuration to let Envoyage answer it)"
                )
        if self.tunnel is not None:
            problem = self.tunnel.status().problem
            if problem:
                out.append(f"tunnel: {problem}")
        if self.edge_link is not None:
            if self.link_listener is not None and self.link_listener.problem:
                out.append(f"edge link: {self.link_listener.problem}")
            out += _edge_problems(self.edge_link.status())
        return out

    def _record_nack(self, node_id: str, type_short: str, version: str, message: str) -> None:
        self.registry.event("xds.nack", node_id, f"{type_short} {version}: {message}")

    # -- Envoy's verdict per service ---------------------------------------------------
    def _snapshot_at(self, key: str, type_url: str, version: str):
        for snap in reversed(list(self.history.get(key, ()))):
            if snap.version(type_url) == version:
                return snap
        return None

    def on_envoy_verdict(
        self,
        node_id: str,
        type_url: str,
        version: str,
        message: str | None,
        key: str | None = None,
        acked_version: str = "",
    ) -> None:
        """An ACK (message None) or NACK from a node: drop the service(s) Envoy rejects.
        A home Envoy's snapshot key and last ACK come from the status tracker; the VPS
        Envoy's come with the edge's report (`key` "edge")."""
        if key is None:
            key, acked_version = self.status.acked(node_id, type_url)
        if not key:
            return
        states = {s.name: s for s in self.registry.services()}
        verdicts = self.edge_verdicts if key == ROLE_EDGE else self.verdicts
        if message is None:
            outcome = verdicts.on_ack(node_id, key, type_url, version, states)
        else:
            rejected = self._snapshot_at(key, type_url, version)
            if rejected is None:
                return  # not a snapshot this control plane built: nothing to attribute
            acked = self._snapshot_at(key, type_url, acked_version) if acked_version else None
            outcome = verdicts.on_nack(
                node_id, key, type_url, version, message, services_in_change(type_url, rejected, acked), states
            )
        if outcome:
            log.warning(
                "envoy %s %s %s: %s", node_id, "NACKed" if message is not None else "ACKed", T.short(type_url), outcome
            )
            self.registry.event("xds.verdict", node_id, f"{T.short(type_url)}: {outcome}")
            self.reconcile(reason=f"Envoy's verdict: {outcome}")

    def _record_ack(self, node_id: str) -> None:
        """A node that ACKs our configuration is one of ours: registered (once), and
        always admitted, even at the stream limit. A stream that only connects is not."""
        if node_id not in self._acked_this_run:
            self._acked_this_run.add(node_id)
            self.registry.touch_node(
                node_id, self.status.role(node_id) or ROLE_HOME
            )  # registered, or last_seen updated
            self.known_nodes.add(node_id)

    def _record_connect(self, node_id: str, role: str, delta: bool) -> None:
        if delta not in self.variants:
            self.variants.add(delta)
            self.reconcile(reason=f"first {'delta' if delta else 'state-of-the-world'} node ({node_id})")


# snapshots kept per key for NACK attribution (the rejected one and the one last ACKed;
# Envoy answers each push, so they are the newest few). Each state-of-the-world snapshot
# holds its own route configuration with every host, so a long history is memory: at
# 5,000 services 16 of them held ~11 MB each. An ACKed version that fell out of the
# history only widens the search (every changed service is a suspect, then bisected).
HISTORY = 4


class _VerdictCallbacks(BaseCallbacks):
    def __init__(self, plane: ControlPlane):
        self.plane = plane

    def on_ack(self, stream_id, node_id, type_url, version):
        self.plane._record_ack(node_id)
        if self.plane.verdicts.bisecting():
            self.plane.on_envoy_verdict(node_id, type_url, version, None)

    def on_nack(self, stream_id, node_id, type_url, version, message):
        self.plane.on_envoy_verdict(node_id, type_url, version, message)


def _edge_problems(st: EdgeLinkStatus) -> list[str]:
    """The edge link's and the VPS Envoy's problems, in sentences."""
    out = []
    if st.key_problem:
        out.append(f"edge link: {st.key_problem}")
    if not st.connected:
        since = f" since {time.strftime('%H:%M:%S', time.localtime(st.disconnected_at))}" if st.disconnected_at else ""
        out.append(f"edge: no edge connected{since}; the VPS serves its last configuration (or nothing)")
        refused, last = st.edge_refused_home, st.last_refused
        if refused:
            out.append(f"edge link: the edge {refused.edge_id!r} refused this control plane: {refused.reason}")
        elif last and last.at >= st.disconnected_at and not st.key_problem:
            out.append(f"edge link: refused {last.peer}: {last.why}")
    elif st.apply_error:
        out.append(f"edge: the edge refused resource set {st.applied_version or '?'}: {st.apply_error}")
    else:
        for problem in st.apply_problems:
            out.append(f"edge: the edge {st.edge_id!r} took resource set {st.applied_version} but {problem}")
    for node in st.envoy:
        for tname, t in node.types.items():
            if t.error and t.nacked_version and t.nacked_version != t.acked_version:
                out.append(f"edge: Envoy {node.node_id} rejected {tname} {t.nacked_version}: {t.error}")
    return out


def _versions(snap) -> dict[str, str]:
    """{"cds": version, ...} for the types a snapshot has."""
    if snap is None:
        return {}
    return {T.short(t): v for t, v in snap.versions.items() if snap.get(t) or t != T.VHOST}
