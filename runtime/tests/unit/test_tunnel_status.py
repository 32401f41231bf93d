"""The control plane's tunnel status from the file the wireguard role's root-run writer
keeps (wireguard-go's control socket is root's alone): the setting, fresh and stale."""

from __future__ import annotations

import time
from pathlib import Path

from envoyage.config import load_config
from envoyage.control.tunnel import TunnelMonitor
from envoyage.module_utils import _wireguard as wg


def test_the_status_file_defaults_to_the_interface_s_file_under_run_and_can_be_set(tmp_path):
    assert load_config(environ={}).tunnel_status_path == Path("/run/envoyage-tunnel/envoyage0.json")
    cfg = tmp_path / "control.yaml"
    cfg.write_text("tunnel:\n  interface: wg7\n")
    assert load_config(cfg, environ={}).tunnel_status_path == Path("/run/envoyage-tunnel/wg7.json")
    cfg.write_text("tunnel:\n  status_file: /srv/tunnel.json\n")
    assert load_config(cfg, environ={}).tunnel_status_path == Path("/srv/tunnel.json")
    assert load_config(environ={"ENVOYAGE_TUNNEL_STATUS_FILE": "/x.json"}).tunnel_status_path == Path("/x.json")


def test_the_monitor_reads_a_fresh_file_and_names_a_stale_one(tmp_path):
    path = tmp_path / "wg0.json"
    now = time.time()
    wg.write_status_file(
        str(path),
        {
            "interface": "wg0",
            "written_at": now,
            "error": None,
            "peers": [
                {"last_handshake": int(now) - 20, "endpoint": "198.51.100.1:51820", "rx_bytes": 5, "tx_bytes": 6}
            ],
        },
    )
    st = TunnelMonitor("wg0", status_file=path).status()
    assert st.problem is None and 19 <= st.handshake_age <= 25
    assert (st.rx_bytes, st.tx_bytes, st.endpoint) == (5, 6, "198.51.100.1:51820")
    wg.write_status_file(str(path), {"interface": "wg0", "written_at": now - 120, "error": None, "peers": []})
    st = TunnelMonitor("wg0", status_file=path).status()
    assert "was last written 120 s ago" in st.problem and "envoyage-tunnel-status.service" in st.problem
