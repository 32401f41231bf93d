"""The `envoyage` command line.

The CLI never touches SQLite: it talks to the running control plane through the
control API, so every change is validated and pushed (docs/architecture.md, rule 2).
Exit codes: 0 ok, 1 the control plane refused or failed, 2 bad arguments,
3 the control plane is unreachable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from .. import __version__
from ..bootstrap import BootstrapError, bootstrap, connect_address
from ..config import ConfigError, load_config, load_edge_config
from ..module_utils._wireguard import WireGuardError
from ..status import StatusReport
from .client import ApiError, ControlClient, Unreachable

DEFAULT_CONFIG = "/etc/envoyage/control.yaml"
DEFAULT_EDGE_CONFIG = "/etc/envoyage/edge.yaml"
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def _config_path(args, default: str = DEFAULT_CONFIG) -> str | None:
    path = args.config or os.environ.get("ENVOYAGE_CONFIG")
    if path:
        return path
    return default if os.path.exists(default) else None


def _client(args) -> ControlClient:
    if args.socket:
        return ControlClient(args.socket)
    return ControlClient(str(load_config(_config_path(args)).socket_path))


def _service_body(args, partial: bool) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if not partial:
        body["name"] = args.name
    if args.domain:
        body["domains"] = [d for item in args.domain for d in item.split(",") if d]
    if args.upstream:
        body["upstreams"] = list(args.upstream)
    if args.path is not None:
        body["path"] = args.path
    if args.access is not None:
        body["access"] = args.access
    if args.websocket is not None:
        body["websocket"] = args.websocket
    if args.request_timeout is not None:
        body["request_timeout"] = args.request_timeout
    if args.idle_timeout is not None:
        body["idle_timeout"] = args.idle_timeout
    if args.no_health_check:
        body["health_check"] = "off"
    elif args.tcp_health_check:
        body["health_check"] = None
    elif args.health_path is not None or args.health_interval or args.health_timeout or args.health_expect:
        hc: dict[str, Any] = {"path": args.health_path or "/"}
        if args.health_interval:
            hc["interval"] = args.health_interval
        if args.health_timeout:
            hc["timeout"] = args.health_timeout
        if args.health_expect:
            hc["expected"] = args.health_expect
        body["health_check"] = hc
    return body


def _domains(svc: dict[str, Any]) -> str:
    """Domains as stored (ASCII), each followed by its Unicode form when it has one."""
    shown = svc.get("domains_unicode") or svc["domains"]
    return ",".join(d if d == u else f"{d} ({u})" for d, u in zip(svc["domains"], shown, strict=True))


def _print_services(services: list[dict[str, Any]]) -> None:
    if not services:
        print("no services (add one with: envoyage service add NAME --domain D --upstream HOST:PORT)")
        return
    rows = [("NAME", "SOURCE", "DOMAINS", "UPSTREAMS", "ACCESS", "STATUS")]
    for s in services:
        status = "ok" if not s["problems"] else "PROBLEM"
        rows.append(
            (s["name"], s["source"], _domains(s) or "-", ",".join(s["upstreams"]) or "-", s["access"] or "-", status)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for s in services:
        for p in s["problems"]:
            print(f"problem: {s['name']}: {p}")


def _ago(ts: float) -> str:
    if not ts:
        return "never"
    secs = max(0, time.time() - ts)
    if secs < 120:
        return f"{secs:.0f}s ago"
    if secs < 7200:
        return f"{secs / 60:.0f}m ago"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _print_status(st: StatusReport) -> None:
    print(f"control plane {st.version}, up since {_ago(st.started_at)}")
    print(f"services: {st.services.total} ({st.services.with_problems} with problems)")
    for key, versions in st.snapshots.items():
        print(f"snapshot {key}: " + (" ".join(f"{k}={v}" for k, v in versions.items()) or "none"))
    if st.registry.problem:
        print(
            f"REGISTRY NOT SERVED: {st.registry.problem}. Envoy keeps its last configuration. Restore a backup, or "
            "restart with --accept-registry (docs/operations.md)"
        )
    last = st.last_reconcile
    if last is not None and not last.ok:
        print(f"LAST SNAPSHOT REFUSED: {last.error} (the previous snapshot keeps serving)")
    for name, d in st.discovery.items():
        if d.connected:
            print(
                f"discovery {name}: connected to {d.host}, {d.containers} labelled containers"
                f"{', mesh on' if d.mesh else ''}"
            )
        else:
            print(
                f"discovery {name}: NOT CONNECTED to {d.host} ({d.last_error or 'connecting'}); "
                "keeping the last known state"
            )
    _print_topology(st)
    if not st.nodes:
        print("envoys: none connected yet")
    for node in st.nodes:
        state = (
            f"connected {_ago(node.connected_since)}"
            if node.connected
            else f"DISCONNECTED {_ago(node.disconnected_at)}"
        )
        print(f"envoy {node.node_id} (role {node.role}, {'delta' if node.delta else 'sotw'}): {state}")
        want = st.snapshots.get(node.snapshot, {})
        for tname, current in want.items():
            t = node.types.get(tname)
            if t is None:
                continue
            mark = "in sync" if t.last_acked_version == current and current else "behind"
            if mark == "in sync" and t.reported_at_reconnect:
                mark += ", reported by Envoy at reconnect"
            print(f"  {tname}: acked {t.last_acked_version or '-'} ({mark}), sent {t.last_sent_version or '-'}")
            if t.last_nack_message:
                print(f"    last NACK {_ago(t.last_nack_at)} for {t.last_nack_version}: {t.last_nack_message}")


def _print_topology(st: StatusReport) -> None:
    tunnel, edge, dns = st.tunnel, st.edge, st.dns
    if tunnel is not None:
        age, rtt = tunnel.handshake_age, tunnel.rtt_ms
        print(
            f"tunnel {tunnel.interface}: "
            + (
                f"last handshake {age:.0f}s ago, {tunnel.rx_bytes:,} bytes in, {tunnel.tx_bytes:,} bytes "
                f"out, endpoint {tunnel.endpoint or '-'}"
                if age is not None
                else "no handshake"
            )
            + (f", round trip {rtt:.1f} ms" if rtt is not None else "")
        )
    if edge is not None:
        if edge.connected:
            sync = "in sync" if edge.in_sync else f"behind (has {edge.applied_version or '-'})"
            print(
                f"edge {edge.edge_id}: connected {_ago(edge.connected_since)} from {edge.peer}, "
                f"resource set {edge.want_version} {sync}"
            )
        else:
            print(f"edge: NOT CONNECTED (last seen {_ago(edge.disconnected_at)})")
        for node in edge.envoy:
            print(f"  edge envoy {node.node_id}: {'connected' if node.connected else 'DISCONNECTED'}")
            for tname, t in node.types.items():
                line = f"    {tname}: acked {t.acked_version or '-'}"
                if t.error:
                    line += f", last NACK {t.nacked_version}: {t.error}"
                print(line)
    if dns is not None:
        state = "in sync" if dns.in_sync else "NOT IN SYNC"
        print(
            f"dns: {dns.entries} zones answered with {dns.answer}, Unbound {state}, last applied "
            f"{_ago(dns.last_apply_at)}" + (f" in {dns.last_apply_ms:.1f} ms" if dns.last_apply_ms else "")
        )
    for problem in st.problems:
        print(f"PROBLEM: {problem}")


def cmd_control(args) -> int:
    from ..control.daemon import run

    cfg = load_config(_config_path(args))
    if args.accept_registry:
        cfg = dataclasses.replace(cfg, accept_registry=True)
    level = (args.log_level or cfg.log_level).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("peewee").setLevel(logging.INFO)
    return run(cfg)


def _report(result: dict[str, Any], lines: list[str], as_json: bool) -> int:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for line in lines:
            print(line)
        for problem in result["problems"]:
            print(f"PROBLEM: {problem}")
        if result["ok"]:
            print("ok")
    return EXIT_OK if result["ok"] else EXIT_FAIL


def cmd_check(args) -> int:
    from . import check

    cfg = load_config(_config_path(args))
    if args.what == "tunnel":
        r = check.check_tunnel(StatusReport.from_json(_client(args).get("/status")))
        lines = []
        if r["tunnel"]:
            t, e = r["tunnel"], r["edge"]
            age = f"last handshake {t['handshake_age']:.0f}s ago" if t["handshake_age"] is not None else "no handshake"
            rtt = f", round trip {t['rtt_ms']:.1f} ms" if t["rtt_ms"] is not None else ""
            lines.append(f"tunnel {t['interface']}: {age}{rtt}, endpoint {t['endpoint'] or '-'}")
            lines.append(
                f"edge link: {'up, edge ' + str(e['edge_id']) if e['connected'] else 'DOWN'}"
                + (", configuration in sync" if e.get("in_sync") else "")
            )
        return _report(r, lines, args.json)
    if args.what == "dns":
        if not args.name:
            print("error: check dns needs a DOMAIN", file=sys.stderr)
            return EXIT_USAGE
        services = _client(args).get("/services")["services"]
        r = check.check_dns(cfg, services, args.name)
        lines = [f"{r['domain']}" + (f" (service {r['service']})" if r["service"] else " (not an Envoyage domain)")]
        for key, label in (("lan", "LAN, home resolver"), ("internet", "internet")):
            v = r.get(key)
            if v:
                answer = ", ".join(v["answers"]) or v["error"] or "no address"
                lines.append(f"  {label} {v['server']}: {answer}" + (" (DNSSEC validated)" if v.get("dnssec") else ""))
        return _report(r, lines, args.json)
    if not args.name:
        print("error: check service needs a NAME", file=sys.stderr)
        return EXIT_USAGE
    svc = _client(args).get(f"/services/{quote(args.name, safe='')}")
    r = check.check_service(cfg, svc)
    lines = [f"{r['service']} ({r['domain']})"]
    for key, label in (("lan", "LAN path"), ("vps", "VPS path")):
        v = r["paths"].get(key)
        if v:
            lines.append(
                f"  {label}: "
                + (f"{v['status']} in {v['median_ms']:.1f} ms (median of 5)" if v["status"] is not None else v["error"])
            )
    return _report(r, lines, args.json)


def cmd_edge(args) -> int:
    from ..edge.daemon import run

    cfg = load_edge_config(_config_path(args, DEFAULT_EDGE_CONFIG))
    level = (args.log_level or cfg.log_level).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(cfg)


def cmd_link_secret(args) -> int:
    from ..link.secret import create

    cfg = load_config(_config_path(args))
    key_path = args.key_file or cfg.link_key_path
    if os.path.exists(key_path) and not args.replace:
        print(
            f"error: {key_path} exists: this home already has an edge link key (use --replace to make a "
            "new secret; the edge then needs the new secret)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    create(Path(key_path), Path(args.secret_file))
    print(
        f"wrote the edge secret to {args.secret_file} (0600; copy it to the VPS as the edge's secret_file "
        f"and delete it here) and the link key derived from it to {key_path} (0600)"
    )
    return EXIT_OK


def cmd_tunnel(args) -> int:
    """The tunnel unit's start and stop (the collection's wireguard role): the same backend
    as the modules and the harness (module_utils._wireguard)."""
    from ..module_utils import _wireguard as wg

    if args.action == "down":
        gone = wg.bring_down(args.interface)
        print(f"removed {args.interface}" if gone else f"{args.interface} was not up")
        return EXIT_OK
    if args.action == "status":
        return _tunnel_status(args, wg)
    allow_tcp = None
    if args.allow_tcp is not None:
        ports = [p.strip() for p in args.allow_tcp.split(",") if p.strip()]
        if not all(p.isdigit() and 0 < int(p) < 65536 for p in ports):
            print(
                f"error: --allow-tcp {args.allow_tcp!r}: give TCP ports separated by commas, e.g. 18080,18443",
                file=sys.stderr,
            )
            return EXIT_USAGE
        allow_tcp = [int(p) for p in ports]
    if not (args.config and args.key and args.address):
        print("error: tunnel up needs --config, --key and --address", file=sys.stderr)
        return EXIT_USAGE
    address, _slash, length = args.address.partition("/")
    if not length.isdigit():
        print(
            f"error: --address {args.address!r}: give the tunnel address with its prefix length, e.g. 10.88.0.2/24",
            file=sys.stderr,
        )
        return EXIT_USAGE
    backend = wg.bring_up(
        args.interface, args.config, address, int(length), private_key_path=args.key, allow_tcp=allow_tcp
    )
    print(
        f"{args.interface} is up ({backend}) with {args.address}"
        + (f"; from the tunnel only tcp {','.join(map(str, allow_tcp))} to {address}" if allow_tcp is not None else "")
    )
    return EXIT_OK


def _tunnel_status(args, wg) -> int:
    """The status writer (the wireguard role's envoyage-tunnel-status unit, as root): the
    interface's handshake, endpoint and bytes, never a key, as JSON on stdout or into
    --output, replaced atomically every --interval seconds (--once: one write)."""
    if not args.output:
        print(json.dumps(wg.status_document(args.interface), indent=2, sort_keys=True))
        return EXIT_OK
    if not 0.2 <= args.interval <= 3600:
        print(f"error: --interval {args.interval}: between 0.2 and 3600 seconds", file=sys.stderr)
        return EXIT_USAGE
    while True:
        wg.write_status_file(args.output, wg.status_document(args.interface))
        if args.once:
            return EXIT_OK
        time.sleep(args.interval)


def cmd_backup(args) -> int:
    out = _client(args).post("/backup", {"path": os.path.abspath(args.path)})
    print(
        f"wrote {out['path']}: {out['services']} services, write generation {out['generation']}, {out['bytes']:,} bytes"
    )
    return EXIT_OK


def _changed(verb: str, svc: dict[str, Any]) -> int:
    """What `service add` and `service update` print about the service the control plane
    stored; exit 1 when it has problems."""
    print(f"{verb} {svc['name']}: {_domains(svc)} -> {', '.join(svc['upstreams'])}")
    for p in svc["problems"]:
        print(f"problem: {p}")
    return EXIT_OK if not svc["problems"] else EXIT_FAIL


def cmd_service_add(args) -> int:
    return _changed("added", _client(args).post("/services", _service_body(args, partial=False)))


def cmd_service_update(args) -> int:
    body = _service_body(args, partial=True)
    if not body:
        print("nothing to change: give at least one option", file=sys.stderr)
        return EXIT_USAGE
    return _changed("updated", _client(args).patch(f"/services/{quote(args.name, safe='')}", body))


def cmd_service_rm(args) -> int:
    client = _client(args)
    rc = EXIT_OK
    for name in args.names:
        try:
            client.delete(f"/services/{quote(name, safe='')}")
            print(f"removed {name}")
        except ApiError as exc:
            print(f"error: {name}: {exc.message}", file=sys.stderr)
            rc = EXIT_FAIL
    return rc


def cmd_service_ls(args) -> int:
    services = _client(args).get("/services")["services"]
    if args.json:
        print(json.dumps(services, indent=2))
    else:
        _print_services(services)
    return EXIT_OK


def cmd_status(args) -> int:
    st = _client(args).get("/status")
    if args.json:
        print(json.dumps(st, indent=2))  # as the control plane sent it
    else:
        _print_status(StatusReport.from_json(st))
    return EXIT_OK


def cmd_bootstrap(args) -> int:
    # Where the control plane listens comes from the same configuration it reads
    # (file, ENVOYAGE_* variables); explicit flags win. The edge's Envoy is fed by the
    # edge service, on the socket from the edge's config.
    xds_address, xds_port, xds_socket = args.xds_address, args.xds_port, args.xds_socket
    if args.role == "edge" and xds_socket is None and xds_address is None and xds_port is None:
        xds_socket = str(load_edge_config(_config_path(args, DEFAULT_EDGE_CONFIG)).xds_socket_path)
    if xds_socket is None and (xds_address is None or xds_port is None):
        cfg = load_config(_config_path(args))
        if cfg.xds_transport == "unix" and xds_address is None and xds_port is None:
            xds_socket = str(cfg.xds_socket_path)
        else:
            xds_address = xds_address if xds_address is not None else connect_address(cfg.xds_address)
            xds_port = xds_port if xds_port is not None else cfg.xds_port
    data = bootstrap(
        args.node_id,
        args.role,
        delta=args.delta,
        xds_address=xds_address or "127.0.0.1",
        xds_port=xds_port if xds_port is not None else 18000,
        admin_port=args.admin_port,
        xds_socket=xds_socket,
        admin_socket=args.admin_socket,
    )
    text = yaml.safe_dump(data, sort_keys=False)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _add_service_options(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("name", help="service name: lowercase letters, digits and '-'")
    p.add_argument(
        "--domain",
        "-d",
        action="append",
        required=required,
        help="domain to serve (repeat or comma-separate; '*.example.com' wildcards allowed)",
    )
    p.add_argument(
        "--upstream", "-u", action="append", required=required, help="upstream HOST:PORT (repeat for several endpoints)"
    )
    p.add_argument("--path", help="path prefix to route (default /; not stripped)")
    p.add_argument(
        "--access",
        choices=["public", "vpn-only", "link-only", "auth"],
        help="who may reach it (default public; modes not built yet answer 403)",
    )
    p.add_argument("--health-path", help="HTTP health check path (default: TCP connect check)")
    p.add_argument("--health-interval", help="health check interval, e.g. 10s")
    p.add_argument("--health-timeout", help="health check timeout, e.g. 2s")
    p.add_argument("--health-expect", help="expected status codes, e.g. 200-399")
    p.add_argument("--tcp-health-check", action="store_true", help="back to the default TCP connect check")
    p.add_argument("--no-health-check", action="store_true", help="no active health check at all")
    p.add_argument(
        "--websocket",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="allow WebSocket upgrades (default: allowed)",
    )
    p.add_argument(
        "--request-timeout",
        metavar="DURATION",
        help="limit on a whole request and response, e.g. 30s, or 'off' (default off)",
    )
    p.add_argument(
        "--idle-timeout",
        metavar="DURATION",
        help="end a request with no bytes either way for this long, e.g. 10m, or 'off' (default 1h)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="envoyage", description="Envoyage control plane and admin CLI")
    parser.add_argument("--version", action="version", version=f"envoyage {__version__}")
    parser.add_argument("--config", "-c", help=f"config file (default $ENVOYAGE_CONFIG or {DEFAULT_CONFIG})")
    parser.add_argument("--socket", help="control API socket (default from the config)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("control", help="run the control plane (xDS server + control API)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--accept-registry",
        action="store_true",
        help="serve the registry even if it is older or smaller than it last was (after a restore)",
    )
    p.set_defaults(func=cmd_control)

    p = sub.add_parser("edge", help="run the edge service on the VPS (edge link client, xDS for the VPS Envoy)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_edge)

    p = sub.add_parser(
        "check", help="diagnostics: dns DOMAIN | tunnel | service NAME (exit 1 with a sentence when something is wrong)"
    )
    p.add_argument("what", choices=["dns", "tunnel", "service"])
    p.add_argument("name", nargs="?", help="the domain (dns) or the service name (service)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("link-secret", help="create the edge secret (only a link key derived from it stays on home)")
    p.add_argument("--secret-file", required=True, help="where to write the secret for the VPS (mode 0600)")
    p.add_argument("--key-file", help="where home keeps the link key (default link.key_file from the config)")
    p.add_argument("--replace", action="store_true", help="replace an existing secret")
    p.set_defaults(func=cmd_link_secret)

    p = sub.add_parser("tunnel", help="bring the WireGuard tunnel up or down (the tunnel's systemd unit runs this)")
    p.add_argument(
        "action",
        choices=["up", "down", "status"],
        help="status: handshake, endpoint and bytes as JSON (no keys), with --output into a file",
    )
    p.add_argument("--interface", default="envoyage0", help="interface name (default envoyage0)")
    p.add_argument("--config", help="wg setconf file without a private key (up)")
    p.add_argument("--key", help="the private key file, 0600 (up)")
    p.add_argument("--address", help="this side's tunnel address with prefix length, e.g. 10.88.0.2/24 (up)")
    p.add_argument(
        "--allow-tcp",
        help="home (up): the only TCP ports the VPS may open on this tunnel address, "
        "e.g. 18080,18443 (the tunnel listener and the edge link); all else from the tunnel is dropped",
    )
    p.add_argument("--output", help="status: the file to keep fresh (replaced atomically, mode 0644)")
    p.add_argument("--interval", type=float, default=5.0, help="status: seconds between writes (default 5)")
    p.add_argument("--once", action="store_true", help="status: write --output once and exit")
    p.set_defaults(func=cmd_tunnel)

    p = sub.add_parser("backup", help="write a consistent copy of the registry (through the control plane)")
    p.add_argument("path", help="the backup file to write (mode 0600)")
    p.set_defaults(func=cmd_backup)

    svc = sub.add_parser("service", help="manage manually added services")
    ssub = svc.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    p = ssub.add_parser("add", help="add a service")
    _add_service_options(p, required=True)
    p.set_defaults(func=cmd_service_add)
    p = ssub.add_parser("update", help="change a service (only the options given)")
    _add_service_options(p, required=False)
    p.set_defaults(func=cmd_service_update)
    p = ssub.add_parser("rm", aliases=["remove"], help="remove services")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=cmd_service_rm)
    p = ssub.add_parser("ls", aliases=["list"], help="list services and their problems")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_service_ls)

    p = sub.add_parser("services", help="alias for `service ls`")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_service_ls)

    p = sub.add_parser("status", help="connected Envoys, ACKed versions, last NACK")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("envoy-bootstrap", help="print an Envoy bootstrap for a node")
    p.add_argument("--node-id", required=True)
    p.add_argument("--role", required=True, choices=["home", "edge"])
    p.add_argument("--delta", action="store_true", help="use delta xDS (DELTA_GRPC) instead of state of the world")
    p.add_argument(
        "--xds-address",
        help="the control plane's xDS address (default: xds.address from the "
        "config; a wildcard such as 0.0.0.0 becomes loopback)",
    )
    p.add_argument("--xds-port", type=int, help="the control plane's xDS port (default: xds.port from the config)")
    p.add_argument(
        "--xds-socket",
        help="the control plane's xDS Unix socket (default, with xds.transport unix: "
        "xds.socket from the config, <run_dir>/xds.sock)",
    )
    p.add_argument(
        "--admin-port",
        type=int,
        default=9901,
        help="Envoy's admin interface on 127.0.0.1:PORT (tests and benchmarks; every local user can reach it)",
    )
    p.add_argument(
        "--admin-socket",
        help="Envoy's admin interface on this Unix socket, mode 0600, instead of --admin-port (what the roles use)",
    )
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_bootstrap)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ApiError as exc:
        where = f"{exc.field}: " if exc.field and exc.field != "name" else ""
        print(f"error: {where}{exc.message}", file=sys.stderr)
        return EXIT_USAGE if exc.status == 400 else EXIT_FAIL
    except (ConfigError, BootstrapError, WireGuardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # the reader went away (`envoyage services | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
