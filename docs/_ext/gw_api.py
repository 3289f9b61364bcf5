"""Sphinx extension: graphwire's API reference, generated from each package's ``__all__``.

At ``config-inited`` (before Sphinx lists the sources) it writes ``docs/api/``: one page per
public package listed in :data:`PACKAGES` that can be imported, each with

- the package docstring,
- an ``autosummary`` table (with a generated page per object) of the names of its
  ``__all__`` that are *defined* in that package (their canonical home),
- a table of the names it re-exports from another package, linking to their home,
- a section per public submodule: its docstring (an implementation module's names are
  not graphwire's API: only the packages' ``__all__`` are).

A new name added to a package's ``__all__`` therefore appears in the reference without
editing the docs. Every object is documented once, under its canonical name; the
``missing-reference`` handler resolves the other names it is known by (``graphwire.X``,
``graphwire.graph.channel_graph.X``, ...) to that page, so docstrings may use any of them.
A data object that is a mapping gets its keys listed under its docstring.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

#: Public packages, in the order of graphwire's flow; missing ones are skipped.
PACKAGES = (
    "graphwire",
    "graphwire.graph",
    "graphwire.wiring",
    "graphwire.backends",
    "graphwire.execution",
    "graphwire.layers",
    "graphwire.training",
    "graphwire.export",
    "graphwire.cost",
    "models",
)


@dataclass
class ModuleInfo:
    """One public module: its name, object, the names of its ``__all__``."""

    name: str
    module: ModuleType
    names: list[str]
    is_package: bool
    submodules: list[ModuleInfo] = field(default_factory=list)


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            return None  # the package does not exist (yet)
        raise


def discover() -> list[ModuleInfo]:
    """The importable public packages of :data:`PACKAGES`, with their public submodules."""
    infos = []
    for pkg_name in PACKAGES:
        pkg = _import(pkg_name)
        if pkg is None:
            continue
        info = ModuleInfo(pkg_name, pkg, list(getattr(pkg, "__all__", [])), True)
        for sub in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
            full = f"{pkg_name}.{sub.name}"
            if sub.name.startswith("_") or full in PACKAGES:
                continue
            # an implementation module: its docstring is shown, its names are not API
            mod = importlib.import_module(full)
            info.submodules.append(ModuleInfo(full, mod, [], sub.ispkg))
        infos.append(info)
    return infos


def all_modules(infos: list[ModuleInfo]) -> list[ModuleInfo]:
    """Packages and submodules, flattened."""
    return [m for info in infos for m in (info, *info.submodules)]


def _rank(mod: ModuleInfo, defined_in: str) -> tuple[int, int]:
    """Prefer the module the object is defined under, then the most specific one."""
    prefix = defined_in == mod.name or defined_in.startswith(mod.name + ".")
    return (len(mod.name) if prefix else -1, mod.name.count("."))


def _homed(mod: ModuleInfo, canonical: dict[int, str]) -> list[str]:
    """The names of ``mod.__all__`` documented in ``mod`` itself."""
    return [n for n in mod.names if canonical[id(getattr(mod.module, n))] == f"{mod.name}.{n}"]


def canonical_names(infos: list[ModuleInfo]) -> dict[int, str]:
    """``id(object)`` -> the one dotted name the object is documented under.

    A package is preferred over a submodule; among packages, the one whose name is the
    longest prefix of the object's ``__module__`` (where it is defined), else the most
    specific package exporting it.
    """
    exporters: dict[int, list[tuple[ModuleInfo, str]]] = {}
    for mod in all_modules(infos):
        for name in mod.names:
            obj = getattr(mod.module, name)
            exporters.setdefault(id(obj), []).append((mod, name))
    canonical = {}
    for key, where in exporters.items():
        obj = getattr(where[0][0].module, where[0][1])
        defined_in = getattr(obj, "__module__", None) or ""
        packages = [(m, n) for m, n in where if m.is_package and m.name in PACKAGES]
        pool = packages or where

        best_mod, best_name = max(pool, key=lambda item, d=defined_in: _rank(item[0], d))
        canonical[key] = f"{best_mod.name}.{best_name}"
    return canonical


def aliases(infos: list[ModuleInfo]) -> dict[str, str]:
    """Every other dotted name of a public object -> its canonical name."""
    canonical = canonical_names(infos)
    out: dict[str, str] = {}
    for mod in all_modules(infos):
        for name in mod.names:
            obj = getattr(mod.module, name)
            target = canonical[id(obj)]
            out[f"{mod.name}.{name}"] = target
            defined = getattr(obj, "__module__", None)
            qual = getattr(obj, "__qualname__", None)
            if isinstance(defined, str) and isinstance(qual, str):
                out.setdefault(f"{defined}.{qual}", target)
    return {k: v for k, v in out.items() if k != v}


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def _autosummary(module: str, names: list[str]) -> list[str]:
    lines = [f".. currentmodule:: {module}", "", ".. autosummary::", "   :toctree: generated"]
    lines += ["   :nosignatures:", ""] + [f"   {n}" for n in names] + [""]
    return lines


def _heading(text: str, char: str) -> list[str]:
    return [text, char * len(text), ""]


def render_pages(infos: list[ModuleInfo]) -> dict[str, str]:
    """File name (relative to ``docs/api``) -> reStructuredText of the API reference."""
    canonical = canonical_names(infos)
    pages: dict[str, str] = {}
    index = _heading("API reference", "=")
    index += [
        "Every public name of graphwire, generated from the ``__all__`` of each package:",
        "a name exported by several packages is documented once, at its home, and listed",
        "under *Also available here* in the others.",
        "",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
    ]
    index += [f"   {info.name}" for info in infos]
    registry = render_registry() if any(i.name == "models" for i in infos) else None
    if registry is not None:
        pages["models_registry.rst"] = registry
        index += ["   models_registry"]
    pages["index.rst"] = "\n".join([*index, ""])
    for info in infos:
        lines = _heading(f"``{info.name}``", "=")
        lines += [f".. automodule:: {info.name}", "   :no-members:", ""]
        home = _homed(info, canonical)
        elsewhere = [n for n in info.names if n not in home]
        if home:
            lines += _autosummary(info.name, home)
        if elsewhere:
            lines += [".. rubric:: Also available here", ""]
            lines += [".. list-table::", "   :widths: 30 70", ""]
            for n in elsewhere:
                obj = getattr(info.module, n)
                target = canonical[id(obj)]
                lines += [f"   * - :py:obj:`{n} <{target}>`", f"     - {_summary(obj)}"]
            lines += [""]
        if info.submodules:
            lines += _heading("Modules", "-")
            for sub in info.submodules:
                lines += _heading(f"``{sub.name}``", "~")
                lines += [f".. automodule:: {sub.name}", "   :no-members:", ""]
                lines += [f".. currentmodule:: {info.name}", ""]
        pages[f"{info.name}.rst"] = "\n".join(lines)
    return pages


def render_registry() -> str | None:
    """A page listing every model of ``models.list_models()`` with its settings."""
    try:
        models = importlib.import_module("models")
    except ImportError:
        return None
    builders = getattr(importlib.import_module("models.registry"), "_MODELS", {})
    lines = _heading("Model registry", "=")
    lines += [
        "Every network ``models.create_model(name, **settings)`` builds, generated from",
        "``models.list_models()`` and ``models.model_defaults(name)``.",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 25 40 35",
        "",
        "   * - name",
        "     - what it is",
        "     - settings and defaults",
    ]
    for name in models.list_models():
        builder = builders.get(name)
        summary = _summary(builder) if builder is not None else ""
        defaults = ", ".join(f"``{k}={v!r}``" for k, v in models.model_defaults(name).items())
        lines += [f"   * - ``{name}``", f"     - {summary or '-'}", f"     - {defaults or '-'}"]
    return "\n".join([*lines, ""])


def write_pages(directory: Path, pages: dict[str, str]) -> None:
    """Write ``pages`` into ``directory``, touching only files whose text changed."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in pages.items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    for stale in directory.glob("*.rst"):
        if stale.name not in pages:
            stale.unlink()


