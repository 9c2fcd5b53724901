"""Everything that touches the kernel: netlink observers, writer, XFRM, capability probe, sockets."""
