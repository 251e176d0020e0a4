"""A third-party task plugin used by the tests, registered through the `paretolab.tasks` entry point.

`exploding` is sparse parity that raises after `explode_at` training batches, to test that a
raising trial is recorded as failed with its error. `poisoned` is sparse parity whose trial with
seed `die_at_seed` kills the worker process that builds it (as a trial that runs its worker out of
memory would), to test that such a trial fails alone.
"""

import os
from dataclasses import dataclass

from paretolab.tasks.sparse_parity import SparseParity, SparseParityArgs


@dataclass(frozen=True)
class ExplodingArgs(SparseParityArgs):
    explode_at: int = 3


class Exploding(SparseParity):
    name = "exploding"
    Args = ExplodingArgs

    def __init__(self, args, seed, test_size, device="cpu"):
        super().__init__(args, seed, test_size, device)
        self.batches = 0

    def train_batch(self, batch_size):
        self.batches += 1
        if self.batches > self.args.explode_at:
            raise RuntimeError(f"boom at batch {self.batches}")
        return super().train_batch(batch_size)


@dataclass(frozen=True)
class PoisonedArgs(SparseParityArgs):
    die_at_seed: int = -1


class Poisoned(SparseParity):
    name = "poisoned"
    Args = PoisonedArgs

    def __init__(self, args, seed, test_size, device="cpu"):
        if seed == args.die_at_seed:
            os._exit(1)  # the worker process dies at once: no exception, no report
        super().__init__(args, seed, test_size, device)