# ---------------------------------------------------------------------- Sphinx hooks
_ALIASES: dict[str, str] = {}


def _on_config_inited(app, config) -> None:
    infos = discover()
    _ALIASES.clear()
    _ALIASES.update(aliases(infos))
    write_pages(Path(app.srcdir) / "api", render_pages(infos))


def _resolve_alias(target: str, modname: str | None) -> str | None:
    candidates = [target] + ([f"{modname}.{target}"] if modname else [])
    for cand in candidates:
        if cand in _ALIASES:
            return _ALIASES[cand]
        head, _, tail = cand.rpartition(".")  # a member of an aliased class
        while head:
            if head in _ALIASES:
                return f"{_ALIASES[head]}.{tail}"
            head, _, more = head.rpartition(".")
            tail = f"{more}.{tail}"
    return None


def _lookup(dotted: str, namespace: dict[str, Any]) -> Any:
    head, *rest = dotted.split(".")
    if head not in namespace:
        raise LookupError(dotted)
    obj = namespace[head]
    for part in rest:
        obj = getattr(obj, part)
    return obj


def _namespaces(modname: str | None, classname: str | None) -> list[dict[str, Any]]:
    """The globals of the modules that may have written a reference: where the object it
    appears in is defined, then (for a class) where each of its bases is defined."""
    if not modname:
        return []
    try:
        module = importlib.import_module(modname)
        owner = _lookup(classname, vars(module)) if classname else module
    except (ImportError, LookupError, AttributeError):
        return []
    if not classname:
        return [vars(module)]
    defining = [c.__module__ for c in getattr(owner, "__mro__", (owner,))]
    return [vars(sys.modules[m]) for m in dict.fromkeys(defining) if m in sys.modules]


