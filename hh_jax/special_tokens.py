"""Special token ids shared by every tokenizer, the models and the training code.

    PAD_ID = 0   padding (never attended to, never scored)
    EOS_ID = 1   end of a reply / document (the policy stops here)
    EOC_ID = 2   end-of-context token appended after a reply; the PM score is read here

Every tokenizer (bytes, BPE, the synthetic world's words) reserves ids 0..NUM_SPECIAL-1 for
these, so models and data agree without either importing the other.
"""

PAD_ID = 0
EOS_ID = 1
EOC_ID = 2
NUM_SPECIAL = 3
