"""Context distillation (Bai et al. 2022, appendix A.1): a model trained to behave, without a
prompt, as its teacher behaves with one.

The teacher is a finished base-LM run, read with an HHH prompt c (P tokens) before every
transcript x (T tokens); the student starts from the teacher's own weights and reads x alone.
For each position t whose next token is real (m_t = [x_{t+1} != PAD]),

    q_t      = softmax over the teacher's top-k next-token logits at c + x_{<=t}
               (renormalised on those k tokens; the paper stores the top 50 of its 52B model
               and trains every size on the resulting 51-way distribution)
    L        = sum_t m_t KL(q_t || p_student(. | x_{<=t})) / sum_t m_t
             = sum_t m_t sum_{j in top-k} q_tj (log q_tj - log p_student(j | x_{<=t})) / sum_t m_t

The teacher's logits are computed in the step rather than stored (the same q, no file); its
weights never change. Transcripts are the LM corpus's (train split) with every row that already
opens with the prompt removed, so the student never sees c. The student's positions are those
of x alone, so the teacher needs P + T positions: `max_len` of the data is the teacher's max_len
minus P. In the synthetic world c is `tasks.HHH_PREAMBLE`, the exchange that opens the careful
assistant's transcripts in the corpus.

A distill run's model is an LM: PPO can start from it (`policy_init`), with it as the KL
reference, as the paper's policies start from the context-distilled model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hh_jax import models
from hh_jax.config import MeshConfig, OptimConfig, config_field, ladder_names, validate_fields
from hh_jax.data import pipeline
from hh_jax.data.batching import LMIterator
from hh_jax.data.world import tasks as world_tasks
from hh_jax.special_tokens import PAD_ID
from hh_jax.train import lifecycle
from hh_jax.train.lm import evaluate_lm
from hh_jax.train.optim import apply_gradients, current_learning_rate, init_train_state, \
    jit_train_step, make_optimizer


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  """One context-distillation run.

  Attributes:
    teacher: a finished LM run (its weights initialise the student too).
    model_size: the teacher's ladder rung (checked; it names the run for `ref`).
    prompt: the context the teacher reads before each transcript; "world" is the synthetic
      world's HHH preamble (`tasks.HHH_PREAMBLE`), anything else is text in the dataset's
      tokenizer.
    dataset: the transcripts (an LM corpus; "text" fields).
    num_transcripts: transcripts distilled on (None: the whole train split), one epoch.
    top_k: teacher tokens kept per position (the paper: 50).
  """

  kind: str = config_field("distill", choices=("distill",))
  teacher: str = ""
  model_size: str = config_field("25k", choices=ladder_names)
  prompt: str = "world"
  dataset: str = "hh_synth/lm"
  data_dir: str | None = None
  tokenizer: str = "auto"
  num_transcripts: int | None = config_field(20_000, ge=1)
  top_k: int = config_field(50, ge=1)
  batch_size: int = config_field(64, ge=1)
  seed: int = config_field(0, ge=0)
  log_every: int = config_field(50, ge=0)
  checkpoint_every: int = config_field(500, ge=0)
  optim: OptimConfig = OptimConfig(learning_rate=5e-4, warmup_steps=20, schedule="linear")
  mesh: MeshConfig = MeshConfig()

  def __post_init__(self):
    validate_fields(self)


def prompt_ids(cfg: DistillConfig) -> np.ndarray:
  """(P,) token ids of the teacher's prompt."""
  text = world_tasks.HHH_PREAMBLE if cfg.prompt == "world" else cfg.prompt
  return np.asarray(pipeline.get_tokenizer(cfg.dataset, cfg.tokenizer).encode(text), np.int32)


