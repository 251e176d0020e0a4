"""What is learned: data distributions, test sets, metrics and success criteria.

`TASKS` is the registry of built-in tasks; third-party packages add theirs through the
`paretolab.tasks` entry-point group (see `paretolab.tasks.registry`).
"""
