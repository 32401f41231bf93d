"""`envoyage control`: run the xDS server and the control API until SIGTERM/SIGINT."""

from __future__ import annotations

import grp
import ipaddress
import logging
import os
import threading
from typing import TYPE_CHECKING

from waitress.server import create_server

from ..config import Config
from ..process import (
    AlreadyRunning,
    limit_malloc_arenas,
    own_directory,
    prepare_socket,
    socket_server,
    stop_within,
    wait_for_termination,
)
from ..xds.cache import SnapshotCache
from ..xds.server import serve
from .api import ApiServer, create_app
from .plane import ControlPlane, PlaneHandle, tunnel_plan

if TYPE_CHECKING:
    import grpc

    from ..discovery.docker_watch import DockerWatcher
    from ..dns.controller import DnsController
    from ..link.server import EdgeLinkServer, LinkListener
    from .tunnel import TunnelMonitor

log = logging.getLogger("envoyage.control")


# the control API's server (waitress): request threads, open connections, seconds a
# connection may stay idle or trickle, and the largest body (batches of 10,000 services)
API_THREADS = 4
API_CONNECTIONS = 100
API_IDLE_TIMEOUT = 30
API_MAX_BODY = 16 * 1024 * 1024


def _group_id(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise OSError(f"xds.socket_group: there is no group named {group!r}") from None


class ControlDaemon:
    """The running control plane: gRPC xDS server + control API on a Unix socket.

    The constructor builds every part (nothing listens or runs yet): the DNS controller,
    topology A's edge link, listener and tunnel monitor, Docker discovery, and the
    `ControlPlane` that is handed all of them. `start()` starts them, `stop()` stops them."""

    def __init__(self, config: Config):
        self.config = config
        # the state and run directories hold the registry and the sockets: only the
        # service user may write there; the log directory may be shared with Envoy's group
        own_directory(config.state_dir, 0o700, group_write=False)
        own_directory(config.run_dir, 0o755, group_write=False)
        own_directory(config.log_dir, 0o755, group_write=True)
        os.chmod(config.state_dir, 0o700)
        cache = SnapshotCache()
        handle = PlaneHandle()
        self.dns = self._dns() if config.dns_enabled else None
        plan = tunnel_plan(config)
        edge_link: EdgeLinkServer | None = None
        self.link_listener: LinkListener | None = None
        tunnel: TunnelMonitor | None = None
        if plan is not None:
            edge_link, self.link_listener, tunnel = self._link(cache, handle, plan)
        self.discovery = self._discovery(handle) if config.docker_enabled else {}
        self.plane = ControlPlane(
            config,
            cache=cache,
            handle=handle,
            dns=self.dns,
            edge_link=edge_link,
            link_listener=self.link_listener,
            tunnel=tunnel,
            discovery=self.discovery,
        )
        self.grpc_server: grpc.Server | None = None
        self.http_server: ApiServer | None = None
        self.xds_port = 0
        self._stopped = threading.Event()

    def start(self) -> None:
        sock = self.config.socket_path
        prepare_socket(sock)
        self._check_exposure()
        if self.dns is not None:
            self.config.dns_include_file.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            self.dns.start()
            log.info(
                "dns: keeping Unbound's local zones (%s) equal to the service domains", self.config.dns_include_file
            )
        self.plane.reconcile(reason="startup")
        self._serve_xds()
        if self.link_listener is not None:
            self.link_listener.start()
        # waitress: one event loop for every connection and a bounded pool of worker
        # threads for requests, with timeouts, so slow or idle clients hold no thread.
        # The socket is 0600: the control API is root's (or the service user's).
        self.http_server = ApiServer(
            socket_server(
                sock,
                0o600,
                None,
                lambda bind_path: create_server(
                    create_app(self.plane),
                    unix_socket=str(bind_path),
                    unix_socket_perms="600",
                    threads=API_THREADS,
                    connection_limit=API_CONNECTIONS,
                    channel_timeout=API_IDLE_TIMEOUT,
                    cleanup_interval=5,
                    max_request_body_size=API_MAX_BODY,
                    ident="envoyage",
                    clear_untrusted_proxy_headers=True,
                ),
                discard=lambda server: server.close(),
            )
        )
        self.http_server.start()
        log.info("control API listening on %s", sock)
        for source in self.discovery.values():
            source.start()

    def _check_exposure(self) -> None:
        """No ADS on the tunnel address (docs/architecture.md, "Sockets and ports"): in topology A the
        xDS server must not listen on a wildcard or on home's tunnel address."""
        cfg = self.config
        if self.plane.tunnel_plan is None or cfg.xds_transport != "tcp":
            return
        try:
            loopback = ipaddress.ip_address(cfg.xds_address).is_loopback
        except ValueError:
            loopback = False  # a host name could resolve to anything
        if not loopback:
            raise OSError(
                f"xds.address {cfg.xds_address} is not a loopback address, so xDS could be reached over "
                "the tunnel; with topology 'a' use the Unix socket (the default) or 127.0.0.1"
            )

    def _dns(self) -> DnsController:
        from ..dns.controller import DnsController
        from ..dns.unbound import UnboundControl

        cfg = self.config
        if not cfg.dns_answer_address:
            raise OSError(
                "dns.enabled needs dns.answer_address: this home's LAN address, the answer LAN "
                "clients get for every service domain"
            )
        return DnsController(
            UnboundControl(str(cfg.dns_unbound_config), cfg.dns_unbound_control),
            cfg.dns_include_file,
            cfg.dns_answer_address,
            cfg.dns_answer_address6 or None,
            cfg.dns_ttl,
        )

    def _link(
        self, cache: SnapshotCache, handle: PlaneHandle, plan: dict[str, str]
    ) -> tuple[EdgeLinkServer, LinkListener, TunnelMonitor]:
        """Topology A: the edge link server on `cache`, its listener on home's tunnel
        address, and the tunnel monitor (which adds the link's round trip)."""
        from ..link.server import EdgeLinkServer, LinkListener
        from .tunnel import TunnelMonitor

        servicer = EdgeLinkServer(
            cache, "edge", self.config.link_key_path, edge_ip=plan["vps"], on_verdict=handle.edge_verdict
        )
        listener = LinkListener(servicer, plan["home"], self.config.link_port)
        tunnel = TunnelMonitor(
            self.config.tunnel_interface,
            rtt=lambda: servicer.status().rtt_ms,
            status_file=self.config.tunnel_status_path,
        )
        return servicer, listener, tunnel

    def _discovery(self, handle: PlaneHandle) -> dict[str, DockerWatcher]:
        """The discovery sources by name: Docker's."""
        from ..discovery.docker_watch import SOURCE, DockerWatcher

        cfg = self.config
        return {
            SOURCE: DockerWatcher(
                handle.discovered(SOURCE),
                docker_host=cfg.docker_host,
                mesh=cfg.docker_mesh,
                scope=cfg.docker_scope,
                default_domain=cfg.docker_default_domain,
                on_networks=handle.set_docker_networks,
                trust_image_labels=cfg.discovery_trust_image_labels,
            )
        }

    def _serve_xds(self) -> None:
        cfg = self.config
        keepalive, keepalive_timeout = cfg.xds_keepalive, cfg.xds_keepalive_timeout
        if cfg.xds_transport == "tcp":
            self.grpc_server, self.xds_port = serve(
                self.plane.ads, cfg.xds_address, cfg.xds_port, keepalive=keepalive, keepalive_timeout=keepalive_timeout
            )
            log.info(
                "xDS (ADS, SotW and delta) listening on %s:%d (TCP: any local user can connect)",
                cfg.xds_address,
                self.xds_port,
            )
            return
        path = cfg.xds_socket_path
        gid = _group_id(cfg.xds_socket_group) if cfg.xds_socket_group else os.getgid()
        prepare_socket(path)
        self.grpc_server = socket_server(
            path,
            0o660,
            gid,
            lambda bind_path: serve(
                self.plane.ads, f"unix:{bind_path}", keepalive=keepalive, keepalive_timeout=keepalive_timeout
            ),
            discard=lambda served: served[0].stop(0),
        )[0]
        log.info("xDS (ADS, SotW and delta) listening on %s (mode 0660, group %s)", path, gid)

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("shutting down")
        for source in self.discovery.values():
            source.stop()
        if self.http_server is not None:
            log.debug("stopping the control API")
            self.http_server.stop()
            try:
                self.config.socket_path.unlink()
            except FileNotFoundError:
                pass
        self.plane.ads.stopping.set()
        if self.dns is not None:
            self.dns.stop()
        if self.link_listener is not None:
            log.debug("stopping the edge link")
            self.link_listener.stop()
        if self.grpc_server is not None:
            log.debug("stopping the xDS server")
            self.grpc_server.stop(grace=0.5).wait(5)
            if self.config.xds_transport == "unix":
                try:
                    self.config.xds_socket_path.unlink()
                except FileNotFoundError:
                    pass
        log.debug("checkpointing and closing the registry")
        self.plane.registry.close()
        log.info("stopped")

    def wait(self) -> None:
        self._stopped.wait()


def run(config: Config) -> int:
    limit_malloc_arenas()
    logging.getLogger("waitress").setLevel(logging.WARNING)
    try:
        daemon = ControlDaemon(config)
    except OSError as exc:
        log.error("%s", exc)
        return 1
    try:
        daemon.start()
    except (AlreadyRunning, OSError) as exc:
        log.error("%s", exc)
        daemon.stop()
        return 1
    wait_for_termination()
    stop_within(daemon.stop, SHUTDOWN_TIMEOUT)
    return 0


SHUTDOWN_TIMEOUT = 10.0
