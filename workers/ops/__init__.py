"""The operator tools: the ``intercom-sync`` command line, ``dev`` (the whole stack on one
machine), ``check``/``status``, the process definitions and the embedded Redis.

The top of the tree: may import anything under ``workers``, and nothing imports it back.
"""
