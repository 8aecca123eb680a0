"""Packed rows: every token of a batch computed once (no padding, shared contexts once).

PM pairs. The two rows of a comparison, `c = context + chosen + [EOC]` (length l_c) and
`r = context + rejected + [EOC]` (length l_r), share a prefix of p tokens,

    p = min(LCP(c, r), l_c - 1, l_r - 1)          (LCP: longest common prefix)

(the context, and any first reply tokens the two replies share; each reply keeps at least
its EOC). A pair becomes ONE segment of l_c + l_r - p tokens:

    tokens    c[:p]        | c[p:l_c]          | r[p:l_r]
    positions 0 .. p-1     | p .. l_c - 1      | p .. l_r - 1
    branch    0 (shared)   | 1                 | 2

With the mask of `hh_jax.models.transformer.packed_mask` (key j visible to query i iff
j <= i, same segment, and branch_j in {0, branch_i}) every token sees exactly the tokens
and positions it sees in its padded row, so the scores, read at the two EOC tokens, and
their gradients equal the padded path's. A pair longer than the row (l_c + l_r - p > L)
is packed as two plain segments, c and r (each at most T <= L tokens), with no sharing.

Rows. The segments of one batch are placed by first-fit decreasing: longest first (ties
in batch order), each into the first row with room, so only a row's tail is padding
(segment id 0). Shapes are static per run (`PackedLayout`): the row length L, R = the most rows any batch of the run needs and K = the most
scores any row holds, both found by running the same placement over every batch of the
run up front (`plan_layout`), so a run compiles its step once. The B pairs of each
optimizer step are the padded path's B pairs: step counts and schedules do not change.

Batches (dicts of numpy arrays; B pairs, R rows of L tokens, K score slots per row):
    tokens, positions, segment_ids, branch_ids   (R, L) int32
    score_index                                  (R, K) int32, EOC columns of each row
    pair_slots                                   (B, 2) int32, flat r * K + k of the chosen
                                                 and rejected score of pair b
    pair_valid                                   (B,) float32, 1 for a packed pair

LM documents. Each right-padded document (its non-PAD tokens) is one segment, positions
0 .. n-1, branch 0, placed by the same first-fit decreasing rule into rows of L = T.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

import numpy as np

from hh_jax.special_tokens import PAD_ID


class PackedLayout(NamedTuple):
  """Static shapes of a run's packed batches: R rows of L tokens, K score slots per row."""

  rows: int
  row_len: int
  slots: int


# ----------------------------------------------------------------------------- pair lengths


def shared_prefix_len(chosen_bt, rejected_bt, chosen_eoc_b, rejected_eoc_b) -> np.ndarray:
  """p = min(LCP(chosen, rejected), eoc_c, eoc_r) per pair: (B, T) x 2, (B,) x 2 -> (B,) int."""
  same = np.cumprod(np.asarray(chosen_bt) == np.asarray(rejected_bt), axis=1).sum(axis=1)
  return np.minimum(same, np.minimum(chosen_eoc_b, rejected_eoc_b)).astype(np.int64)


def default_row_len(seq_len: int) -> int:
  """L = 2 T: a pair with any shared prefix fits one row, and only a row's tail is padding."""
  return 2 * int(seq_len)