def _find(target: str, namespaces: list[dict[str, Any]]) -> Any:
    for namespace in namespaces:
        try:
            return _lookup(target, namespace)
        except (LookupError, AttributeError):
            continue
    return None


def _find_unique(target: str) -> Any:
    """``target`` as every public module of the project that knows the name agrees it is
    (a docstring reused by another class, e.g. ``learned_graph = WiredGraph.learned_graph``)."""
    roots = {p.split(".")[0] for p in PACKAGES}
    spaces = [vars(m) for n, m in list(sys.modules.items()) if n.split(".")[0] in roots]
    hits = {id(o): o for o in (_find(target, [ns]) for ns in spaces) if o is not None}
    return next(iter(hits.values())) if len(hits) == 1 else None


def _dotted(target: str) -> Any:
    """The object a fully dotted name of the project names (``graphwire.x.y.Z``), or None."""
    if target.split(".")[0] not in {p.split(".")[0] for p in PACKAGES}:
        return None
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for part in parts[cut:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj
    return None


def _full_name(obj: Any) -> str | None:
    """``module.qualname`` of a class, function or module, else ``None``."""
    if inspect.ismodule(obj):
        return obj.__name__
    module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{qual}" if isinstance(module, str) and isinstance(qual, str) else None


def _retarget(app, env, node, contnode, target: str):
    from sphinx.ext import intersphinx

    new = node.deepcopy()
    new["reftarget"] = target
    new["refspecific"] = False
    found = env.get_domain("py").resolve_xref(
        env, new["refdoc"], app.builder, new["reftype"], target, new, contnode
    )
    return found if found is not None else intersphinx.missing_reference(app, env, new, contnode)


def _on_missing_reference(app, env, node, contnode):
    """Resolve graphwire's other names for an object, and names as the source spells them.

    A reference to an object of the project that exists but has no page (it is not in a
    package's ``__all__``) is rendered as text; a reference to nothing still fails.

    Type hints under ``from __future__ import annotations`` reach Sphinx as the source
    text (``Tensor``, ``nn.Module``); they are looked up in the globals of the module
    that wrote them and retargeted to the object's full name. A typing construct (a
    ``Union`` alias such as ``NodeSet``) has no page anywhere: it is left as plain text.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    modname, classname = node.get("py:module"), node.get("py:class")
    canonical = _resolve_alias(target, modname)
    if canonical is not None:
        return _retarget(app, env, node, contnode, canonical)
    obj = _find(target, _namespaces(modname, classname)) or _find_unique(target)
    obj = obj if obj is not None else _dotted(target)
    if obj is None:
        return None
    full = _full_name(obj)
    if full is None and _dotted(target) is not None:
        return contnode  # project data without a page (a tuple or mapping constant)
    if full is None or full.startswith("typing.") or full.startswith("types."):
        return contnode if getattr(obj, "__module__", None) == "typing" else None
    full = _ALIASES.get(full, full)
    found = None if full == target else _retarget(app, env, node, contnode, full)
    if found is None and full.split(".")[0] in {p.split(".")[0] for p in PACKAGES}:
        # a real object of the project that is not public API (an implementation
        # module's helper, a type a method returns): named as text, without a page
        return contnode
    return found


def _attribute_doc(name: str) -> list[str] | None:
    """The ``#:`` comment documenting a module-level object, found where it is defined."""
    from sphinx.pycode import ModuleAnalyzer

    modname, _, attr = name.rpartition(".")
    obj = getattr(importlib.import_module(modname), attr)
    pkg = modname.split(".")[0]
    homes = [modname] + [
        m.__name__
        for m in list(sys.modules.values())
        if getattr(m, "__name__", "").startswith(pkg) and getattr(m, attr, None) is obj
    ]
    for home in homes:
        try:
            docs = ModuleAnalyzer.for_module(home).find_attr_docs()
        except Exception:  # noqa: BLE001 - a module without source: try the next one
            continue
        if ("", attr) in docs:
            return list(docs[("", attr)])
    return None


def _on_process_docstring(app, what, name, obj, options, lines) -> None:
    if what != "data":
        return
    own = _attribute_doc(name)
    if own is not None:
        lines[:] = own
    if isinstance(obj, Mapping) and obj:
        keys = ", ".join(f"``{k!r}``" for k in obj)
        lines += ["", f"Keys: {keys}."]


_PROSE = re.compile(r"[A-Z][a-z]+(?: [A-Za-z0-9-]+)+")


def _restore_summary_colon(app, what, name, obj, options, lines) -> None:
    """Undo napoleon's reading of ``Summary words: more text.`` in a property docstring.

    Google style lets a property docstring start with ``type: description``; napoleon
    then turns ``Live parameters: edges, ...`` into the "type" ``Live parameters``,
    which nitpicky mode reports as a missing class. A capitalised phrase of several
    plain words is prose, not a type: put it back in front of the description.
    """
    if what not in ("property", "attribute"):
        return
    for i, line in enumerate(lines):
        if line.startswith(":type: ") and _PROSE.fullmatch(line[7:].strip()):
            phrase = line[7:].strip()
            del lines[i]
            first = next((j for j, x in enumerate(lines) if x.strip()), None)
            if first is None:
                lines.insert(0, phrase)
            else:
                lines[first] = f"{phrase}: {lines[first]}"
            return


def _inherited_from_elsewhere(obj: Any) -> bool:
    """An undocumented override whose docstring autodoc would take from another project."""
    if not inspect.isfunction(obj) or obj.__doc__ is not None:
        return False
    owner_name, _, attr = obj.__qualname__.rpartition(".")
    try:
        owner = _lookup(owner_name, vars(sys.modules[obj.__module__]))
    except (KeyError, LookupError, AttributeError):
        return False
    for base in getattr(owner, "__mro__", ())[1:]:
        doc = getattr(base.__dict__.get(attr), "__doc__", None)
        if doc:
            return base.__module__.split(".")[0] not in {p.split(".")[0] for p in PACKAGES}
    return False


def _on_skip_member(app, what, name, obj, skip, options):
    # ``forward`` of an nn.Module subclass without its own docstring would show torch's
    # "Define the computation performed at every call" text: leave such members out.
    return True if _inherited_from_elsewhere(obj) else None


def _on_process_bases(app, name, obj, options, bases: list) -> None:
    # A private base class (``_RecurrentLayout``) has no page: show its public bases.
    # A plain ``object`` base says nothing: leave the "Bases" line out.
    bases[:] = [b for b in bases if b is not object]
    i = 0
    while i < len(bases):
        base = bases[i]
        if getattr(base, "__name__", "").startswith("_"):
            bases[i : i + 1] = [b for b in base.__bases__ if b is not object and b not in bases]
        else:
            i += 1


def setup(app) -> dict[str, Any]:
    """Register the hooks with Sphinx."""
    app.connect("config-inited", _on_config_inited)
    app.connect("missing-reference", _on_missing_reference)
    app.connect("autodoc-process-docstring", _on_process_docstring)
    app.connect("autodoc-process-docstring", _restore_summary_colon, priority=600)
    app.connect("autodoc-skip-member", _on_skip_member)
    app.connect("autodoc-process-bases", _on_process_bases)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
