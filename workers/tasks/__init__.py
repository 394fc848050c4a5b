"""The Celery tasks: one module per domain of thin wrappers under stable dotted names
(``articles.sync``), and :mod:`~workers.tasks.base`, the one decorator that carries the retry
policy, time limits, redelivery guard and logging for all of them.

May import the domains, the clients and the job machinery; only the CLI imports it.
"""
