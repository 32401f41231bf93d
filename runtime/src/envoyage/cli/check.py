"""`envoyage check`: diagnostics that answer "why does this not work?" in a sentence.

    envoyage check dns DOMAIN      what a LAN client and the internet get for DOMAIN
    envoyage check tunnel          handshake age, round-trip time, whether the edge link is up
    envoyage check service NAME    the same request on the LAN path and on the VPS path

Each prints what it found and exits 0 when everything is as it should be, 1 with a plain
sentence per problem otherwise (`--json` for scripts: {"ok": ..., "problems": [...], ...}).
"""

from __future__ import annotations

import http.client
import statistics
import time
from typing import Any

from ..bootstrap import connect_address
from ..config import Config
from ..status import StatusReport


def _server(text: str, default_port: int = 53) -> tuple[str, int]:
    host, _sep, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    return (host or text), int(port) if port.isdigit() else default_port


def resolve(server: str, name: str, timeout: float = 2.0) -> tuple[list[str], str | None, bool]:
    """(IPv4 answers, an error sentence or None, DNSSEC-validated) asking `server` directly."""
    import dns.exception
    import dns.flags
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    host, port = _server(server)
    try:
        query = dns.message.make_query(name, dns.rdatatype.A, want_dnssec=True)
    except (dns.exception.DNSException, ValueError) as exc:
        return [], f"{name!r} is not a domain name ({exc})", False
    query.flags |= dns.flags.AD
    try:
        answer = dns.query.udp(query, host, port=port, timeout=timeout)
    except dns.exception.Timeout:
        return [], f"{server} did not answer within {timeout:.0f} s", False
    except (OSError, ValueError, dns.exception.DNSException) as exc:
        return [], f"{server} cannot be asked: {getattr(exc, 'strerror', None) or exc}", False
    rcode = answer.rcode()
    if rcode != dns.rcode.NOERROR:
        return [], f"{server} answered {dns.rcode.to_text(rcode)}", False
    ips = sorted({rr.address for rrset in answer.answer if rrset.rdtype == dns.rdatatype.A for rr in rrset})
    return ips, None, bool(answer.flags & dns.flags.AD)


def _served_by(services: list[dict[str, Any]], domain: str) -> dict[str, Any] | None:
    domain = domain.lower().rstrip(".")
    for svc in services:
        for d in svc["domains"]:
            if d == domain or (d.startswith("*.") and (domain.endswith(d[1:]) or domain == d[2:])):
                return svc
    return None


def check_dns(cfg: Config, services: list[dict[str, Any]], domain: str) -> dict[str, Any]:
    problems: list[str] = []
    lan_server = cfg.dns_server or cfg.dns_answer_address
    svc = _served_by(services, domain)
    out: dict[str, Any] = {"domain": domain, "service": svc["name"] if svc else None}
    if lan_server:
        lan, err, _validated = resolve(lan_server, domain)
        out["lan"] = {"server": lan_server, "answers": lan, "error": err}
        if err:
            problems.append(f"the home resolver did not give an answer for {domain}: {err}")
        elif svc and lan != [cfg.dns_answer_address]:
            where = (
                "through the VPS"
                if cfg.edge_public_address and cfg.edge_public_address in lan
                else "somewhere else"
                if lan
                else "nowhere"
            )
            problems.append(
                f"LAN clients get {', '.join(lan) or 'no address'} for {domain}, not this home's address "
                f"{cfg.dns_answer_address}: their traffic goes {where} (is the DNS controller in sync? "
                "see `envoyage status`)"
            )
    else:
        out["lan"] = None
        problems.append(
            "split-horizon DNS is not set up (dns.enabled, dns.answer_address): LAN clients use "
            "whatever their resolver says"
        )
    public, err, validated = resolve(cfg.dns_public_resolver, domain)
    out["internet"] = {"server": cfg.dns_public_resolver, "answers": public, "error": err, "dnssec": validated}
    if svc and svc["access"] == "public" and cfg.topology == "a" and cfg.edge_public_address:
        if err:
            problems.append(
                f"the internet cannot resolve {domain} ({err}): add a public DNS record pointing at "
                f"the VPS ({cfg.edge_public_address})"
            )
        elif cfg.edge_public_address not in public:
            problems.append(
                f"the internet gets {', '.join(public)} for {domain}, not the VPS's address "
                f"{cfg.edge_public_address}: point the domain's public DNS record at the VPS"
            )
    out.update(ok=not problems, problems=problems)
    return out


