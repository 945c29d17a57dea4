"""A toy language from a small probabilistic grammar with synonym classes, and its exact statistics.

The grammar is a finite automaton: each state draws a word class, then a word of that class, then
moves on. Words of a synonym class (``cat dog bird fox``) are interchangeable with similar but
unequal probabilities, the "dark knowledge" a teacher's soft labels carry and one-hot labels do not.
Some words belong to two classes (``the`` starts a singular or a plural subject), so the state is
tracked as a belief (a distribution over states); that makes the true next-token distribution
exactly computable for any prefix (``true_next_token_probs``).
"""

from dataclasses import dataclass

from minikd.engine import backend

END = "."  # ends a sentence; the text begins with one, so position 0 is always the sentence start

# Synonym classes: word -> weight within the class (each class sums to 1).
CLASSES = {
    "det_sg": {"the": 0.55, "a": 0.45},
    "det_pl": {"the": 0.6, "some": 0.4},
    "adj": {"small": 0.3, "big": 0.26, "old": 0.24, "young": 0.2},
    "animal_sg": {"cat": 0.32, "dog": 0.28, "bird": 0.22, "fox": 0.18},
    "animal_pl": {"cats": 0.32, "dogs": 0.28, "birds": 0.22, "foxes": 0.18},
    "person_sg": {"girl": 0.3, "boy": 0.28, "woman": 0.22, "man": 0.2},
    "person_pl": {"girls": 0.3, "boys": 0.28, "women": 0.22, "men": 0.2},
    "name": {"anna": 0.35, "ben": 0.3, "cleo": 0.2, "dan": 0.15},
    "eat_sg": {"eats": 0.6, "likes": 0.4},
    "eat_pl": {"eat": 0.6, "like": 0.4},
    "move_sg": {"runs": 0.4, "walks": 0.35, "jumps": 0.25},
    "move_pl": {"run": 0.4, "walk": 0.35, "jump": 0.25},
    "rest_sg": {"sleeps": 0.7, "rests": 0.3},
    "rest_pl": {"sleep": 0.7, "rest": 0.3},
    "read_sg": {"reads": 0.5, "writes": 0.3, "finds": 0.2},
    "read_pl": {"read": 0.5, "write": 0.3, "find": 0.2},
    "food": {"apples": 0.3, "pears": 0.25, "plums": 0.2, "figs": 0.15, "nuts": 0.1},
    "text": {"books": 0.35, "letters": 0.3, "poems": 0.2, "notes": 0.15},
    "adverb": {"fast": 0.35, "slowly": 0.35, "home": 0.3},
    "end": {END: 1.0},
}

# The automaton: state -> [(word class, probability, next state)], probabilities summing to 1.
# Subjects agree in number with their verb, verbs choose their objects, animals do not read.
RULES = {
    "start": [("det_sg", 0.45, "np_sg"), ("det_pl", 0.4, "np_pl"), ("name", 0.15, "vp_person_sg")],
    "np_sg": [("adj", 0.3, "noun_sg"), ("animal_sg", 0.35, "vp_animal_sg"), ("person_sg", 0.35, "vp_person_sg")],
    "np_pl": [("adj", 0.3, "noun_pl"), ("animal_pl", 0.35, "vp_animal_pl"), ("person_pl", 0.35, "vp_person_pl")],
    "noun_sg": [("animal_sg", 0.5, "vp_animal_sg"), ("person_sg", 0.5, "vp_person_sg")],
    "noun_pl": [("animal_pl", 0.5, "vp_animal_pl"), ("person_pl", 0.5, "vp_person_pl")],
    "vp_animal_sg": [("eat_sg", 0.5, "object_food"), ("move_sg", 0.3, "manner"), ("rest_sg", 0.2, "stop")],
    "vp_animal_pl": [("eat_pl", 0.5, "object_food"), ("move_pl", 0.3, "manner"), ("rest_pl", 0.2, "stop")],
    "vp_person_sg": [("eat_sg", 0.3, "object_food"), ("read_sg", 0.4, "object_text"), ("move_sg", 0.3, "manner")],
    "vp_person_pl": [("eat_pl", 0.3, "object_food"), ("read_pl", 0.4, "object_text"), ("move_pl", 0.3, "manner")],
    "object_food": [("food", 1.0, "stop")],
    "object_text": [("text", 1.0, "stop")],
    "manner": [("adverb", 0.6, "stop"), ("end", 0.4, "start")],
    "stop": [("end", 1.0, "start")],
}


