"""Length distribution of real HH-RLHF comparisons, for the bench's `hh_rlhf` workload.

Computed once, by hand, from the 1,800 comparisons of the harmless-base test sample (the
first 1,800 lines of `harmless-base/test.jsonl.gz` of anthropics/hh-rlhf), each split into
context / chosen reply / rejected reply by `hh_jax.data.hh_rlhf.split_pair` and measured in
bytes (the byte tokenizer: one token per byte), before any cut to max_len:

    QUANTILES[part][i] = the (i / 100)-quantile (numpy "inverted_cdf") of that part's length
    RANK_CORRELATION   = Spearman correlations of (context, chosen, rejected)

At max_len 1024 (`batching.shared_context_rows`) that sample has T = 1024, 48% of the
padded (2 x N x T) tokens real and 33% unique (context once per pair);
`hh_jax.bench.workloads.hh_rlhf_pairs` draws lengths from these quantiles through a
Gaussian copula with RANK_CORRELATION and applies the same cut.
"""

QUANTILES = {
    "context": (29, 41, 44, 48, 50, 52, 53, 56, 58, 60, 62, 64, 66, 67, 70, 74, 77, 80, 83, 87, 90, 94, 98,
        105, 113, 120, 126, 135, 143, 155, 167, 176, 189, 195, 210, 224, 229, 237, 248, 255, 263,
        272, 283, 293, 303, 310, 318, 326, 336, 346, 356, 368, 377, 388, 399, 410, 417, 429, 436,
        444, 454, 469, 481, 494, 505, 516, 528, 539, 551, 563, 577, 589, 601, 618, 635, 655, 676,
        688, 702, 725, 752, 778, 812, 838, 856, 901, 926, 955, 1010, 1058, 1097, 1148, 1200, 1262,
        1319, 1425, 1527, 1647, 1848, 2248, 3580),
    "chosen": (1, 6, 13, 17, 18, 20, 23, 26, 28, 30, 31, 33, 35, 37, 39, 40, 42, 44, 45, 46, 48, 50, 51,
        53, 57, 58, 60, 61, 62, 64, 66, 68, 70, 72, 73, 76, 79, 81, 83, 84, 87, 89, 92, 95, 96, 100,
        102, 104, 108, 111, 113, 114, 118, 120, 124, 128, 131, 134, 137, 143, 147, 150, 154, 159,
        163, 166, 172, 181, 186, 191, 197, 203, 211, 217, 225, 233, 240, 245, 251, 261, 268, 279,
        287, 297, 309, 317, 333, 348, 369, 378, 395, 412, 441, 463, 492, 523, 559, 606, 711, 845,
        1083),
    "rejected": (3, 8, 14, 18, 20, 22, 25, 28, 31, 33, 35, 36, 38, 41, 43, 45, 48, 51, 53, 56, 58, 61, 64,
        67, 69, 71, 74, 76, 78, 80, 82, 84, 87, 90, 93, 96, 99, 102, 105, 107, 110, 114, 119, 124,
        128, 133, 136, 139, 140, 142, 147, 151, 154, 157, 162, 166, 172, 177, 182, 186, 192, 196,
        202, 206, 213, 217, 223, 229, 235, 239, 247, 254, 259, 267, 276, 285, 292, 297, 305, 311,
        320, 327, 340, 348, 359, 373, 389, 402, 420, 442, 465, 493, 514, 545, 582, 639, 673, 739,
        819, 1069, 2494),
}

RANK_CORRELATION = ((1.0, 0.267, 0.252),
                    (0.267, 1.0, 0.316),
                    (0.252, 0.316, 1.0))