def row_len_candidates(seq_len: int) -> tuple[int, ...]:
  """The row lengths a run chooses from (`choose_layout`): T, 3T/2 and 2T, rounded up to 8."""
  up8 = lambda n: -(-int(n) // 8) * 8  # noqa: E731
  return tuple(sorted({up8(seq_len), up8(1.5 * seq_len), up8(2 * seq_len)}))


def choose_layout(plan, candidates: Sequence[int], cost_per_token) -> PackedLayout:
  """The layout of least  R * L * cost_per_token(L)  over row lengths L in candidates, where
  plan(L) -> PackedLayout (e.g. a step's FLOPs: L tokens per row, each attending over L keys)."""
  layouts = [plan(row_len) for row_len in candidates]
  return min(layouts, key=lambda lay: lay.rows * lay.row_len * cost_per_token(lay.row_len))


def pair_segments(chosen_len, rejected_len, prefix, row_len: int) -> list[tuple[int, int, int]]:
  """(pair, kind, length) segments of a batch: kind 0 = the shared pair (l_c + l_r - p),
  kind 1 / 2 = the chosen / rejected row alone, when the shared pair is longer than row_len."""
  segments = []
  for i, (lc, lr, p) in enumerate(zip(chosen_len, rejected_len, prefix)):
    shared = int(lc + lr - p)
    if shared <= row_len:
      segments.append((i, 0, shared))
    else:
      segments += [(i, 1, int(lc)), (i, 2, int(lr))]
  return segments


def first_fit_decreasing(lengths: Sequence[int], row_len: int) -> list[list[int]]:
  """Rows as lists of item indices: items by decreasing length (stable), each into the first
  row whose free space >= its length. Every length must be <= row_len."""
  rows: list[list[int]] = []
  free: list[int] = []
  for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
    if lengths[i] > row_len:
      raise ValueError(f"a segment of {lengths[i]} tokens does not fit a row of {row_len}")
    r = next((r for r, f in enumerate(free) if f >= lengths[i]), len(rows))
    if r == len(rows):
      rows.append([])
      free.append(row_len)
    rows[r].append(i)
    free[r] -= lengths[i]
  return rows


def _scores_in(kind: int) -> int:
  return 2 if kind == 0 else 1


def placement_size(segments, row_len: int) -> tuple[int, int]:
  """(rows used, most scores in one row) of a batch's segments."""
  rows = first_fit_decreasing([s[2] for s in segments], row_len)
  return len(rows), max((sum(_scores_in(segments[i][1]) for i in row) for row in rows), default=0)


def plan_layout(batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], row_len: int,
                multiple_of: int = 1) -> PackedLayout:
  """The run's layout from (chosen_len, rejected_len, prefix) of every batch: R = the most
  rows any batch needs (rounded up to a multiple of `multiple_of`, e.g. the devices of the
  mesh), K = the most scores any row holds."""
  rows, slots = 1, 1
  for lc, lr, p in batches:
    r, k = placement_size(pair_segments(lc, lr, p, row_len), row_len)
    rows, slots = max(rows, r), max(slots, k)
  rows = -(-rows // multiple_of) * multiple_of
  return PackedLayout(rows=rows, row_len=row_len, slots=slots)


def pair_lengths(arrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(l_c, l_r, p) (N,) of every pair of a PairArrays (or of a PM batch dict)."""
  get = (lambda k: arrays[k]) if isinstance(arrays, dict) else (lambda k: getattr(arrays, k))
  lc, lr = get("chosen_eoc_index") + 1, get("rejected_eoc_index") + 1
  p = shared_prefix_len(get("chosen_tokens"), get("rejected_tokens"), lc - 1, lr - 1)
  return lc.astype(np.int64), lr.astype(np.int64), p


def plan_pair_layout(arrays, batch_rows: Iterable[np.ndarray], row_len: int,
                     multiple_of: int = 1) -> PackedLayout:
  """`plan_layout` over the batches `batch_rows` (row indices into `arrays`) of a run."""
  lc, lr, p = pair_lengths(arrays)
  return plan_layout(((lc[r], lr[r], p[r]) for r in batch_rows), row_len, multiple_of)


# ----------------------------------------------------------------------------- packing pairs


def _empty_rows(layout: PackedLayout) -> dict:
  shape = (layout.rows, layout.row_len)
  return {"tokens": np.full(shape, PAD_ID, np.int32), "positions": np.zeros(shape, np.int32),
          "segment_ids": np.zeros(shape, np.int32), "branch_ids": np.zeros(shape, np.int32),
          "score_index": np.zeros((layout.rows, layout.slots), np.int32)}


def _place(out, row: int, col: int, tokens, positions, branch: int, segment: int) -> int:
  """Write one run of tokens at out[*][row, col:col+n]; returns the next column."""
  n = len(tokens)
  out["tokens"][row, col:col + n] = tokens
  out["positions"][row, col:col + n] = positions
  out["branch_ids"][row, col:col + n] = branch
  out["segment_ids"][row, col:col + n] = segment
  return col + n


def _segment_parts(kind: int, chosen_b, rejected_b, lc: int, lr: int, p: int):
  """[(branch, tokens, first position)] of one segment: the shared pair (kind 0: prefix,
  chosen reply, rejected reply) or one whole row (kind 1 chosen, kind 2 rejected)."""
  if kind == 0:
    return [(0, chosen_b[:p], 0), (1, chosen_b[p:lc], p), (2, rejected_b[p:lr], p)]
  return [(0, chosen_b[:lc] if kind == 1 else rejected_b[:lr], 0)]


def pack_pairs(batch: dict, layout: PackedLayout, valid: np.ndarray | None = None) -> dict:
  """A padded PM batch (`hh_jax.train.pm` keys) -> packed rows (module docstring).

  Pairs with valid 0 are left out (pair_valid 0, their slots point at slot 0). Other keys
  of `batch` (weight, is_harmless, ...) pass through unchanged. Raises ValueError if the
  batch needs more rows or score slots than `layout` has.
  """
  lc, lr, p = pair_lengths(batch)
  b = len(lc)
  valid = np.ones((b,), bool) if valid is None else np.asarray(valid) > 0
  keep = np.flatnonzero(valid)
  segments = [(keep[i], kind, n) for i, kind, n in
              pair_segments(lc[keep], lr[keep], p[keep], layout.row_len)]
  rows = first_fit_decreasing([s[2] for s in segments], layout.row_len)
  if len(rows) > layout.rows:
    raise ValueError(f"the batch needs {len(rows)} rows; the layout has {layout.rows}")
  out = _empty_rows(layout)
  slots = np.zeros((b, 2), np.int32)
  chosen, rejected = np.asarray(batch["chosen_tokens"]), np.asarray(batch["rejected_tokens"])
  for r, row in enumerate(rows):
    col, k = 0, 0
    for seg, item in enumerate(row, start=1):
      i, kind, _ = segments[item]
      for branch, part, first in _segment_parts(kind, chosen[i], rejected[i], lc[i], lr[i], p[i]):
        col = _place(out, r, col, part, first + np.arange(len(part)), branch, seg)
        if kind == 0 and branch == 0:
          continue                                    # the shared prefix holds no score
        if k >= layout.slots:
          raise ValueError(f"row {r} needs more than the layout's {layout.slots} score slots")
        out["score_index"][r, k] = col - 1            # the EOC: the part's last token
        slots[i, (branch if kind == 0 else kind) - 1] = r * layout.slots + k
        k += 1
  rest = {key: v for key, v in batch.items() if key not in (
      "chosen_tokens", "rejected_tokens", "chosen_eoc_index", "rejected_eoc_index")}
  return {**out, "pair_slots": slots, "pair_valid": valid.astype(np.float32), **rest}


def unpack_pairs(packed: dict) -> list[tuple[np.ndarray, np.ndarray]]:
  """(chosen row, rejected row) of every valid pair from packed rows (the inverse of
  `pack_pairs`, for tests): each side is the tokens its EOC score slot sees."""
  k = packed["score_index"].shape[1]
  out = []
  for b in np.flatnonzero(packed["pair_valid"] > 0):
    sides = []
    for flat in packed["pair_slots"][b]:
      r, col = divmod(int(flat), k)
      col = int(packed["score_index"][r, col])
      seg, branch = packed["segment_ids"][r], packed["branch_ids"][r]
      seen = (np.arange(col + 1) <= col) & (seg[:col + 1] == seg[col]) & (
          (branch[:col + 1] == 0) | (branch[:col + 1] == branch[col]))
      sides.append(packed["tokens"][r, :col + 1][seen])
    out.append(tuple(sides))
  return out


# ----------------------------------------------------------------------------- LM documents


def doc_lengths(tokens_bt) -> np.ndarray:
  """Non-PAD tokens of each right-padded document: (B, T) -> (B,) int."""
  return masked_lengths(np.asarray(tokens_bt) != PAD_ID)


def plan_doc_layout(tokens_nt, batch_rows: Iterable[np.ndarray], multiple_of: int = 1) -> PackedLayout:
  """R = the most rows (of L = T) any batch of documents needs; K = 0 (no scores)."""
  lengths = doc_lengths(tokens_nt)
  t = np.asarray(tokens_nt).shape[1]
  rows = max([len(first_fit_decreasing(list(lengths[r]), t)) for r in batch_rows], default=1)
  return PackedLayout(rows=-(-max(rows, 1) // multiple_of) * multiple_of, row_len=t, slots=0)


def pack_docs(tokens_bt, layout: PackedLayout) -> dict:
  """(B, T) right-padded documents -> tokens, positions, segment_ids (R, L) (module docstring):
  `pack_masked` of the non-PAD tokens."""
  tokens_bt = np.asarray(tokens_bt)
  packed = pack_masked(tokens_bt, tokens_bt != PAD_ID, layout)
  return {k: packed[k] for k in ("tokens", "positions", "segment_ids")}


# ----------------------------------------------------------------------------- masked rows


def masked_lengths(real_bs) -> np.ndarray:
  """Real tokens of each row of a (B, S) bool mask -> (B,) int."""
  return np.asarray(real_bs, bool).sum(axis=1).astype(np.int64)


def masked_placement(real_bs, row_len: int) -> list[list[int]]:
  """The rows of `pack_masked`: each row's real tokens one item, by `first_fit_decreasing`."""
  return first_fit_decreasing(list(masked_lengths(real_bs)), row_len)


def rows_needed(placement: list[list[int]]) -> tuple[int, int]:
  """(rows, most segments in one row) of a `masked_placement`."""
  return len(placement), max((len(r) for r in placement), default=0)


def pack_masked(tokens_bs, real_bs, layout: PackedLayout,
                placement: list[list[int]] | None = None) -> dict:
  """Padded rows with any real-token mask (e.g. a left-padded prompt followed by a right-padded
  reply) -> packed rows. Row b's real tokens, in order, become one segment at positions
  0 .. n_b - 1: the positions `cumsum(real) - 1` and the causal mask over real keys that the
  padded row gets, so every per-token output equals the padded row's. placement: the
  `masked_placement` of real_bs when the caller has it (None: computed here).

  Returns tokens, positions, segment_ids (R, L) and `index` (B, S) int32: the flat packed
  position r * L + c holding padded token (b, s), 0 where real[b, s] is False, so that
  `out.reshape(R * L, ...)[index]` is the padded (B, S, ...) output (garbage where not real).
  Raises ValueError if the rows need more rows or segments per row than `layout` has.
  """
  tokens_bs, real_bs = np.asarray(tokens_bs), np.asarray(real_bs, bool)
  rows = masked_placement(real_bs, layout.row_len) if placement is None else placement
  n_rows, most = rows_needed(rows)
  if n_rows > layout.rows:
    raise ValueError(f"the batch needs {n_rows} rows; the layout has {layout.rows}")
  if layout.slots and most > layout.slots:
    raise ValueError(f"a row needs {most} segments; the layout has {layout.slots} slots")
  out = _empty_rows(layout)
  index = np.zeros(tokens_bs.shape, np.int32)
  for r, row in enumerate(rows):
    col = 0
    for seg, b in enumerate(row, start=1):
      cols = np.flatnonzero(real_bs[b])
      index[b, cols] = r * layout.row_len + col + np.arange(len(cols))
      col = _place(out, r, col, tokens_bs[b, cols], np.arange(len(cols)), 0, seg)
  return {"tokens": out["tokens"], "positions": out["positions"],
          "segment_ids": out["segment_ids"], "index": index}


def score_slots(flat_b, layout: PackedLayout) -> tuple[np.ndarray, np.ndarray]:
  """Score one packed position per sequence: flat_b (B,) flat positions r * L + c, at most
  layout.slots in one row -> (score_index (R, K) int32: the columns each row reads, in order;
  slot (B,) int32: r * K + k, so `scores(R, K).reshape(-1)[slot]` is sequence b's score)."""
  score_index = np.zeros((layout.rows, layout.slots), np.int32)
  slot = np.zeros(len(flat_b), np.int32)
  used = np.zeros(layout.rows, np.int64)
  for b, flat in enumerate(np.asarray(flat_b)):
    r, col = divmod(int(flat), layout.row_len)
    if used[r] >= layout.slots:
      raise ValueError(f"row {r} needs more than the layout's {layout.slots} score slots")
    score_index[r, used[r]] = col
    slot[b] = r * layout.slots + used[r]
    used[r] += 1
  return score_index, slot
