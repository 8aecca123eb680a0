#!/bin/bash
# World 101 (v4 data, validation split): PM LR scan at 16k pairs, one seed, 25k/100k/400k from the quick-budget base LMs.
# Usage: BASE_LMS=DIR DATA_DIR=DIR OUT=DIR bash pm_lr_scan.sh   (BASE_LMS: a base_lm directory of world 101, one run per size)
PY=${PYTHON:-python}   # run from the repository root
for lr in 3e-4 1e-3 3e-3; do
  R="$OUT"/lr$lr; mkdir -p $R; ln -sfn "$BASE_LMS" $R/base_lm
  $PY -m hh_jax.cli sweep pm_scaling --world-seed 101 --data_dir "$DATA_DIR" --root $R \
    --set data.eval_split=validation --set optim.learning_rate=$lr \
    --axis 'pm_sizes=("25k","100k","400k")' --axis 'num_pairs=(16000,)' --axis 'seeds=(0,)'
done
for f in "$OUT"/lr*/pm_scaling/*/summary.json; do
  python3 -c "import json,sys; d=json.load(open('$f')); print('$f'.split('/')[4], d['model_size'], 'acc %.4f helpful %.4f harmless %.4f bow %.4f' % (d['eval/accuracy'], d['eval/accuracy_helpful'], d['eval/accuracy_harmless'], d['eval/bow_baseline_accuracy']))"
done
