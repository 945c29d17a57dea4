"""Layer 4, the tasks: the grammar language (whose true next-token distribution is known), addition, text.

May import: ``minikd.engine``, ``minikd.losses``, ``minikd.nn``.
"""
