"""`envoyage edge`: the edge service on the VPS."""
