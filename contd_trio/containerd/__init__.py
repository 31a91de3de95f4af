"""containerd as the daemon sees it: the gRPC channel and the OCI spec."""
