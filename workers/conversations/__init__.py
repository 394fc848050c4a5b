"""Conversation tagging and triage: the rules engine (:mod:`~workers.conversations.rules`, no
I/O) and what it costs in Intercom calls (:mod:`~workers.conversations.tagging`).

May import the clients, the job machinery and settings; never another domain.
"""
