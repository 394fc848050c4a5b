"""Help Center article sync: Sanity ``supportArticle`` documents → Intercom articles.

The modules, in the order a sync uses them:

* :mod:`~workers.articles.queries` — every GROQ query, one definition each, named by a tag;
* :mod:`~workers.articles.model` — the documents and translation group a query returns;
* :mod:`~workers.articles.portable_text` — the Portable Text → article HTML renderer (no I/O);
* :mod:`~workers.articles.embeds` — video page URLs → the providers' embed URLs;
* :mod:`~workers.articles.conformance` — Intercom's rules for article bodies, as one checker;
* :mod:`~workers.articles.content` — the Intercom request bodies and their content hashes;
* :mod:`~workers.articles.links` — links between articles and documents waiting on a target;
* :mod:`~workers.articles.store` — what Redis caches (mapping, hashes, URLs) and the group lock;
* :mod:`~workers.articles.intent` — crash-safe creation (intent before ``POST``, adoption);
* :mod:`~workers.articles.writeback` — the Intercom id written back to Sanity;
* :mod:`~workers.articles.sync` — ``sync``/``delete`` of one document, built from the above;
* :mod:`~workers.articles.reconcile` and :mod:`~workers.articles.backfill` — the sweeps;
* :mod:`~workers.articles.preview` — ``articles preview``: what a sync would send, writing nothing.

May import the clients, the job machinery and settings; never another domain.
"""
