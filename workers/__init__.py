"""Workers: the long-lived actor, the training loop, models and metric emission.

`RESULT_VERSION` is part of every trial's identity: raise it when a change to the training code
changes what a trial computes, so that stored results of the old code are not taken for new ones.
"""

RESULT_VERSION = 2  # 2: sparse-parity inputs read from random bytes, eight per draw
