"""Render bench results (the JSON bench.py writes) as docs/benchmarks.md."""

from __future__ import annotations

import math
from pathlib import Path

TRAEFIK_THROTTLE_MS = 2000  # providersThrottleDuration default (Traefik docs)
PANGOLIN_POLL_MS = 5000  # documented polling interval


def _f(x, unit="ms") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if unit == "ms":
        return f"{x:,.1f} ms" if x < 100 else f"{x:,.0f} ms"
    if unit == "MB":
        return f"{x:,.0f} MB"
    if unit == "s":
        return f"{x:,.2f} s"
    return str(x)


def _ratio(a, b) -> str:
    if not a or not b:
        return "–"
    return f"{a / b:.2f}×"


def _goal(ok: bool | None) -> str:
    return "–" if ok is None else ("**met**" if ok else "**missed**")


def write_report(r: dict, out: Path, raw: Path) -> None:
    m = r["machine"]
    cl = r.get("config_live", {})
    dl = r.get("discovery_live", {})
    sc = r.get("scale", {})
    lines: list[str] = []
    add = lines.append
    add("# Benchmarks")
    add("")
    if r.get("smoke"):
        add(
            "> **Smoke run** (small N, as CI runs it): these figures only show that every scenario runs. "
            "Run `bash bench/run.sh` for the real figures."
        )
        add("")
    add(
        "Written by `bash bench/run.sh` (one command; it installs Caddy and nginx from Debian and uses the "
        "go-control-plane peer when it is there: [bench/README.md](../bench/README.md)). Raw samples: "
        f"`bench/results/{raw.name}`. Every system was measured in the same run, on the same machine, with "
        "the same poller, the same upstream and the same Envoy binary."
    )
    add("")
    add(
        f"Machine: {m['cpu']} ({m['cores']} cores), kernel {m['kernel']}, Python {m['python']}, "
        f"Envoy {m['envoy']}, Caddy {m['caddy']}, {m['nginx']}. {m['date']}. Run took {r.get('duration_s')} s."
    )
    add("")
    add("## Method and clock points")
    add("")
    add(
        "- **Poller** (all systems): `GET /` with `Host: svc-<i>` on a kept-alive connection, one request per "
        "millisecond, until the answer is 200."
    )
    add(
        "- **Config → live, Envoyage**: the clock starts when the control-API request (`POST /v1/services`, "
        "JSON over the Unix socket) is sent, and stops at the first 200 through Envoy *and* Envoy having ACKed "
        "the new version of all four types (the later of the two; the ACK time is the control plane's). "
        "The CLI's own start-up (Python) is reported separately. **Caddy**: from the `POST /load` with the "
        "whole config. **nginx**: from writing the config, then SIGHUP (what `nginx -s reload` sends). "
        "**Envoy from files**: from writing the new CDS file (then the RDS file; atomic renames into "
        "Envoy's watched directory); no control plane at all: the floor for any Envoy-based system."
    )
    add(
        "- **Discovery → live**: from dockerd's `start` event (its `timeNano`) to the first 200 through Envoy. "
        "The container's own start (from `docker run` to the `start` event) is reported separately."
    )
    add(
        "- **Scale**: N services, each an EDS cluster + endpoint + virtual host (the same shape for both "
        "servers; no health checks). *Cold*: Envoy is connected with 1 service, then N−1 more arrive at once "
        "(gcp-xds: SIGUSR1; Envoyage: one batch `POST`); the clock stops when the last domain answers 200, "
        "Envoy reports N+1 active and no warming clusters and (Envoyage) all types are ACKed. *One change*: "
        "one service added at N. RSS and CPU are the control-plane process's (`/proc`)."
    )
    add("")

    # ---------------------------------------------------------------- config -> live
    add("## Config → live")
    add("")
    floor = cl.get("envoy-files", {}).get("live_ms", {}).get("p50")
    nginx = cl.get("nginx", {}).get("live_ms", {}).get("p50")
    add("| system | p50 | p95 | min | max | n | p50 vs Envoy from files |")
    add("|---|---|---|---|---|---|---|")
    for key in ("envoyage-sotw", "envoyage-delta", "envoy-files", "caddy", "nginx"):
        row = cl.get(key)
        if not row:
            continue
        if "skipped" in row:
            add(f"| {key} | skipped: {row['skipped']} | | | | | |")
            continue
        s = row["live_ms"]
        add(
            f"| {row['name']} | {_f(s['p50'])} | {_f(s['p95'])} | {_f(s['min'])} | {_f(s['max'])} | {s['n']} | "
            f"{_ratio(s['p50'], floor)} |"
        )
    add("")
    if "cli_startup_ms" in cl:
        add(
            f"The `envoyage` CLI's own start-up (`envoyage --version`, Python interpreter and imports): "
            f"p50 {_f(cl['cli_startup_ms']['p50'])}: add it for a change typed at the shell."
        )
        add("")
    for key in ("envoyage-sotw", "envoyage-delta"):
        row = cl.get(key)
        if row and "live_ms" in row:
            add(
                f"- {row['name']}: the API request itself (validate, store, translate, push) p50 "
                f"{_f(row['request_ms']['p50'])}; first 200 p50 {_f(row['first_200_ms']['p50'])}."
            )
    add("")

    # ---------------------------------------------------------------- discovery -> live
    add("## Discovery → live")
    add("")
    if "skipped" in dl:
        add(f"Skipped: {dl['skipped']}")
    elif dl:
        s = dl["live_ms"]
        add("| measure | p50 | p95 | n |")
        add("|---|---|---|---|")
        add(f"| Envoyage: `start` event → first 200 | {_f(s['p50'])} | {_f(s['p95'])} | {s['n']} |")
        add(
            f"| container start (`docker run` → `start` event), for reference | "
            f"{_f(dl['container_start_ms']['p50'])} | {_f(dl['container_start_ms']['p95'])} | {s['n']} |"
        )
        add(
            f"| `docker run` → first 200 | {_f(dl['docker_run_to_200_ms']['p50'])} | "
            f"{_f(dl['docker_run_to_200_ms']['p95'])} | {s['n']} |"
        )
        add(f"| Traefik (documented: provider throttle default) | ≥ {TRAEFIK_THROTTLE_MS:,} ms | | |")
        add(f"| Pangolin (documented: poll interval) | up to {PANGOLIN_POLL_MS:,} ms | | |")
        add("")
        add(f"Envoyage p50 is {TRAEFIK_THROTTLE_MS / s['p50']:.0f}× faster than Traefik's throttle alone.")
    add("")

    # ---------------------------------------------------------------- scale
    add("## Scale: Envoyage vs go-control-plane (gcp-xds)")
    add("")
    add(
        "| services | gcp-xds cold | Envoyage SotW cold | Envoyage delta cold | SotW / gcp | delta / gcp | "
        "Caddy /load |"
    )
    add("|---|---|---|---|---|---|---|")
    for n, row in sc.items():
        g = row.get("gcp_cold_ms")
        add(
            f"| {int(n):,} | {_f(g)} | {_f(row.get('sotw_cold_ms'))} | {_f(row.get('delta_cold_ms'))} | "
            f"{_ratio(row.get('sotw_cold_ms'), g)} | {_ratio(row.get('delta_cold_ms'), g)} | "
            f"{_f(row.get('caddy_load_ms'))} |"
        )
    add("")
    add("| services | one change: gcp-xds p50 | Envoyage SotW p50 | Envoyage delta p50 | delta p95 | delta / gcp |")
    add("|---|---|---|---|---|---|")
    for n, row in sc.items():
        g = row.get("gcp_one_change_ms", {}).get("p50")
        so = row.get("sotw_one_change_ms", {}).get("p50")
        de = row.get("delta_one_change_ms", {})
        add(
            f"| {int(n):,} | {_f(g)} | {_f(so)} | {_f(de.get('p50'))} | {_f(de.get('p95'))} | "
            f"{_ratio(de.get('p50'), g)} |"
        )
    add("")
    add(
        "| services | gcp-xds RSS | Envoyage RSS (SotW / delta) | gcp-xds CPU (cold) | Envoyage CPU cold "
        "(SotW / delta) | Envoy RSS |"
    )
    add("|---|---|---|---|---|---|")
    for n, row in sc.items():
        add(
            f"| {int(n):,} | {_f(row.get('gcp_rss_after_mb'), 'MB')} | "
            f"{_f(row.get('sotw_rss_after_mb'), 'MB')} / {_f(row.get('delta_rss_after_mb'), 'MB')} | "
            f"{_f(row.get('gcp_cpu_s'), 's')} | {_f(row.get('sotw_cpu_s'), 's')} / {_f(row.get('delta_cpu_s'), 's')} | "
            f"{_f(row.get('envoy_rss_mb'), 'MB')} |"
        )
    add("")
    for n, row in sc.items():
        if row.get("gcp_cold_own_all_acked_ms") is not None:
            add(
                f"- {int(n):,}: gcp-xds's own log says all types ACKed {row['gcp_cold_own_all_acked_ms']:.0f} ms after "
                f"its snapshot was set (cold). Envoyage's batch request (validate, store, translate, push) took "
                f"{_f(row.get('sotw_cold_request_ms'))} (SotW run)."
            )
    add("")

    # ---------------------------------------------------------------- topology A
    ta = r.get("topology_a", {})
    add("## Topology A: the VPS path and the LAN path")
    add("")
    if "skipped" in ta or not ta:
        add(f"Skipped: {ta.get('skipped', 'not run')}.")
        add("")
    else:
        add(
            "In the namespace harness (`scripts/topology_a.py`, [docs/topology-a.md](topology-a.md)): the internet "
            "client's namespace -> VPS Envoy -> WireGuard (wireguard-go) through a NAT router namespace -> home "
            "Envoy's tunnel listener (PROXY v2) -> app; the LAN client's namespace -> home Envoy -> app. The "
            "pollers run inside the client namespaces (one GET per millisecond, kept alive)."
        )
        add("")
        ev = ta["event_to_first_200"]
        add("| Docker `start` event -> first 200 | n | p50 | p95 | max |")
        add("|---|---|---|---|---|")
        for key, name in (
            ("vps_ms", "VPS path (internet client)"),
            ("lan_ms", "LAN path (LAN client)"),
            ("dns_ms", "LAN client's resolver (home Unbound) answers the name"),
        ):
            x = ev.get(key)
            if x:
                add(f"| {name} | {x['n']} | {_f(x['p50'])} | {_f(x['p95'])} | {_f(x['max'])} |")
        add("")
        oc = ta["one_change"]
        add(
            f"| {oc['services']:,} services: API request -> first 200 | p50 | p95 | "
            "the whole set, cold (batch of all) |"
        )
        add("|---|---|---|---|")
        add(
            f"| LAN path (home Envoy) | {_f(oc['lan_ms']['p50'])} | {_f(oc['lan_ms']['p95'])} | "
            f"{_f(oc['cold_lan_ms'])} |"
        )
        add(
            f"| VPS path (edge link -> VPS Envoy) | {_f(oc['vps_ms']['p50'])} | {_f(oc['vps_ms']['p95'])} | "
            f"{_f(oc['cold_vps_ms'])} |"
        )
        add(
            f"| VPS / LAN | {_ratio(oc['vps_ms']['p50'], oc['lan_ms']['p50'])} | "
            f"{_ratio(oc['vps_ms']['p95'], oc['lan_ms']['p95'])} | {_ratio(oc['cold_vps_ms'], oc['cold_lan_ms'])} |"
        )
        if oc.get("dns_ms"):
            add(f"| LAN resolver answers the new name | {_f(oc['dns_ms']['p50'])} | {_f(oc['dns_ms']['p95'])} | – |")
        add("")
        ub = ta.get("unbound")
        if ub:
            add(
                f"| Unbound with {ub['zones']:,} local zones ({ub['services']:,} services, include file "
                f"{ub['include_bytes'] / 1024:,.0f} KiB) | p50 | p95 |"
            )
            add("|---|---|---|")
            add(
                f"| start (process start -> answers the last service's name) | {_f(ub['start_to_answer_ms']['p50'])} | "
                f"{_f(ub['start_to_answer_ms']['p95'])} |"
            )
            add(
                f"| `unbound-control reload` (what rewriting the config on every change would cost) -> answers "
                f"again | {_f(ub['reload_ms']['p50'])} | {_f(ub['reload_ms']['p95'])} |"
            )
            if oc.get("dns_apply_ms") is not None:
                add(
                    f"| one change applied live by the DNS controller (include file rewritten, `unbound-control "
                    f"local_zones` + `local_datas`), the last of the runs above | {_f(oc['dns_apply_ms'])} | – |"
                )
            add("")
            add(
                "A reload also empties Unbound's cache (every LAN client's next lookups go upstream again); the live "
                "change touches one zone and nothing else."
            )
            add("")
        pa = ta["paths"]
        add("| the same request (`wrk`, 1 thread) | requests/s | latency p50 | p90 | p99 | non-2xx |")
        add("|---|---|---|---|---|---|")
        for key, name in (
            ("direct", "straight to the app (nginx on loopback)"),
            ("lan", "LAN path: home Envoy"),
            ("vps", "VPS path: VPS Envoy + tunnel + home Envoy"),
        ):
            x = pa[key]
            lat = x["latency_ms"]
            add(
                f"| {name} | {x['rps'] or 0:,.0f} | {_f(lat.get('p50'))} | {_f(lat.get('p90'))} | "
                f"{_f(lat.get('p99'))} | {x['non_2xx']} |"
            )
        add("")
        add(
            "All of it runs on one 2-core machine: the two Envoys, wireguard-go on both ends, the app and the load "
            "generator share the same cores, so the VPS path's throughput here is a floor, not what a real VPS "
            "and home server give."
        )
        add("")

    # ---------------------------------------------------------------- site playbook
    sp = r.get("site_playbook", {})
    add("## The site playbook on two bare instances")
    add("")
    if "skipped" in sp or not sp:
        add(f"Skipped: {sp.get('skipped', 'not run')}.")
        add("")
    else:
        add(
            "The README's first command (`bash scripts/demo.sh`): build the runtime wheel and the collection tarball, "
            "install it, start two bare Debian 12 systemd containers (`home`, `vps`) and run `site.yml` against them "
            "(apt, pip from the wheelhouse, WireGuard, Unbound, CrowdSec, the control plane, the edge, both Envoys), "
            "then start a labelled app and poll it through the VPS. Warm caches: base image, apt archives and "
            "lists, wheelhouse (they persist under /var/cache/envoyage)."
        )
        add("")
        add("| step | seconds |")
        add("|---|---|")
        add(f"| build + install the collection, start the containers | {sp['before_playbook_s']} |")
        add(f"| `site.yml`, first run (changed={'/'.join(map(str, sp['first_changed']))}) | {sp['playbook_s']} |")
        add(f"| command start -> first request answered through the VPS | {sp['first_request_s']} |")
        add(f"| `site.yml`, second run (changed={'/'.join(map(str, sp['second_changed']))}) | {sp['second_run_s']} |")
        add("")
        add(
            "Peers, documented figures only (not run here): Pangolin's installer and Cloudflare Tunnel's "
            "`cloudflared service install` are interactive or account-bound and do not provision a VPS and a home "
            "node from one inventory; the concept's own promise is under 5 min for home plus under 2 min for the VPS."
        )
        add("")

    # ---------------------------------------------------------------- goals
    add("## Goals")
    add("")
    add("| goal | measured | verdict |")
    add("|---|---|---|")
    if sp and "skipped" not in sp:
        add(
            f"| `site.yml` on two bare instances -> first request through the VPS ≤ 3 min (warm caches) | "
            f"{sp['first_request_s']} s | {_goal(sp['first_request_s'] <= 180)} |"
        )
        add(
            f"| second `site.yml` run ≤ 60 s with changed=0 | {sp['second_run_s']} s, changed="
            f"{'/'.join(map(str, sp['second_changed']))} | "
            f"{_goal(sp['second_run_s'] <= 60 and sp['second_ok'] and not any(sp['second_changed']))} |"
        )
    for key in ("envoyage-sotw", "envoyage-delta"):
        row = cl.get(key, {})
        if "live_ms" in row and floor:
            p50, p95 = row["live_ms"]["p50"], row["live_ms"]["p95"]
            add(
                f"| config → live p50 ≤ 1.5× Envoy from files ({row['name']}) | {_f(p50)} = "
                f"{_ratio(p50, floor)} of {_f(floor)} | {_goal(p50 <= 1.5 * floor)} |"
            )
            add(f"| config → live p95 ≤ 30 ms ({row['name']}) | {_f(p95)} | {_goal(p95 <= 30)} |")
            if nginx:
                add(
                    f"| 10× faster than nginx ({row['name']}) | nginx p50 {_f(nginx)} = {nginx / p50:.1f}× ours | "
                    f"{_goal(nginx / p50 >= 10)} |"
                )
    if "live_ms" in dl:
        s = dl["live_ms"]
        add(f"| discovery → live p50 ≤ 40 ms | {_f(s['p50'])} | {_goal(s['p50'] <= 40)} |")
        add(f"| discovery → live p95 ≤ 100 ms | {_f(s['p95'])} | {_goal(s['p95'] <= 100)} |")
    for n, row in sc.items():
        g = row.get("gcp_cold_ms")
        for mode in ("sotw", "delta"):
            c = row.get(f"{mode}_cold_ms")
            if g and c:
                add(
                    f"| cold push ≤ 1.25× gcp-xds at {int(n):,} ({mode}) | {_ratio(c, g)} ({_f(c)} vs {_f(g)}) | "
                    f"{_goal(c <= 1.25 * g)} |"
                )
    big = max(sc, key=int) if sc else None
    if big:
        row = sc[big]
        de = row.get("delta_one_change_ms", {}).get("p50")
        if de is not None:
            add(f"| one change at {int(big):,} live ≤ 100 ms (delta) | {_f(de)} | {_goal(de <= 100)} |")
        rss = max(row.get("sotw_rss_after_mb") or 0, row.get("delta_rss_after_mb") or 0)
        if rss:
            add(f"| control-plane RSS ≤ 150 MB at {int(big):,} | {_f(rss, 'MB')} | {_goal(rss <= 150)} |")
    if ta and "skipped" not in ta:
        ev = ta["event_to_first_200"]["vps_ms"]
        add(
            f"| Docker start event -> first 200 through the VPS, p50 ≤ 50 ms | {_f(ev['p50'])} | "
            f"{_goal(ev['p50'] <= 50)} |"
        )
        add(
            f"| Docker start event -> first 200 through the VPS, p95 ≤ 150 ms | {_f(ev['p95'])} | "
            f"{_goal(ev['p95'] <= 150)} |"
        )
        oc = ta["one_change"]
        lan, vps = oc["lan_ms"]["p50"], oc["vps_ms"]["p50"]
        add(
            f"| one change at {oc['services']:,} reaches the VPS in ≤ 2× the home time (p50) | "
            f"{_f(vps)} vs {_f(lan)} = {_ratio(vps, lan)} | {_goal(vps <= 2 * lan)} |"
        )
        dn = ta["event_to_first_200"].get("dns_ms")
        if dn:
            add(
                f"| service event -> the LAN client's resolver answers the new name, p95 ≤ 100 ms | {_f(dn['p95'])} | "
                f"{_goal(dn['p95'] <= 100)} |"
            )
    add("")
    notes = Path(__file__).with_name("NOTES.md")
    if notes.exists():
        add(notes.read_text().strip())
        add("")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines)
    old = out.read_text() if out.exists() else ""
    begin, end = "<!-- soak:begin -->", "<!-- soak:end -->"
    if begin in old and end in old:  # bench/soak.sh's section stays until the soak runs again
        text = text.rstrip("\n") + "\n\n" + old[old.index(begin) : old.index(end) + len(end)] + "\n"
    out.write_text(text)
