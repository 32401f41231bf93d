"""`envoyage control`: run the xDS server and the control API until SIGTERM/SIGINT."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import signal
import socket
import stat
import threading
from pathlib import Path

from waitress.server import create_server

from ..config import Config
from ..xds.server import limit_malloc_arenas, serve
from .api import create_app
from .plane import ControlPlane

log = logging.getLogger("envoyage.control")


class AlreadyRunning(RuntimeError):
    pass


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


def _socket_server(path: Path, mode: int, gid: int | None, create):
    """Run `create` (which binds a Unix socket at `path`) under umask 0177, so there is
    no moment in which anyone else may connect, then give the socket its group and mode."""
    old = os.umask(0o177)
    try:
        server = create()
    finally:
        os.umask(old)
    if gid is not None:
        os.chown(path, -1, gid)
    os.chmod(path, mode)
    return server


class UnsafeDirectory(OSError):
    pass


def own_directory(path: Path, mode: int, group_write: bool) -> None:
    """Create `path` (mode `mode`) or check that the existing one is safe to use: a real
    directory (not a symlink), owned by this user, and not writable by others (nor by its
    group unless `group_write`). Another user who could write there could replace a
    socket or move the registry's files away."""
    try:
        path.mkdir(mode=mode, parents=True)
        os.chmod(path, mode)  # whatever the umask
        return
    except FileExistsError:
        pass
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeDirectory(f"refusing to use {path}: it is a symbolic link (to {os.readlink(path)}); "
                              "point the setting at the real directory")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"refusing to use {path}: it is not a directory")
    if st.st_uid != os.geteuid():
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        raise UnsafeDirectory(f"refusing to use {path}: it is owned by {owner}, not by the user running "
                              f"envoyage ({pwd.getpwuid(os.geteuid()).pw_name}); chown it or remove it")
    writable = stat.S_IWOTH | (0 if group_write else stat.S_IWGRP)
    if st.st_mode & writable:
        who = "everyone" if st.st_mode & stat.S_IWOTH else "its group"
        raise UnsafeDirectory(f"refusing to use {path}: it is writable by {who} (mode "
                              f"{stat.S_IMODE(st.st_mode):04o}); chmod {'go-w' if not group_write else 'o-w'} it")


