"""Conversation tagging and triage: the rules engine (:mod:`~workers.conversations.rules`, no
I/O) and what it costs in Intercom calls (:mod:`~workers.conversations.tagging`); rule actions
(:mod:`~workers.conversations.actions`, :mod:`~workers.conversations.templates`, no I/O) and
running each once per conversation (:mod:`~workers.conversations.triage`).

May import the clients, the job machinery and settings; never another domain.
"""
