"""World seeds: `--world-seed N` re-draws the facts, every dataset and every seed; validation
is a split of its own."""

import numpy as np
import pytest

from hh_jax.data import hh_synth, pipeline
from hh_jax.data.world import corpus, gold, tasks, vocab
from hh_jax.reproduce import default_out
from hh_jax.train import experiment as ex


def _fact_context(p: int) -> str:
  return tasks.render([(f"what color is {tasks.person_name(p)} ?", None)])


def test_world_tables_are_a_pure_function_of_the_seed_and_differ_between_seeds():
  a, b, c = tasks.world(1), tasks.world(1), tasks.world(2)
  np.testing.assert_array_equal(a.fact_color, b.fact_color)
  assert a.fact_color.shape == (16 * 16 * 16,)
  # Two independent uniform draws over 8 colours agree on about 1/8 of the 4096 people.
  agree = np.mean(a.fact_color == c.fact_color)
  assert 0.08 < agree < 0.17
  # The popularity order is a permutation and rank_of_person its inverse.
  np.testing.assert_array_equal(np.sort(a.people_by_rank), np.arange(tasks.NUM_PEOPLE))
  np.testing.assert_array_equal(a.rank_of_person[a.people_by_rank], np.arange(tasks.NUM_PEOPLE))


def test_person_names_round_trip_through_the_parser():
  for p in (0, 1, 255, 256, 4095):
    name = tasks.person_name(p)
    first, last, _, place = name.split()
    assert tasks.person_index(first, last, place) == p


def test_the_gold_reward_of_a_fact_answer_follows_the_world_table():
  w0, w1 = tasks.world(0), tasks.world(1)
  p = int(np.flatnonzero(w0.fact_color != w1.fact_color)[0])
  context = _fact_context(p)
  color0 = vocab.COLORS[int(w0.fact_color[p])]
  color1 = vocab.COLORS[int(w1.fact_color[p])]
  # Right in its own world (acc = 1: helpful = 1), wrong in the other (acc = 0: helpful = -1).
  in0 = gold.gold_scores_text([context] * 2, [f" {color0}", f" {color1}"], world_seed=0)
  in1 = gold.gold_scores_text([context] * 2, [f" {color0}", f" {color1}"], world_seed=1)
  np.testing.assert_allclose(in0["helpful"], [1.0, -1.0])
  np.testing.assert_allclose(in1["helpful"], [-1.0, 1.0])
  # The person's popularity rank is the spec's difficulty, 1-based.
  assert tasks.parse_context(context, 1).difficulty == int(w1.rank_of_person[p]) + 1


def test_datasets_differ_between_worlds_and_between_validation_and_test():
  base = corpus.comparisons("helpful", 0, 50, "test")
  again = corpus.comparisons("helpful", 0, 50, "test")
  other_world = corpus.comparisons("helpful", 0, 50, "test", world_seed=1)
  validation = corpus.comparisons("helpful", 0, 50, "validation")
  assert base.columns["chosen_full"] == again.columns["chosen_full"]
  for cs in (other_world, validation):
    same = np.mean([a == b for a, b in zip(base.columns["context"], cs.columns["context"])])
    assert same < 0.2
  with pytest.raises(ValueError, match="split must be one of"):
    corpus.comparisons("helpful", 0, 5, "valid")


def test_fact_labels_in_a_world_agree_with_that_worlds_table():
  cs = corpus.comparisons("helpful", 0, 400, "train", world_seed=3)
  w = tasks.world(3)
  checked = 0
  for ctx, chosen, rejected, task in zip(cs.columns["context"], cs.columns["chosen"],
                                         cs.columns["rejected"], cs.columns["task"]):
    if task != "fact":
      continue
    words = ctx.split("Human:")[-1].split("Assistant:")[0].split()
    p = tasks.person_index(words[3], words[4], words[6])
    right = f" {vocab.COLORS[int(w.fact_color[p])]}"
    g = gold.gold_scores_text([ctx] * 2, [right, chosen], world_seed=3)
    assert g["helpful"][0] >= g["helpful"][1]      # nothing beats the table's colour
    checked += 1
  assert checked > 50


@pytest.mark.parametrize("name, world, expected", [
    ("hh_synth/mix", 3, "hh_synth/mix-w3"),
    ("hh_synth/mix-w3", 0, "hh_synth/mix"),
    ("hh_synth/prompts-20000-s0-h90", 2, "hh_synth/prompts-20000-s0-h90-w2"),
    ("hh_rlhf/all", 2, "hh_rlhf/all"),
])
def test_dataset_names_move_between_worlds(name, world, expected):
  assert hh_synth.in_world(name, world) == expected
  if name.startswith("hh_synth"):
    assert hh_synth.world_seed_of(expected) == world
    cfg = hh_synth.config_from_name(expected.split("/")[1])
    assert cfg.world_seed == world
    assert cfg.size == hh_synth.config_from_name(name.split("/")[1]).size


def test_the_gold_function_of_a_dataset_is_its_worlds():
  p = int(np.flatnonzero(tasks.world(0).fact_color != tasks.world(4).fact_color)[0])
  ctx = np.array([vocab.WorldTokenizer().encode(_fact_context(p))])
  reply = gold.encode_replies([f" {vocab.COLORS[int(tasks.world(4).fact_color[p])]}"])
  assert pipeline.gold_fn("hh_synth/prompts-w4")(ctx, reply)["helpful"][0] == 1.0
  assert pipeline.gold_fn("hh_synth/prompts")(ctx, reply)["helpful"][0] == -1.0
  assert pipeline.gold_fn("hh_rlhf/all") is None


def test_a_planned_world_moves_every_dataset_and_seed_and_keeps_names_and_refs(tmp_path):
  from experiments.presets import PRESETS
  root = str(tmp_path)
  base = ex.plan("pm_scaling", root, PRESETS["smoke"])
  moved = ex.plan("pm_scaling", root, PRESETS["smoke"], world_seed=2)
  assert [r.name for r in base] == [r.name for r in moved]
  assert [r.dir for r in base] == [r.dir for r in moved]
  for b, m in zip(base, moved):
    assert m.config.seed == b.config.seed + 2 * ex.WORLD_SEED_STRIDE
    assert m.config.data.dataset == hh_synth.in_world(b.config.data.dataset, 2)
    assert m.config.init_from == b.config.init_from       # refs resolve to the same runs
  ppo = ex.plan("ppo", root, PRESETS["smoke"], world_seed=2)
  assert all(r.config.prompt_dataset.endswith("-w2") for r in ppo)
  assert ex.datasets_of(ppo) and all(d.endswith("-w2") for d in ex.datasets_of(ppo))
  from hh_jax.train.ppo import PPOConfig
  held_out = ex.in_world(PPOConfig(eval_prompt_dataset="hh_synth/prompts-20000-s0-h50"), 2)
  assert held_out.eval_prompt_dataset == "hh_synth/prompts-20000-s0-h50-w2"


def test_each_world_has_its_own_results_directory():
  assert default_out("laptop") == "results/laptop"
  assert default_out("laptop", 3) == "results/laptop-ws3"