def _prepare_socket(path: Path) -> None:
    """Make room for a socket at `path`: a stale socket of a crashed run is removed, a
    live one means another control plane, and anything that is not a socket is left
    alone (a misconfigured path never deletes a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket; refusing to replace it (move it away or "
                      "choose another path)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # stale socket from a crashed run
    else:
        raise AlreadyRunning(f"another control plane is serving {path}")
    finally:
        probe.close()


class ControlDaemon:
    """The running control plane: gRPC xDS server + control API on a Unix socket."""

    def __init__(self, config: Config):
        self.config = config
        # the state and run directories hold the registry and the sockets: only the
        # service user may write there; the log directory may be shared with Envoy's group
        own_directory(config.state_dir, 0o700, group_write=False)
        own_directory(config.run_dir, 0o755, group_write=False)
        own_directory(config.log_dir, 0o755, group_write=True)
        os.chmod(config.state_dir, 0o700)
        self.plane = ControlPlane(config)
        self.grpc_server = None
        self.http_server = None
        self.watcher = None
        self.xds_port = 0
        self._stopped = threading.Event()

    def start(self) -> None:
        sock = self.config.socket_path
        _prepare_socket(sock)
        self._check_exposure()
        self.plane.reconcile(reason="startup")
        self._serve_xds()
        if self.plane.tunnel_plan is not None:
            self._serve_link()
        # waitress: one event loop for every connection and a bounded pool of worker
        # threads for requests, with timeouts, so slow or idle clients hold no thread.
        # The socket is 0600: the control API is root's (or the service user's).
        self.http_server = _socket_server(sock, 0o600, None, lambda: create_server(
            create_app(self.plane), unix_socket=str(sock), unix_socket_perms="600",
            threads=API_THREADS, connection_limit=API_CONNECTIONS, channel_timeout=API_IDLE_TIMEOUT,
            cleanup_interval=5, max_request_body_size=API_MAX_BODY, ident="envoyage",
            clear_untrusted_proxy_headers=True))
        threading.Thread(target=self.http_server.run, name="control-api", daemon=True).start()
        log.info("control API listening on %s", sock)
        if self.config.docker_enabled:
            from ..discovery.docker_watch import SOURCE, DockerWatcher

            self.watcher = DockerWatcher(
                lambda reason, desired: self.plane.sync_discovered(SOURCE, desired, reason),
                docker_host=self.config.docker_host, mesh=self.config.docker_mesh,
                scope=self.config.docker_scope)
            self.plane.discovery[SOURCE] = self.watcher
            self.watcher.start()

    def _check_exposure(self) -> None:
        """No ADS on the tunnel address (DESIGN.md security defaults): in topology A the
        xDS server must not listen on a wildcard or on home's tunnel address."""
        cfg = self.config
        if self.plane.tunnel_plan is None or cfg.xds_transport != "tcp":
            return
        if cfg.xds_address in ("0.0.0.0", "::", self.plane.tunnel_plan["home"]):
            raise OSError(f"xds.address {cfg.xds_address} would serve xDS on the tunnel address; with topology "
                          "'a' use the Unix socket (the default) or a loopback address")

    def _serve_link(self) -> None:
        from ..link.server import EdgeLinkServer, LinkListener
        from .tunnel import TunnelMonitor

        plan = self.plane.tunnel_plan
        servicer = EdgeLinkServer(self.plane.cache, "edge", self.config.link_secret_hash_path)
        self.plane.edge_link = servicer
        self.plane.link_listener = LinkListener(servicer, plan["home"], self.config.link_port)
        self.plane.link_listener.start()
        self.plane.tunnel = TunnelMonitor(self.config.tunnel_interface, rtt=lambda: servicer.status()["rtt_ms"])

    def _serve_xds(self) -> None:
        cfg = self.config
        options = dict(keepalive=cfg.xds_keepalive, keepalive_timeout=cfg.xds_keepalive_timeout)
        if cfg.xds_transport == "tcp":
            self.grpc_server, self.xds_port = serve(self.plane.ads, cfg.xds_address, cfg.xds_port, **options)
            log.info("xDS (ADS, SotW and delta) listening on %s:%d (TCP: any local user can connect)",
                     cfg.xds_address, self.xds_port)
            return
        path = cfg.xds_socket_path
        gid = _group_id(cfg.xds_socket_group) if cfg.xds_socket_group else os.getgid()
        _prepare_socket(path)
        self.grpc_server, _ = _socket_server(path, 0o660, gid,
                                             lambda: serve(self.plane.ads, f"unix:{path}", **options))
        log.info("xDS (ADS, SotW and delta) listening on %s (mode 0660, group %s)", path, gid)

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("shutting down")
        if self.watcher is not None:
            self.watcher.stop()
        if self.http_server is not None:
            log.debug("stopping the control API")
            self.http_server.close()
            try:
                self.config.socket_path.unlink()
            except FileNotFoundError:
                pass
        self.plane.ads.stopping.set()
        if self.plane.link_listener is not None:
            log.debug("stopping the edge link")
            self.plane.link_listener.stop()
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
    done = threading.Event()

    def _on_signal(signum, _frame):
        log.info("received %s", signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    done.wait()
    # a stop that hangs (a stuck client, a stuck disk) must not keep the process alive:
    # Envoy keeps its configuration anyway, and the registry's WAL is consistent as it is
    watchdog = threading.Timer(SHUTDOWN_TIMEOUT, _give_up_stopping)
    watchdog.daemon = True
    watchdog.start()
    daemon.stop()
    watchdog.cancel()
    return 0


SHUTDOWN_TIMEOUT = 10.0


def _give_up_stopping() -> None:
    log.error("shutting down took more than %.0f s; exiting now (the registry stays consistent)", SHUTDOWN_TIMEOUT)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(1)
