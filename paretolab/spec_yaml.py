"""The YAML of a spec, read strictly: a key set twice in a mapping is an error (YAML's loaders keep
the last one silently), and so is a document whose anchors and aliases (`&a`, `*a`) expand past
`MAX_SPEC_VALUES` values or into a value that contains itself ("billion laughs": a few hundred
bytes that stand for 10^9 strings, which every walk over the spec, an error message's included,
would then visit).
"""

from __future__ import annotations

import yaml

from paretolab.vocabulary.errors import SpecError, shown

# values in a spec with its aliases expanded: 10^6 is far past any real spec (the paper's grid lists a
# few dozen), and cheap to walk (1.1x10^6 aliased values: 0.1 s in Python, 0.2 s to JSON, measured)
MAX_SPEC_VALUES = 1_000_000
MERGE = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            _no_key_twice(self, node)
        return super().construct_mapping(node, deep=deep)


def _no_key_twice(loader: _Loader, node: yaml.MappingNode) -> None:
    first: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == MERGE or not isinstance(key_node, yaml.ScalarNode):  # `<<: *base` keys may be overridden
            continue
        key = loader.construct_object(key_node)
        seen = first.setdefault(key, key_node)
        if seen is not key_node:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {shown(key)} is set twice (first at line {seen.start_mark.line + 1}, "
                            f"column {seen.start_mark.column + 1}); keep one",
                key_node.start_mark)


def load(text: str, path: str) -> object:
    """The Python value of the YAML `text`; `path` names it in errors.

    Raises:
        SpecError: invalid YAML (with its line and column), a key set twice in a mapping, or anchors
            and aliases that expand past `MAX_SPEC_VALUES` values or into a recursive value.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{path}: invalid YAML{where}: {problem}") from None
    except RecursionError:  # PyYAML composes and constructs recursively
        raise SpecError(f"{path}: invalid YAML: nested too deeply; a spec is a few levels of mappings and "
                        "lists") from None
    finally:
        loader.dispose()


def _check_expanded_size(root: yaml.Node, path: str) -> None:
    """Count the values of the document as if every alias were written out, visiting each node once
    (an alias is the node it names, shared); refuse past `MAX_SPEC_VALUES` or on a cycle."""
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            open_nodes.discard(id(node))
            size[id(node)] = min(1 + sum(size[id(c)] for c in children), MAX_SPEC_VALUES + 1)
            continue
        if id(node) in size:
            continue
        if id(node) in open_nodes:
            raise SpecError(f"{path}: line {node.start_mark.line + 1}: an alias refers to a value that contains it; "
                            "a spec's values cannot contain themselves")
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    if size[id(root)] > MAX_SPEC_VALUES:
        raise SpecError(f"{path}: the spec holds more than {MAX_SPEC_VALUES:,} values once its aliases (*name) are "
                        "expanded; write its values out, or use {range: ...}/{logspace: ...} for long axes")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
