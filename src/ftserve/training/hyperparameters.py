"""How "auto" hyperparameters are resolved, and the learning-rate schedule built from them.

``n_epochs`` (OpenAI's published rule): aim for 3 epochs; if that is fewer than 100 example
passes, use ``min(25, 100 // n)`` epochs; if it is more than 25,000, use ``max(1, 25000 // n)``.

``batch_size``: about 0.2% of the training examples, rounded, at least 1 and at most 256 (and
never more than the number of examples). 101 examples give batch size 1, as in OpenAI's
published example (101 examples, 3 epochs, 303 steps); 1,000 give 2; 10,000 give 20; from
128,000 on it stays at 256.

``learning_rate_multiplier``: auto is 1.0. The learning rate of a job is
``BASE_LEARNING_RATE_LORA`` (2e-4, usual for LoRA adapters) or ``BASE_LEARNING_RATE_FULL``
(2e-5, usual for full fine-tuning, which moves every weight) times the multiplier.

``beta`` (DPO only): auto is 0.1, the value of the DPO paper's experiments; supervised jobs report
``None``.

Reinforcement jobs (``method.type`` ``reinforcement``; a step's unit is a prompt):

- ``batch_size``: auto is 4 prompts (fewer if the file has fewer): every prompt is answered
  several times, and each answer is trained on;
- ``n_epochs``: auto is the fewest epochs that make 12 steps (a policy needs several updates to
  move; a large file makes them in one epoch), at most 25;
- ``compute_multiplier``: auto is 1.0; answers sampled per prompt: ``round(4 *
  compute_multiplier)``, at least 2 (a group of one has no relative advantage) and at most 64;
- ``learning_rate_multiplier``: auto is 5 with LoRA (a learning rate of 1e-3) and 1.0 for a full
  fine-tune: a policy-gradient step carries a weaker signal than a supervised one, and at 2e-4
  a dozen LoRA steps barely move the policy (measured on the README's example: held-out reward
  0.15 -> 0.18 at a multiplier of 1, -> 0.54 at 5);
- ``eval_interval``: auto is a fifth of the steps (at least 1); ``eval_samples``: auto is 1
  answer per validation prompt; the whole validation file is graded each time;
- ``reasoning_effort``: ``default`` unless given; the models trained here do not reason apart
  from their answer, so it changes nothing (it is recorded and echoed);
- a sampled answer has at most ``ftserve.max_completion_tokens`` tokens (auto:
  :data:`AUTO_MAX_ANSWER`).

Steps: ``total_steps = n_epochs * ceil(n_examples / batch_size)``; the last batch of an epoch may
be smaller. Examples are the usable ones: those with at least one trained token after
truncation.

Schedule: linear warm-up over the first 3% of the steps (at least one step), then linear decay
that reaches zero one step after the last step, so no step is wasted at learning rate 0. AdamW
(betas 0.9/0.999, eps 1e-8, no weight decay) and gradient-norm clipping at 1.0.
"""

from __future__ import annotations

import math

from ftserve.training.spec import ResolvedHyperparameters, TrainingSpec

BASE_LEARNING_RATE_LORA = 2e-4
BASE_LEARNING_RATE_FULL = 2e-5
AUTO_LEARNING_RATE_MULTIPLIER = 1.0
AUTO_BETA = 0.1
MAX_AUTO_BATCH_SIZE = 256
WARMUP_FRACTION = 0.03
MAX_GRAD_NORM = 1.0
AUTO_RFT_BATCH_SIZE = 4
AUTO_RFT_LORA_LEARNING_RATE_MULTIPLIER = 5.0
RFT_MIN_AUTO_STEPS = 12
SAMPLES_PER_UNIT_COMPUTE = 4
MAX_SAMPLES_PER_PROMPT = 64
AUTO_EVAL_FRACTION = 5
AUTO_MAX_ANSWER = 256


