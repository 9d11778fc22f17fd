"""Building blocks for tests and sample captures of meshpcap: the wire bytes a client, server, relay or
proxy would send, for anyone who writes tests against meshpcap.

* :mod:`meshpcap.testing.tls`: TLS records, browser-like ClientHellos (SNI, ALPN, GREASE, a post-quantum
  key share, ECH, padding), ServerHellos, alerts, certificates, application data.
* :mod:`meshpcap.testing.quic`: protected QUIC client Initials (v1, v2, drafts; any other version sealed
  with guessed keys) and CRYPTO frames.
* :mod:`meshpcap.testing.stun`: STUN/TURN messages (MESSAGE-INTEGRITY, FINGERPRINT, addresses, errors) and
  ChannelData.
* :mod:`meshpcap.testing.rules`: a slow reference for the domain-pattern semantics, to check a matcher against.

Each builder is deterministic (the same arguments give the same bytes) and is read back by the matching
parser in :mod:`meshpcap.decode`.  Wrap the payloads in packets and files with any writer (the project's
sample generator, ``samples/make_samples.py``, uses scapy and its own pcapng writer)::

    from meshpcap.testing import tls
    hello = tls.build_client_hello("teams.microsoft.com", alpn=("h2",), grease=True)

The parsers never import this package.
"""

from meshpcap.testing import quic, rules, stun, tls

__all__ = ["quic", "rules", "stun", "tls"]