def _timed_get(host: str, port: int, domain: str, path: str, count: int = 5, timeout: float = 5.0):
    """(status of the last request, median latency in ms) or (None, error sentence)."""
    latencies, status = [], None
    for _attempt in range(count):
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        started = time.perf_counter()
        try:
            conn.request("GET", path, headers={"Host": domain, "User-Agent": "envoyage-check"})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            return None, f"no answer from {host}:{port} ({getattr(exc, 'strerror', None) or exc or type(exc).__name__})"
        finally:
            conn.close()
        latencies.append((time.perf_counter() - started) * 1000)
    return status, round(statistics.median(latencies), 2)


def check_service(cfg: Config, svc: dict[str, Any]) -> dict[str, Any]:
    if not svc.get("domains") or not svc.get("upstreams"):
        return {
            "service": svc["name"],
            "domain": None,
            "paths": {},
            "ok": False,
            "problems": [f"{svc['name']}: {p}" for p in svc.get("problems") or ["it has no domain or upstream"]],
        }
    domain = svc["domains"][0]
    domain = "check." + domain[2:] if domain.startswith("*.") else domain
    path = svc.get("path") or "/"
    paths = [("lan", connect_address(cfg.home_http_address), cfg.home_http_port)]
    if cfg.topology == "a" and cfg.edge_public_address and svc["access"] != "vpn-only":
        paths.append(("vps", cfg.edge_public_address, cfg.edge_http_port))
    out: dict[str, Any] = {"service": svc["name"], "domain": domain, "paths": {}}
    problems = []
    for name, host, port in paths:
        status, latency = _timed_get(host, port, domain, path)
        label = "the LAN path (home Envoy)" if name == "lan" else "the VPS path (VPS Envoy, tunnel, home Envoy)"
        if status is None:
            out["paths"][name] = {"status": None, "error": latency}
            problems.append(f"{svc['name']} does not answer on {label}: {latency}")
            continue
        out["paths"][name] = {"status": status, "median_ms": latency}
        if status >= 500:
            why = "the app is not reachable (no healthy upstream)" if status == 503 else "the app or proxy failed"
            problems.append(f"{svc['name']} answers {status} on {label}: {why}")
    if svc.get("problems"):
        problems += [f"{svc['name']}: {p}" for p in svc["problems"]]
    out.update(ok=not problems, problems=problems)
    return out


def check_tunnel(status: StatusReport) -> dict[str, Any]:
    """`envoyage check tunnel` from the control plane's status."""
    tunnel, edge = status.tunnel, status.edge
    if tunnel is None:
        return {
            "ok": False,
            "problems": ["this home has no tunnel (topology c); there is nothing to check"],
            "tunnel": None,
            "edge": None,
        }
    problems = []
    if tunnel.problem:
        problems.append(f"the tunnel is down: {tunnel.problem}")
    if edge is None or not edge.connected:
        problems.append(
            "the edge link is down: no edge is connected (is `envoyage edge` running on the VPS, and "
            "does it have the right secret?)"
        )
    elif not edge.in_sync:
        problems.append(
            "the edge is connected but has not applied the current configuration"
            + (f": {edge.apply_error}" if edge.apply_error else "")
        )
    return {
        "ok": not problems,
        "problems": problems,
        "tunnel": {
            k: getattr(tunnel, k) for k in ("interface", "handshake_age", "rtt_ms", "endpoint", "rx_bytes", "tx_bytes")
        },
        "edge": {k: getattr(edge, k, None) for k in ("connected", "edge_id", "in_sync", "rtt_ms")},
    }