def top_k_targets(teacher_logits: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """(..., V) logits -> the k most likely ids (..., k) and q, their renormalised
  probabilities (..., k): q_j = exp(l_j) / sum_{i in top-k} exp(l_i)."""
  values, ids = jax.lax.top_k(teacher_logits, k)
  return ids, jax.nn.softmax(values, axis=-1)


def distill_loss(graphdef, params, teacher_params, tokens_bt: jax.Array, prompt_p: jax.Array,
                 top_k: int):
  """L of the module docstring, and metrics. tokens (B, T) right-padded; prompt (P,)."""
  b = tokens_bt.shape[0]
  p = prompt_p.shape[0]
  teacher_in = jnp.concatenate([jnp.broadcast_to(prompt_p, (b, p)), tokens_bt], axis=1)
  t_logits = models.apply(graphdef, teacher_params, teacher_in).logits[:, p:-1]   # (B, T-1, V)
  t_logits = jax.lax.stop_gradient(t_logits)
  s_logits = models.apply(graphdef, params, tokens_bt).logits[:, :-1]            # (B, T-1, V)
  ids, q = top_k_targets(t_logits, top_k)                                         # (B, T-1, k)
  s_logp = jnp.take_along_axis(jax.nn.log_softmax(s_logits, axis=-1), ids, axis=-1)
  kl = jnp.sum(q * (jnp.log(jnp.maximum(q, 1e-30)) - s_logp), axis=-1)            # (B, T-1)
  mask = (tokens_bt[:, 1:] != PAD_ID).astype(jnp.float32)
  n = jnp.maximum(mask.sum(), 1.0)
  agree = (s_logits.argmax(-1) == t_logits.argmax(-1)) * mask
  return jnp.sum(kl * mask) / n, {"top1_agreement": agree.sum() / n, "tokens": mask.sum()}


# One compilation per (architecture, shapes, k) for every evaluation of a run (student and
# teacher params are arguments, not constants baked into the program).
_jitted_loss = jax.jit(distill_loss, static_argnums=(0, 5))


def make_step(graphdef, optimizer, prompt_p: np.ndarray, top_k: int, donate: bool = True):
  """A jitted `step(state, batch, key) -> (state, metrics)`; batch = {"tokens", "teacher"}."""
  prompt = jnp.asarray(prompt_p)

  def step(state, batch, key):
    del key                                        # no dropout: the student is deterministic
    (loss, metrics), grads = jax.value_and_grad(
        lambda prm: distill_loss(graphdef, prm, batch["teacher"], batch["tokens"], prompt, top_k),
        has_aux=True)(state["params"])
    new_state = apply_gradients(state, grads, optimizer)
    metrics = {**metrics, "kl": loss, "grad_norm": optax.tree.norm(grads),
               "learning_rate": current_learning_rate(state["opt_state"])}
    return new_state, {f"distill/{k}": v for k, v in metrics.items()}

  return jit_train_step(step, donate)


def without_prompt(tokens_nt: np.ndarray, prompt_p: np.ndarray) -> np.ndarray:
  """The rows of (N, T) that do not open with the prompt's P tokens."""
  p = len(prompt_p)
  opens = np.all(tokens_nt[:, :p] == prompt_p[None, :], axis=1) if tokens_nt.shape[1] >= p \
      else np.zeros(len(tokens_nt), bool)
  return tokens_nt[~opens]


def mean_distill_kl(graphdef, params, teacher_params, tokens_nt: np.ndarray, prompt_p: np.ndarray,
                    top_k: int, batch_size: int) -> float:
  """Token-weighted mean L over the full batches of tokens_nt."""
  total = n = 0.0
  for start in range(0, len(tokens_nt) - batch_size + 1, batch_size):
    loss, m = _jitted_loss(graphdef, params, teacher_params,
                           jnp.asarray(tokens_nt[start:start + batch_size]), jnp.asarray(prompt_p),
                           top_k)
    total += float(loss) * float(m["tokens"])
    n += float(m["tokens"])
  return total / max(n, 1.0)


def build_task(cfg: DistillConfig, run_dir: str, inputs=None) -> lifecycle.Task:
  """A distillation run (module docstring). inputs: optional (train (N, T), eval (M, T)) token
  matrices, right-padded, for tests."""
  del run_dir
  teacher = lifecycle.load_model(cfg.teacher)
  if lifecycle.read_config_field(cfg.teacher, "model_size") not in (None, cfg.model_size):
    raise lifecycle.RunError(f"distill: teacher {cfg.teacher} is not a {cfg.model_size} model")
  prompt = prompt_ids(cfg)
  width = teacher.cfg.max_len - len(prompt)
  if width < 8:
    raise lifecycle.RunError(f"distill: the prompt has {len(prompt)} tokens, the teacher reads "
                             f"only {teacher.cfg.max_len}")
  if inputs is None:
    from hh_jax.config import DataConfig
    data = pipeline.load_lm_data(DataConfig(dataset=cfg.dataset, data_dir=cfg.data_dir,
                                            tokenizer=cfg.tokenizer, max_len=width,
                                            num_train_pairs=None), cfg.seed)
    train, evals = data.train_tokens, data.eval_tokens
  else:
    train, evals = inputs
  train, evals = without_prompt(train, prompt), without_prompt(evals, prompt)
  train = train[:cfg.num_transcripts]
  if len(train) < cfg.batch_size:
    raise lifecycle.RunError(f"distill: {len(train)} transcripts for batch_size {cfg.batch_size}")
  batches = LMIterator(train, cfg.batch_size, seed=cfg.seed, num_epochs=1)
  optimizer = make_optimizer(cfg.optim, len(batches))
  state = init_train_state(jax.tree.map(jnp.array, teacher.params), optimizer)
  step = make_step(teacher.graphdef, optimizer, prompt, cfg.top_k)

  def finish(state):
    params = jax.device_get(state["params"])
    kl = mean_distill_kl(teacher.graphdef, params, teacher.params, evals, prompt, cfg.top_k,
                         cfg.batch_size)
    kl0 = mean_distill_kl(teacher.graphdef, teacher.params, teacher.params, evals, prompt,
                          cfg.top_k, cfg.batch_size)
    summary = {"eval/distill_kl": kl, "eval/distill_kl_initial": kl0,
               **evaluate_lm(teacher.graphdef, params, evals, cfg.batch_size),
               "model_size": cfg.model_size, "data/num_train": int(len(train)),
               "params/non_embedding": models.count_params(teacher.cfg)}
    return lifecycle.Outputs(summary=summary, model=(teacher.cfg, params))

  return lifecycle.Task(
      state=state, step=step, batches=batches, num_steps=len(batches),
      key=jax.random.key(cfg.seed), finish=finish, loss_key="distill/kl",
      log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every,
      examples_per_step=cfg.batch_size,
      to_device=lambda b: {"tokens": jnp.asarray(b.tokens), "teacher": teacher.params},
      count_tokens=lambda b: int((b.tokens != PAD_ID).sum()))
