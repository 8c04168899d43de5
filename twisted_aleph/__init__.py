"""twisted_aleph: Clojure's Aleph on Twisted.

Everything is a stream with backpressure (:mod:`twisted_aleph.stream`), every
result a Deferred (:mod:`twisted_aleph.deferred`). Transports: ``tcp``,
``udp``, ``statsd``, ``http`` (Klein server, treq client, WebSocket), ``tls``.
Codecs: ``codec`` (Gloss-style frames) and ``edn``.
"""

__version__ = "0.1.0"
