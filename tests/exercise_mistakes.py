"""Plausible wrong answers to every exercise, each with the diagnosis the grader must give.

MISTAKES[name] is a list of (what the student got wrong, the student's file, a phrase the failed
checks' messages must contain). Every file starts with HEADER.
"""

HEADER = """\
import math
from minikd.engine import backend
from minikd.engine.autograd import Function, no_grad
from minikd.losses import functional as F
"""

_LOG_SOFTMAX = """
def _log_softmax(z, T):
    xp = backend.xp()
    s = (z - xp.max(z, axis=-1, keepdims=True)) / T
    return s - xp.log(xp.sum(xp.exp(s), axis=-1, keepdims=True))
"""

_KL = _LOG_SOFTMAX + """
def _kl(z, v, T, scale=1.0, chain=True):
    xp = backend.xp()
    log_p, log_q = _log_softmax(v, T), _log_softmax(z, T)
    p = xp.exp(log_p)
    grad = (xp.exp(log_q) - p) / z.shape[0] / (T if chain else 1.0)
    return scale * xp.sum(p * (log_p - log_q)) / z.shape[0], scale * grad
"""

_NLL = _LOG_SOFTMAX + """
def _nll(z, y, T=1.0):
    xp = backend.xp()
    log_q = _log_softmax(z, T)
    onehot = xp.astype(xp.arange(z.shape[1], device=backend.device()) == y[:, None], z.dtype)
    return -xp.sum(log_q * onehot) / z.shape[0], (xp.exp(log_q) - onehot) / z.shape[0] / T
"""

