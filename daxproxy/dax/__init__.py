"""DAX's own binary protocol, sans-IO: the codec the DAX clients' connections go through.

Core layer: no sockets, no event loop. Bytes in, requests out; answers in, bytes out.
``cbor`` reads and writes the stream of CBOR items, ``session`` frames a connection
(preamble, then requests), ``values`` and ``lexdecimal`` encode items and keys,
``attribute_lists`` names the attribute lists, ``calls`` turns a decoded DAX call into the
DynamoDB JSON request the HTTP side hands the proxy and its answer back into DAX's reply,
``errors`` writes DAX's error triple. The protocol study is ``shared/spec/dax-protocol.md``;
the clients (``amazon-dax-client`` on PyPI, Apache-2.0) are the truth.
"""
