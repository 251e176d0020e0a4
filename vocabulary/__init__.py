"""The vocabulary every layer shares: errors, the spec's and the trial's types, the success
criterion, the store's schema and small statistics.

It imports nothing else of paretolab, and neither torch nor ray: the spec parser, the
orchestrator, the workers, the tasks, the store and the analysis all build on it.
"""
