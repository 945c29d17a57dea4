"""Layer 2, the losses: softmax with temperature, NLL, cross-entropy, KL, JSD and the distillation objective.

May import: ``minikd.engine``.
"""
