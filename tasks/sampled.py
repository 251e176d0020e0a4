"""Tasks whose examples are independent draws from one distribution (online or offline)."""

from __future__ import annotations

from abc import abstractmethod

from paretolab.tasks.lazy import torch

from paretolab.tasks.base import Task
from paretolab.tasks.seeding import generator


class SampledTask(Task):
    """A held-out test set of `test_size` examples drawn once from its own stream, and a training
    stream that is online (`args.train_size` None: a fresh draw every step) or offline (minibatches
    drawn with replacement from one fixed training set of `args.train_size` examples, itself drawn
    from the data stream).

    Subclasses implement `_draw(m, g, train)` (`train` adds whatever only training labels get, such
    as label noise) and call `_init_streams(seed, test_size, device)` once their hidden structure
    is drawn.
    """

    @abstractmethod
    def _draw(self, m: int, g: torch.Generator, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """`m` examples `(x, y)` drawn with generator `g`."""

    def _init_streams(self, seed: int, test_size: int, device: str) -> None:
        self.device = device
        self._data = generator(seed, "data", device)
        self._test_x, self._test_y = self._draw(test_size, generator(seed, "test", device), train=False)
        if self.args.train_size is not None:
            self._train_x, self._train_y = self._draw(self.args.train_size, self._data, train=True)

    def train_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.args.train_size is None:
            return self._draw(batch_size, self._data, train=True)
        idx = torch.randint(0, self.args.train_size, (batch_size,), generator=self._data, device=self.device)
        return self._train_x[idx], self._train_y[idx]
