"""What the tests (and the benchmarks) share, one importable package.

pytest puts runtime/tests on the path (`pythonpath` in runtime/pyproject.toml), and so does
the checkout's venv (scripts/lib.sh writes envoyage-tests.pth), for bench/ and
scripts/topology_a.py; nothing inserts paths by hand.

- `support.helpers`: real processes, no mocks: Envoy, the in-process control plane
  (`Setup`), upstream apps, the CLI, waiting.
- `support.ports`: ports for the tests' own listeners that no other test, in this run or
  in another one beside it, is handed at the same time.
- `support.lab`: topology A in network namespaces (`Lab`, `running_lab`), split by concern
  into `nodes` (namespaces, addresses, processes), `tunnel` (WireGuard), `dns` (Unbound,
  BIND) and `envoy` (the control plane, the home Envoy, the edge and the VPS Envoy).
"""
