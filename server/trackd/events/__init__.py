"""Events: records -> durable outbox -> dispatcher -> sink, and results counted on the way.

- `records`: impression/conversion records resolved once from a config snapshot.
- `decisions`: which decision events a flag decision sends, by optimizely-sdk's rules.
- `tags`: event tags validated as optimizely-sdk reads them.
- `outbox`: the SQLite outbox (WAL, one writer thread, group commit).
- `results`: experiment results counted from committed rows, exactly once.
- `payload`: Optimizely Event API batches, as optimizely-sdk builds them.
- `dispatcher` and `sinks`: at-least-once delivery to http(s):// or file://.
"""
