"""The core: protocol, configuration and policy, with no I/O and no event loop."""
