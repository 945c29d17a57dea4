"""``minikd generate RUN_DIR``: sample text from a trained run's checkpoint, as nanoGPT's sample.py does."""

import warnings

from minikd.engine import backend
from minikd.recipes import sizes
from minikd.recipes.teacher import open_run
from minikd.tasks.data import TASKS


def generate(run_dir, prompt="", max_new_tokens=32, temperature=1.0, top_k=None, seed=0, samples=1, task_name=None,
             data=None):
    """Encode ``prompt`` with the run's tokenizer, extend it ``samples`` times, return the decoded texts.

    An empty prompt starts from the first token of a validation window. Temperature 0 is greedy,
    temperature ∞ uniform over the top-k tokens (over all without ``top_k``). A prompt longer than the
    model reads keeps its last ``block_size`` tokens, with a warning.
    """
    _, model, task = open_run(run_dir, task_name, data)
    config = model.config
    sizes.check_memory(f"--samples {samples} with --max-new-tokens {max_new_tokens}",  # tokens, and one step's logits
                       sizes.FLOAT_BYTES * samples * (max_new_tokens
                                                      + config.block_size * (config.vocab_size + 4 * config.n_embd)))
    xp = backend.xp()
    if prompt:
        ids = task.tokenizer.encode(prompt)
    else:
        ids = [int(backend.to_numpy(task.eval_set("val", 1)[0])[0, 0])]
    if len(ids) > model.config.block_size:
        warnings.warn(f"the prompt has {len(ids)} tokens; the model reads {model.config.block_size}, so only "
                      f"the last {model.config.block_size} are used")
        ids = ids[-model.config.block_size:]
    rows = xp.asarray([ids] * samples, dtype=xp.int64, device=backend.device())  # (samples, P)
    sequences = model.generate(rows, max_new_tokens, temperature=temperature, top_k=top_k, seed=seed)
    return [task.tokenizer.decode(row) for row in backend.to_numpy(sequences)]


def add_commands(commands):
    """``minikd generate``."""
    parser = commands.add_parser("generate", help="sample from a run's checkpoint")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (with checkpoint.npz) or a checkpoint file")
    parser.add_argument("--prompt", default="", help="text to continue, in the run's vocabulary "
                                                     "(words for grammar, characters for addition and text)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens to add")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="sampling temperature (0: greedy; inf: uniform over the allowed tokens)")
    parser.add_argument("--top-k", type=int, default=None, help="sample only among the k most likely tokens")
    parser.add_argument("--greedy", action="store_true", help="the most likely token each step (temperature 0)")
    parser.add_argument("--samples", type=int, default=1, help="independent samples of the same prompt")
    parser.add_argument("--seed", type=int, default=0, help="the sampling draws")
    parser.add_argument("--task", choices=TASKS, default=None, help="default: the run's own task")
    parser.add_argument("--data", metavar="FILE", help="the text file of a 'text' run (its vocabulary)")
    parser.set_defaults(run=_command)


def _command(args):
    if args.samples < 1:
        raise ValueError(f"--samples must be a positive integer, got {args.samples}")
    if args.max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens must be an integer >= 0, got {args.max_new_tokens}")
    if args.greedy and args.temperature != 1.0:
        raise ValueError(f"--greedy and --temperature {args.temperature} contradict each other: give one of them")
    temperature = 0.0 if args.greedy else args.temperature
    if temperature == 0 and args.top_k is not None:
        warnings.warn(f"--top-k {args.top_k} has no effect on greedy decoding (the top token is taken)")
    texts = generate(args.run_dir, args.prompt, args.max_new_tokens, temperature, args.top_k, args.seed, args.samples,
                     args.task, args.data)
    for text in texts:
        print(text)
    return 0