@dataclass(frozen=True)
class Grammar:
    """The automaton as arrays (host NumPy): ``joint[s, w, s']`` = P(word w and next state s' | state s)."""

    words: tuple  # the vocabulary, token id = position
    states: tuple
    joint: object  # (states, V, states) float64

    @property
    def start(self):
        return self.states.index("start")

    def emission(self):
        """P(next word | state): (states, V)."""
        return self.joint.sum(axis=2)


def build():
    """The Grammar of ``RULES`` and ``CLASSES``, with words numbered in sorted order (``.`` first)."""
    np = backend.host_xp()
    words = tuple(sorted({w for c in CLASSES.values() for w in c}))
    states = tuple(RULES)
    joint = np.zeros((len(states), len(words), len(states)))
    for s, rules in RULES.items():
        for word_class, p_class, nxt in rules:
            for w, p_word in CLASSES[word_class].items():
                joint[states.index(s), words.index(w), states.index(nxt)] += p_class * p_word
    return Grammar(words, states, joint)


def sample(grammar, n_streams, length, seed, *keys):
    """(n_streams, length) token ids: independent texts, each starting with ``.`` then sentence after sentence.

    Drawn on the host from ``host_rng(seed, *keys)``: the same seed gives the same text on every backend.
    """
    np = backend.host_xp()
    rng = backend.host_rng(seed, *keys)
    n_states, V, _ = grammar.joint.shape
    cdf = np.cumsum(grammar.joint.reshape(n_states, V * n_states), axis=1)  # (states, V·states)
    tokens = np.empty((n_streams, length), dtype=np.int64)
    tokens[:, 0] = grammar.words.index(END)
    state = np.full(n_streams, grammar.start)
    for t in range(1, length):
        u = rng.random(n_streams)[:, None] * cdf[state, -1:]  # (n, 1), scaled by the row's exact total
        pick = np.minimum((u >= cdf[state]).sum(axis=1), V * n_states - 1)  # inverse CDF of (word, state')
        tokens[:, t], state = pick // n_states, pick % n_states
    return tokens


def true_next_token_probs(grammar, tokens):
    """P(token t+1 | tokens 0..t) for every position of every row of ``tokens`` (B, S), as (B, S, V).

    Each row is read from the start state after its first token (texts begin with ``.``), filtering
    the belief over states: b' ∝ Σ_s b(s)·joint[s, w, ·]. A prefix the grammar cannot produce
    raises a ValueError naming the row and position.
    """
    np = backend.host_xp()
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape (batch, sequence), got {tokens.shape}")
    B, S = tokens.shape
    if S and (tokens[:, 0] != grammar.words.index(END)).any():
        raise ValueError(f"every row must begin with {END!r} (a sentence start), the first token of the text")
    emission = grammar.emission()  # (states, V)
    belief = np.zeros((B, len(grammar.states)))
    belief[:, grammar.start] = 1.0
    probs = np.empty((B, S, len(grammar.words)))
    for t in range(S):
        if t > 0:  # condition on token t, then step the automaton
            belief = np.einsum("bs,bst->bt", belief, grammar.joint[:, tokens[:, t], :].transpose(1, 0, 2))
            total = belief.sum(axis=1, keepdims=True)
            if (total == 0).any():
                row = int(np.flatnonzero(total[:, 0] == 0)[0])
                raise ValueError(f"row {row} is impossible under the grammar at position {t} "
                                 f"(token {grammar.words[tokens[row, t]]!r})")
            belief /= total
        probs[:, t] = belief @ emission
    return probs


def entropy_rate(grammar, tokens):
    """Mean over positions of H(P(· | prefix)) in nats: the cross-entropy no model can beat on ``tokens``."""
    np = backend.host_xp()
    p = true_next_token_probs(grammar, tokens)
    return float(-(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=-1).mean())
