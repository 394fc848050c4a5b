"""The outbound clients: the HTTP core (timeouts, limiter, error mapping), the typed Intercom and
Sanity clients, and :mod:`~workers.clients.services`, which builds one of each per process.

May import :mod:`workers.jobs` (limiter, errors, logs) and settings; never a domain.
"""
