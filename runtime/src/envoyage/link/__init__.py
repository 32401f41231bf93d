"""The edge link: our own gRPC service between the control plane (home; server.py) and
the edge service (VPS; client.py). Protocol: proto/envoyage/link/v1/link.proto; stubs in
`v1/` are generated (scripts/gen-proto.sh) and committed."""

# bumped when an edge and a control plane of different versions cannot work together
# (2: the challenge-response on a derived link key replaced the bearer secret)
LINK_VERSION = 2
VERSION_KEY = "envoyage-link-version"
