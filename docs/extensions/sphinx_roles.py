"""Griffe extension: the docstrings' reST markup, rendered as Markdown by mkdocstrings.

The docstrings of the project are written for readers of the source and for ``help()``: they name other objects
with Sphinx roles (``:func:`apply_lr```), document constants with ``#:`` comments and introduce literal blocks
with reST's ``::``. This extension rewrites the docstring text that mkdocstrings renders; the source files, and so
the doctests, are untouched:

- an attribute without a docstring takes the ``#:`` comment lines right above it as its docstring;
- a role whose target is in the project becomes an autorefs cross-reference, so that the strict build fails when a
  docstring names an object that does not exist. A relative target is looked up the way Python would look the name
  up from the documented object. A target the reference does not show (a private name, a constant without a
  docstring) links to the nearest object that it shows, the class or module that holds it;
- a role whose target is outside the project (torch, Lightning) becomes inline code;
- ``Example:`` / ``Example::`` becomes a Google ``Examples:`` section, so that its ``>>>`` lines render as code, and
  any other line ending in ``::`` ends in ``:``;
- a doctest outside an ``Examples:`` section (``>>>`` lines in the description) is fenced as a ``pycon`` block.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

logger = griffe.get_logger("sphinx_roles")

ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|obj|exc|const):`(?P<tilde>~)?(?P<target>[^`]+)`")
EXAMPLE_HEADING = re.compile(r"^Example::?$", re.MULTILINE)
LITERAL_MARKER = re.compile(r"(?P<alone>^[ \t]*)?::$", re.MULTILINE)
SECTION_HEADING = re.compile(r"^[A-Z][A-Za-z ]*:$")
COMMENT_DOC = re.compile(r"^\s*#:\s?(.*)$")
PROJECT_PACKAGES = ("lr_callbacks", "experiments")


class SphinxRoles(griffe.Extension):
    """Rewrites the docstrings of a loaded package, once it is complete (so that every name can be resolved)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        objects = _walk(pkg)
        for obj in objects:
            if obj.is_attribute and obj.docstring is None:
                _comment_docstring(obj)
        for obj in objects:
            if obj.docstring is not None:
                obj.docstring.value = _convert(obj, obj.docstring.value, loader)


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found.extend(_walk(member))  # type: ignore[arg-type]
    return found


def _comment_docstring(obj: griffe.Object) -> None:
    """Give ``obj`` the ``#:`` comment lines right above its definition as its docstring."""
    if obj.lineno is None or obj.filepath is None:
        return
    lines = obj.lines_collection[obj.filepath]  # type: ignore[index]
    comment: list[str] = []
    index = obj.lineno - 2
    while index >= 0 and (match := COMMENT_DOC.match(lines[index])):
        comment.insert(0, match[1])
        index -= 1
    if comment:
        obj.docstring = griffe.Docstring("\n".join(comment), lineno=index + 2, parent=obj)


def _resolve(obj: griffe.Object, target: str, loader: griffe.GriffeLoader) -> str | None:
    """The full path of ``target`` as named from ``obj``'s docstring, or ``None`` when it is not found."""
    if target.split(".")[0] in PROJECT_PACKAGES:
        try:
            loader.modules_collection[target]
        except KeyError:
            return None
        return target
    head, _, rest = target.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:  # the object itself (inherited members included), then its parents
        if scope.is_class and head in scope.all_members:
            path = f"{scope.path}.{head}"
            break
        try:
            path = scope.resolve(head)
            break
        except griffe.NameResolutionError:
            scope = scope.parent
    else:
        return None
    return f"{path}.{rest}" if rest else path


def _shown(obj: griffe.Object | griffe.Alias) -> bool:
    """Whether the reference shows ``obj`` (the handler's filter: a public name with a docstring)."""
    return obj.is_module or (not obj.name.startswith("_") and bool(obj.docstring and obj.docstring.value))


def _link_target(path: str, loader: griffe.GriffeLoader) -> str | None:
    """``path``, or the nearest object holding it that the reference shows; ``None`` outside the project."""
    if path.split(".")[0] not in PROJECT_PACKAGES:
        return None
    try:
        obj: griffe.Object | griffe.Alias | None = loader.modules_collection[path]
    except KeyError:  # e.g. an inherited member reached through a subclass
        obj = None
    if obj is not None and obj.is_alias:
        obj = obj.final_target  # type: ignore[union-attr]
    while obj is not None and not _shown(obj):
        obj = obj.parent
    return None if obj is None else obj.path


def _convert(obj: griffe.Object, text: str, loader: griffe.GriffeLoader) -> str:
    def replace(match: re.Match[str]) -> str:
        target = match["target"]
        title = f"`{target.rsplit('.', 1)[-1] if match['tilde'] else target}`"
        path = _resolve(obj, target, loader)
        if path is None:
            if target.split(".")[0] in PROJECT_PACKAGES or "." not in target:
                logger.warning("%s: the docstring names %r, which is not found", obj.path, target)
            return title
        link = _link_target(path, loader)
        return title if link is None else f"[{title}][{link}]"

    text = EXAMPLE_HEADING.sub("Examples:", ROLE.sub(replace, text))
    return _fence_doctests(LITERAL_MARKER.sub(lambda m: "" if m["alone"] is not None else ":", text))


def _fence_doctests(text: str) -> str:
    """Fence each unindented doctest (``>>>`` lines and their output, up to a blank line) outside ``Examples:``."""
    lines: list[str] = []
    in_examples = in_doctest = False
    for line in text.splitlines():
        if SECTION_HEADING.match(line):
            in_examples = line == "Examples:"
        if in_doctest and not line.strip():
            lines.append("```")
            in_doctest = False
        elif not in_examples and not in_doctest and line.startswith(">>>"):
            lines.append("```pycon")
            in_doctest = True
        lines.append(line)
    if in_doctest:
        lines.append("```")
    return "\n".join(lines)
