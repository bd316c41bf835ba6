"""The edge: the aiohttp server and the command line."""
