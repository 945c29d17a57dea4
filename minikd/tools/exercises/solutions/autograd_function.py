"""Reference solution: the sigmoid as an autograd Function, forward beside backward."""

from minikd.engine import backend
from minikd.engine.autograd import Function


class Sigmoid(Function):
    def forward(self, x):
        """σ(x) = 1/(1 + e^(−x)), written ½(1 + tanh(x/2)) so that no exp overflows."""
        self.y = 0.5 * (1.0 + backend.xp().tanh(0.5 * x))
        return self.y

    def backward(self, g):
        """y = σ(x): dL/dx = g·y·(1 − y), from the saved output."""
        return (g * self.y * (1.0 - self.y),)