MISTAKES = {
    "softmax_temperature": [
        ("no max subtraction", """
def softmax(z, T):
    xp = backend.xp()
    e = xp.exp(z / T)
    return e / xp.sum(e, axis=-1, keepdims=True)
""", "overflow at logits ±1e4: subtract the max before exp"),
        ("T ignored", """
def softmax(z, T):
    xp = backend.xp()
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)
""", "T is ignored: divide the logits by T"),
        ("normalised along axis 0", """
def softmax(z, T):
    xp = backend.xp()
    e = xp.exp((z - xp.max(z, axis=0, keepdims=True)) / T)
    return e / xp.sum(e, axis=0, keepdims=True)
""", "normalised along the first axis"),
    ],
    "log_softmax": [
        ("log of softmax", """
def log_softmax(z, T):
    xp = backend.xp()
    e = xp.exp((z - xp.max(z, axis=-1, keepdims=True)) / T)
    return xp.log(e / xp.sum(e, axis=-1, keepdims=True))
""", "never log(softmax(z))"),
        ("not normalised", """
def log_softmax(z, T):
    xp = backend.xp()
    return (z - xp.max(z, axis=-1, keepdims=True)) / T
""", "not normalised: subtract log Σ exp(s) from s"),
        ("float64 for float32 input", _LOG_SOFTMAX + """
def log_softmax(z, T):
    return _log_softmax(backend.xp().astype(z, backend.xp().float64), T)
""", "returned float64 for float32 input"),
    ],
    "nll": [
        ("summed, not averaged", _NLL + """
def nll(z, y):
    loss, grad = _nll(z, y)
    return z.shape[0] * loss, z.shape[0] * grad
""", "summed over the N rows, not averaged"),
        ("wrong sign of the gradient", _NLL + """
def nll(z, y):
    loss, grad = _nll(z, y)
    return loss, -grad
""", "wrong sign"),
        ("no max subtraction", """
def nll(z, y):
    xp = backend.xp()
    q = xp.exp(z) / xp.sum(xp.exp(z), axis=-1, keepdims=True)
    onehot = xp.astype(xp.arange(z.shape[1], device=backend.device()) == y[:, None], z.dtype)
    return -xp.sum(xp.log(q) * onehot) / z.shape[0], (q - onehot) / z.shape[0]
""", "overflow at logits ±1e4"),
    ],
    "kl": [
        ("reverse direction", _KL + """
def kl(z, v, T):
    xp = backend.xp()
    log_p, log_q = _log_softmax(v, T), _log_softmax(z, T)
    q = xp.exp(log_q)
    r = log_q - log_p
    row = xp.sum(q * r, axis=-1, keepdims=True)
    return xp.sum(row) / z.shape[0], q * (r - row) / (T * z.shape[0])
""", "this is KL(q_T ‖ p_T)"),
        ("missing 1/T of the chain rule", _KL + """
def kl(z, v, T):
    return _kl(z, v, T, chain=False)
""", "gradient off by a factor T: the chain rule through z/T adds a 1/T"),
        ("teacher minus student", _KL + """
def kl(z, v, T):
    loss, grad = _kl(z, v, T)
    return loss, -grad
""", "wrong sign"),
    ],
    "t_squared": [
        ("forgotten T²", _KL + """
def soft_term(z, v, T):
    return _kl(z, v, T)
""", "gradient off by a factor T²: the soft term's T² is missing"),
        ("T instead of T²", _KL + """
def soft_term(z, v, T):
    return _kl(z, v, T, scale=T)
""", "off by a factor T: the scale is T², not T"),
        ("T² on the loss only", _KL + """
def soft_term(z, v, T):
    loss, grad = _kl(z, v, T)
    return T * T * loss, grad
""", "gradient off by a factor T²: the soft term's T² is missing"),
    ],
    "combined_objective": [
        ("λ on the wrong term", _NLL + _KL.replace(_LOG_SOFTMAX, "") + """
def distillation_loss(z, v, y, lam, T, form):
    ce, ce_grad = _nll(z, y)
    kd, kd_grad = _kl(z, v, T, scale=T * T)
    hard, soft = (lam, 1 - lam) if form == "interpolate" else (1.0, lam)
    return hard * ce + soft * kd, hard * ce_grad + soft * kd_grad
""", "λ on the wrong term"),
        ("forgotten T²", _NLL + _KL.replace(_LOG_SOFTMAX, "") + """
def distillation_loss(z, v, y, lam, T, form):
    ce, ce_grad = _nll(z, y)
    kd, kd_grad = _kl(z, v, T)
    hard = 1 - lam if form == "interpolate" else 1.0
    return hard * ce + lam * kd, hard * ce_grad + lam * kd_grad
""", "the soft term's T² is missing"),
        ("CE at temperature T", _NLL + _KL.replace(_LOG_SOFTMAX, "") + """
def distillation_loss(z, v, y, lam, T, form):
    ce, ce_grad = _nll(z, y, T)
    kd, kd_grad = _kl(z, v, T, scale=T * T)
    hard = 1 - lam if form == "interpolate" else 1.0
    return hard * ce + lam * kd, hard * ce_grad + lam * kd_grad
""", "the cross-entropy is taken at temperature T"),
        ("additive written as interpolate", _NLL + _KL.replace(_LOG_SOFTMAX, "") + """
def distillation_loss(z, v, y, lam, T, form):
    ce, ce_grad = _nll(z, y)
    kd, kd_grad = _kl(z, v, T, scale=T * T)
    return (1 - lam) * ce + lam * kd, (1 - lam) * ce_grad + lam * kd_grad
""", "form='additive' is CE + λ·T²·KL"),
    ],
    "jsd": [
        ("0·log 0 taken literally", """
def jsd(p, q, beta):
    xp = backend.xp()
    m = beta * p + (1 - beta) * q
    return beta * xp.sum(p * xp.log(p / m), axis=-1) + (1 - beta) * xp.sum(q * xp.log(q / m), axis=-1)
""", "NaN where p = 0: the term 0·log 0 is 0"),
        ("mixture weights swapped", """
def jsd(p, q, beta):
    xp = backend.xp()
    m = (1 - beta) * p + beta * q
    kl = lambda a, b: xp.sum(xp.where(a > 0, a * xp.log(xp.where(a > 0, a, 1.0) / b), 0.0), axis=-1)
    return beta * kl(p, m) + (1 - beta) * kl(q, m)
""", "M has its weights the wrong way round"),
        ("mean over rows", """
def jsd(p, q, beta):
    xp = backend.xp()
    m = beta * p + (1 - beta) * q
    kl = lambda a, b: xp.sum(xp.where(a > 0, a * xp.log(xp.where(a > 0, a, 1.0) / b), 0.0), axis=-1)
    return xp.mean(beta * kl(p, m) + (1 - beta) * kl(q, m))
""", "return one value per row"),
    ],
    "autograd_function": [
        ("backward ignores g", """
class Sigmoid(Function):
    def forward(self, x):
        self.y = 1 / (1 + backend.xp().exp(-x))
        return self.y

    def backward(self, g):
        return (self.y * (1 - self.y),)
""", "backward ignores the upstream gradient g"),
        ("missing (1 − σ)", """
class Sigmoid(Function):
    def forward(self, x):
        self.y = 1 / (1 + backend.xp().exp(-x))
        return self.y

    def backward(self, g):
        return (g * self.y,)
""", "the factor (1 − σ) is missing"),
        ("an array, not a tuple", """
class Sigmoid(Function):
    def forward(self, x):
        self.y = 1 / (1 + backend.xp().exp(-x))
        return self.y

    def backward(self, g):
        return g * self.y * (1 - self.y)
""", "return a tuple with one gradient per input"),
    ],
    "layer_norm_backward": [
        ("σ's dependence on x forgotten", """
def layer_norm_backward(g, x, gamma, eps):
    xp = backend.xp()
    rows = tuple(range(g.ndim - 1))
    c = x - xp.mean(x, axis=-1, keepdims=True)
    sigma = xp.sqrt(xp.mean(c * c, axis=-1, keepdims=True) + eps)
    ghat = g * gamma
    return (ghat - xp.mean(ghat, axis=-1, keepdims=True)) / sigma, xp.sum(g * c / sigma, axis=rows), xp.sum(g, axis=rows)
""", "the term − x̂·mean(ĝ·x̂) is missing"),
        ("dγ not summed over rows", """
def layer_norm_backward(g, x, gamma, eps):
    xp = backend.xp()
    rows = tuple(range(g.ndim - 1))
    c = x - xp.mean(x, axis=-1, keepdims=True)
    sigma = xp.sqrt(xp.mean(c * c, axis=-1, keepdims=True) + eps)
    xhat, ghat = c / sigma, g * gamma
    dx = (ghat - xp.mean(ghat, axis=-1, keepdims=True) - xhat * xp.mean(ghat * xhat, axis=-1, keepdims=True)) / sigma
    return dx, g * xhat, xp.sum(g, axis=rows)
""", "sum over every axis but the last"),
        ("γ missing from dx", """
def layer_norm_backward(g, x, gamma, eps):
    xp = backend.xp()
    rows = tuple(range(g.ndim - 1))
    c = x - xp.mean(x, axis=-1, keepdims=True)
    sigma = xp.sqrt(xp.mean(c * c, axis=-1, keepdims=True) + eps)
    xhat = c / sigma
    dx = (g - xp.mean(g, axis=-1, keepdims=True) - xhat * xp.mean(g * xhat, axis=-1, keepdims=True)) / sigma
    return dx, xp.sum(g * xhat, axis=rows), xp.sum(g, axis=rows)
""", "γ is missing from dx"),
    ],
    "attention_backward": [
        ("transposed gradient of the keys", """
def attention_backward(q, k, v, g):
    xp = backend.xp()
    S, D = q.shape[-2], q.shape[-1]
    s = q @ xp.matrix_transpose(k) / math.sqrt(D)
    position = xp.arange(S, device=backend.device())  # (S,)
    s = xp.where(position[None, :] > position[:, None], -xp.inf, s)
    e = xp.exp(s - xp.max(s, axis=-1, keepdims=True))
    A = e / xp.sum(e, axis=-1, keepdims=True)
    dA = g @ xp.matrix_transpose(v)
    ds = A * (dA - xp.sum(dA * A, axis=-1, keepdims=True)) / math.sqrt(D)
    return ds @ k, ds @ q, xp.matrix_transpose(A) @ g
""", "dk uses ds, not dsᵀ (transposed)"),
        ("mask off by one (a future key leaks)", """
def attention_backward(q, k, v, g):
    xp = backend.xp()
    S, D = q.shape[-2], q.shape[-1]
    s = q @ xp.matrix_transpose(k) / math.sqrt(D)
    position = xp.arange(S, device=backend.device())  # (S,)
    s = xp.where(position[None, :] > position[:, None] + 1, -xp.inf, s)
    e = xp.exp(s - xp.max(s, axis=-1, keepdims=True))
    A = e / xp.sum(e, axis=-1, keepdims=True)
    dA = g @ xp.matrix_transpose(v)
    ds = A * (dA - xp.sum(dA * A, axis=-1, keepdims=True)) / math.sqrt(D)
    return ds @ k, xp.matrix_transpose(ds) @ q, xp.matrix_transpose(A) @ g
""", "the mask is off by one"),
        ("mask hides the diagonal too", """
def attention_backward(q, k, v, g):
    xp = backend.xp()
    S, D = q.shape[-2], q.shape[-1]
    s = q @ xp.matrix_transpose(k) / math.sqrt(D)
    position = xp.arange(S, device=backend.device())  # (S,)
    s = xp.where(position[None, :] >= position[:, None], -xp.inf, s)
    e = xp.exp(s - xp.max(s, axis=-1, keepdims=True))
    A = e / xp.sum(e, axis=-1, keepdims=True)
    dA = g @ xp.matrix_transpose(v)
    ds = A * (dA - xp.sum(dA * A, axis=-1, keepdims=True)) / math.sqrt(D)
    return ds @ k, xp.matrix_transpose(ds) @ q, xp.matrix_transpose(A) @ g
""", "the mask hides the diagonal too"),
    ],
    "adamw_step": [
        ("no bias correction", """
def adamw_step(theta, grad, m, v, t, lr, beta1, beta2, eps, weight_decay):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    return theta - lr * (m / (backend.xp().sqrt(v) + eps) + weight_decay * theta), m, v
""", "no bias correction"),
        ("Adam with L2 (decay in the gradient)", """
def adamw_step(theta, grad, m, v, t, lr, beta1, beta2, eps, weight_decay):
    grad = grad + weight_decay * theta
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    return theta - lr * m_hat / (backend.xp().sqrt(v_hat) + eps), m, v
""", "the weight decay went into the gradient (Adam with L2)"),
        ("ε inside the square root", """
def adamw_step(theta, grad, m, v, t, lr, beta1, beta2, eps, weight_decay):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    return theta - lr * (m_hat / backend.xp().sqrt(v_hat + eps) + weight_decay * theta), m, v
""", "ε is inside the square root"),
    ],
    "distillation_step": [
        ("zero_grad between backward and step", """
def distillation_step(student, teacher, optimizer, x, y, lam, T):
    with no_grad():
        teacher_logits = teacher(x)
    loss = F.distillation_loss(student(x), teacher_logits, y, lam=lam, T=T)
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
    return loss.item()
""", "the parameters did not move"),
        ("gradients never cleared", """
def distillation_step(student, teacher, optimizer, x, y, lam, T):
    with no_grad():
        teacher_logits = teacher(x)
    loss = F.distillation_loss(student(x), teacher_logits, y, lam=lam, T=T)
    loss.backward()
    optimizer.step()
    return loss.item()
""", "gradients accumulate across steps"),
        ("teacher run with gradients on", """
def distillation_step(student, teacher, optimizer, x, y, lam, T):
    loss = F.distillation_loss(student(x), teacher(x), y, lam=lam, T=T)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss
""", "the teacher ran with gradients on"),
        ("λ swapped in the loss", """
def distillation_step(student, teacher, optimizer, x, y, lam, T):
    with no_grad():
        teacher_logits = teacher(x)
    loss = F.distillation_loss(student(x), teacher_logits, y, lam=1 - lam, T=T)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
""", "λ on the wrong term"),
    ],
    "pgr": [
        ("ZeroDivisionError when the gap is zero", """
def pgr(weak, student, ceiling):
    return (student - weak) / (ceiling - weak)
""", "expected ValueError, got ZeroDivisionError"),
        ("the gap left, not recovered", """
def pgr(weak, student, ceiling):
    if ceiling == weak:
        raise ValueError("undefined")
    return (ceiling - student) / (ceiling - weak)
""", "that is the gap left, 1 − PGR"),
        ("wrong denominator", """
def pgr(weak, student, ceiling):
    if ceiling == weak:
        raise ValueError("undefined")
    return (student - weak) / (ceiling - student)
""", "the denominator is ceiling − weak"),
    ],
}