def auto_n_epochs(n_examples: int) -> int:
    if n_examples * 3 < 100:
        return min(25, 100 // n_examples)
    if n_examples * 3 > 25000:
        return max(1, 25000 // n_examples)
    return 3


def auto_batch_size(n_examples: int) -> int:
    return max(1, min(MAX_AUTO_BATCH_SIZE, n_examples, round(n_examples * 0.002)))


def samples_per_prompt(compute_multiplier: float) -> int:
    wanted = round(SAMPLES_PER_UNIT_COMPUTE * compute_multiplier)
    return max(2, min(MAX_SAMPLES_PER_PROMPT, wanted))


def _resolve_reinforcement(spec: TrainingSpec, n_examples: int) -> ResolvedHyperparameters:
    batch_size = spec.batch_size if spec.batch_size is not None else AUTO_RFT_BATCH_SIZE
    batch_size = min(batch_size, n_examples)
    steps_per_epoch = math.ceil(n_examples / batch_size)
    n_epochs = spec.n_epochs
    if n_epochs is None:
        n_epochs = min(25, math.ceil(RFT_MIN_AUTO_STEPS / steps_per_epoch))
    total_steps = n_epochs * steps_per_epoch
    compute = spec.compute_multiplier if spec.compute_multiplier is not None else 1.0
    multiplier = spec.learning_rate_multiplier
    if multiplier is None:
        multiplier = (
            AUTO_RFT_LORA_LEARNING_RATE_MULTIPLIER if spec.lora else AUTO_LEARNING_RATE_MULTIPLIER
        )
    return ResolvedHyperparameters(
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate_multiplier=multiplier,
        beta=None,
        total_steps=total_steps,
        n_examples=n_examples,
        compute_multiplier=compute,
        eval_interval=spec.eval_interval or max(1, round(total_steps / AUTO_EVAL_FRACTION)),
        eval_samples=spec.eval_samples or 1,
        reasoning_effort=spec.reasoning_effort,
        samples_per_prompt=samples_per_prompt(compute),
    )


def resolve(spec: TrainingSpec, n_examples: int) -> ResolvedHyperparameters:
    if n_examples < 1:
        raise ValueError("cannot resolve hyperparameters for an empty training set")
    if spec.method == "reinforcement":
        return _resolve_reinforcement(spec, n_examples)
    n_epochs = spec.n_epochs if spec.n_epochs is not None else auto_n_epochs(n_examples)
    batch_size = spec.batch_size if spec.batch_size is not None else auto_batch_size(n_examples)
    # An explicit batch size larger than the data set would only repeat nothing; OpenAI clamps too.
    batch_size = min(batch_size, n_examples)
    multiplier = (
        spec.learning_rate_multiplier
        if spec.learning_rate_multiplier is not None
        else AUTO_LEARNING_RATE_MULTIPLIER
    )
    beta: float | None = None
    if spec.method == "dpo":
        beta = spec.beta if spec.beta is not None else AUTO_BETA
    return ResolvedHyperparameters(
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate_multiplier=multiplier,
        beta=beta,
        total_steps=n_epochs * math.ceil(n_examples / batch_size),
        n_examples=n_examples,
    )


def learning_rate(spec: TrainingSpec, hp: ResolvedHyperparameters) -> float:
    base = BASE_LEARNING_RATE_LORA if spec.lora else BASE_LEARNING_RATE_FULL
    return base * hp.learning_rate_multiplier


def warmup_steps(total_steps: int) -> int:
    return max(1, math.ceil(total_steps * WARMUP_FRACTION))


class LinearWarmupDecay:
    """Learning-rate factor for 0-based step ``i`` (a picklable callable for ``LambdaLR``)."""

    def __init__(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.warmup = warmup_steps(total_steps)

    def __call__(self, i: int) -> float:
        if i < self.warmup:
            return (i + 1) / self.warmup
        return max(0.0, (self.total_steps - i) / max(1, self.total_steps - self.warmup + 1))
