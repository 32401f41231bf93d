#!/usr/bin/env python3
"""Topology A on one machine, in network namespaces: the command line of the lab the
tests, the demo (`bash scripts/demo.sh --topology a`) and the benchmarks share
(runtime/tests/support/lab: the layout, and a module per concern).

Command line (as root):  topology_a.py up --dir DIR  |  down --dir DIR  |  info --dir DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# runtime/tests is on the path of the checkout's venv (scripts/lib.sh: envoyage-tests.pth)
from support.lab import ROOT, VENV, Lab, LabError


def info(lab: Lab) -> str:
    inet, lan = lab.ns["inet"], lab.ns["lan"]
    envoyage = f"{VENV}/bin/envoyage -c {lab.home_config}"
    if lab.dns:
        paths = f"""  Internet path (client -> VPS Envoy -> WireGuard tunnel -> home Envoy -> app); the internet's
  DNS (BIND9 in the VPS namespace) answers every example.test name with the VPS:
    ip netns exec {inet} curl http://whoami.example.test/
    ip netns exec {inet} curl -g -H 'Host: whoami.example.test' 'http://[{lab.vps_public6}]/'
  LAN path (client -> home Envoy -> app; nothing goes through the VPS): the LAN client's
  resolver is home's Unbound, which answers the same name with home's LAN address:
    ip netns exec {lan} curl http://whoami.example.test:{lab.http_port}/
  A vpn-only service answers on the LAN path only:
    ip netns exec {lan} curl http://private.example.test:{lab.http_port}/
  The same name, two answers (split horizon), and the checks:
    ip netns exec {lan} dig +short whoami.example.test     # {lab.addr("home_lan")}, home
    ip netns exec {inet} dig +short whoami.example.test    # {lab.addr("vps_wan")}, the VPS
    {envoyage} check dns whoami.example.test
    {envoyage} check service whoami
    {envoyage} check tunnel"""
    else:
        paths = f"""  Internet path (client -> VPS Envoy -> WireGuard tunnel -> home Envoy -> app):
    ip netns exec {inet} curl -H 'Host: whoami.example.test' http://{lab.addr("vps_public")}/
    ip netns exec {inet} curl -g -H 'Host: whoami.example.test' 'http://[{lab.vps_public6}]/'
  LAN path (client -> home Envoy -> app; nothing goes through the VPS):
    ip netns exec {lan} curl -H 'Host: whoami.example.test' http://{lab.addr("home_lan")}:{lab.http_port}/
  A vpn-only service answers on the LAN path only:
    ip netns exec {lan} curl -H 'Host: private.example.test' http://{lab.addr("home_lan")}:{lab.http_port}/"""
    return f"""
Topology A is running in network namespaces (state in {lab.dir}).

{paths}
  Add a container and it appears on both paths:
    docker run -d --name envoyage-{lab.scope}-blog -l envoyage.enable=true -l envoyage.scope={lab.scope} \\
      -l envoyage.domain=blog.example.test envoyage/sample-app:1
  Status (tunnel, edge link, both Envoys{", DNS" if lab.dns else ""}):
    {envoyage} status
  Logs: {lab.dir}/*.log, home access log {lab.home_access_log}, VPS access log {lab.edge_access_log}

  Stop it all:  bash {ROOT}/scripts/demo.sh --topology a stop
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "info", "network-up"])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/envoyage-topology-a"))
    parser.add_argument("--net", default="10.231", help="first two octets of the lab's addresses")
    parser.add_argument("--scope", default="topology-a")
    parser.add_argument("--tag", default="eya", help="prefix of the namespaces and interfaces (up to 5 characters)")
    parser.add_argument("--http-port", type=int, default=18480, help="the home Envoy's LAN port")
    parser.add_argument(
        "--admin-port",
        type=int,
        default=19901,
        help="the home Envoy's base id (its admin is a "
        "0600 Unix socket in the lab directory); the unbound control port is next to it",
    )
    parser.add_argument(
        "--dns",
        action="store_true",
        help="split-horizon DNS: Unbound on home, BIND9 as the internet's DNS, and the clients' resolvers set to them",
    )
    args = parser.parse_args(argv)
    if not (args.tag.isalnum() and len(args.tag) <= 5):
        parser.error("--tag: letters and digits, up to 5")
    try:
        if args.action == "down":
            lab = Lab.load(args.dir) if (args.dir / "lab.json").exists() else Lab(args.dir, net=args.net, tag=args.tag)
            lab.down()
            return 0
        if args.action == "info":
            print(info(Lab.load(args.dir)))
            return 0
        lab = Lab(
            args.dir,
            net=args.net,
            scope=args.scope,
            tag=args.tag,
            http_port=args.http_port,
            admin_port=args.admin_port,
            dns=args.dns,
            unbound_control_port=args.admin_port + 2,
        )  # next to the admin port: two labs never share it
        lab.save()
        print("==> network namespaces, NAT router and WireGuard tunnel", file=sys.stderr)
        lab.network_up()
        if args.action == "network-up":
            return 0
        print("==> control plane, home Envoy, edge service and VPS Envoy", file=sys.stderr)
        lab.start_all()
        return 0
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
