"""Layer 3, the network: layers with their backward, modules, the transformer-lite, optimizers, schedules.

May import: ``minikd.engine``, ``minikd.losses``.
"""
