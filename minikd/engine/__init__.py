"""Layer 1, the engine: the array backend, Tensor and autograd, elementary ops, gradient checks, input checks.

May import: the standard library, NumPy/CuPy (in ``backend`` only). Nothing else of minikd.
"""
