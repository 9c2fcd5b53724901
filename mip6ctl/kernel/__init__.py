"""Everything that touches the kernel: netlink observers, writer, XFRM, probe, sockets."""
