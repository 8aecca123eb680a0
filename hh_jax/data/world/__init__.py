"""The synthetic HH world: a laptop-scale stand-in for HH-RLHF with a known ground truth.

    tokenizer    vocab.WorldTokenizer()                       word-level, ids 0..2 special
    gold reward  gold.gold_scores(context_ids, reply_ids)     {"helpful", "harmless", "hh"}
                 gold.gold_scores_text(contexts, replies)
    labeler      labeler.label_pairs(contexts, a, b, rng, reward="helpful")
    data         corpus.corpus(seed, n), corpus.sample_prompts(seed, n, mix),
                 corpus.comparisons(subset, seed, n), policy.sample_reply(rng, context)
    report       stats.compute_stats(), `hh-jax world stats [--json]`

The TFDS dataset `hh_synth` (hh_jax/data/hh_synth.py) serves the same examples.
"""

# (`corpus.corpus` is not re-exported: the name is the module's.)
from hh_jax.data.world.corpus import comparisons, sample_prompt_records, sample_prompts
from hh_jax.data.world.gold import gold_scores, gold_scores_text
from hh_jax.data.world.labeler import bayes_accuracy, label_pairs, preference_prob
from hh_jax.data.world.policy import sample_pair, sample_reply
from hh_jax.data.world.tasks import parse_context
from hh_jax.data.world.vocab import WorldTokenizer
