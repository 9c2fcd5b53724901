"""Mobility Header, extension headers, ICMPv6 mobility messages and RR crypto: pure encode/decode."""
