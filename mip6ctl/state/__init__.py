"""Typed kernel objects with identity keys, render() and plan()."""
