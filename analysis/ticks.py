"""Tick labels in plain numbers (`figure.number`): 0.1 and 40, not 1e-01 and 4x10^1.

Classes of their own module, imported when a figure is made (importing `figure` does not import
matplotlib), so that a figure pickles: the live view draws its figures to SVG in other processes
(`serve.figures`); a formatter made from a lambda or a class defined in a function would not.
"""

from __future__ import annotations

from matplotlib.ticker import Formatter, LogFormatter

from paretolab.analysis.figure import number


class PlainNumbers(Formatter):
    """Every tick of a linear axis by `number`, without an offset or a x10^n over the axis."""

    def __call__(self, x, pos=None):
        return number(x)


class PlainLog(LogFormatter):
    """LogFormatter's choice of which ticks of a log axis get a label, each written by `number`."""

    def _num_to_string(self, x, vmin, vmax):
        return number(x)
