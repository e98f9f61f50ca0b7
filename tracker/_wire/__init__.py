"""The wire: what the client and the server agree on (docs/protocol.md).

- `limits`: every size and count limit, defined once for both sides;
- `protocol`: the protocol version, the API paths, the handshake request and answer;
- `errors`: failed exchanges (`TransportError`) and the public error each one becomes.
"""
