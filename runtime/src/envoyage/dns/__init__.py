"""Split-horizon DNS: the home resolver (Unbound) answers every service domain with the
home LAN address, so LAN clients reach the home Envoy directly (docs/dns.md)."""
