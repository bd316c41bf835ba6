"""DAX's own binary protocol, sans-IO: the codec the DAX clients' connections go through.

Core layer: no sockets, no event loop. Bytes in, requests out; answers in, bytes out.
``cbor`` reads and writes the stream of CBOR items, ``session`` frames a connection
(preamble, then requests) by the catalogue in ``methods``; ``values`` and ``lexdecimal``
encode attribute values, keys and values payloads; ``attribute_lists`` names the attribute
lists; ``expressions`` renders the clients' compiled expression trees back to text;
``calls``, ``queries``, ``batches`` and ``transactions`` turn each decoded DAX call into
the DynamoDB JSON request the HTTP side hands the proxy, and its answer back into DAX's
reply; ``errors`` writes DAX's error triple. The protocol study is
``shared/spec/dax-protocol.md``; the clients (``amazon-dax-client`` on PyPI,
``@amazon-dax-sdk/client-dax`` on npm, Apache-2.0) are the truth.
"""
