"""Models: what learns. The MLP, the Transformer and the LSTM, their packed variants, and the
registry (`registry.models()`), which third-party packages extend through the `paretolab.models`
entry-point group.

A model is a `base.Model`; one that can train several trials of one shape at once is a
`base.PackableModel`, whose `stack` returns a `base.Pack` (see docs/packing.md).
"""
