"""The API reference: every public name has a docstring and a place in the generated pages.

The pages come from ``docs/_ext/gw_api.py`` at build time; these tests call the same
functions, so a name added to an ``__all__`` without a docstring fails here before the
(slower) Sphinx build does.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gw_api = _load(DOCS / "_ext" / "gw_api.py", "gw_api")
INFOS = gw_api.discover()
MODULES = gw_api.all_modules(INFOS)
PUBLIC = [(m.name, n) for m in MODULES for n in m.names]


def test_discovers_every_public_module_of_graphwire():
    import graphwire

    expected = {"graphwire"} | {
        info.name
        for info in pkgutil.walk_packages(graphwire.__path__, "graphwire.")
        if not any(part.startswith("_") for part in info.name.split("."))
    }
    assert expected <= {m.name for m in MODULES}
    assert {"graphwire.graph", "graphwire.wiring", "graphwire.execution"} <= {i.name for i in INFOS}


def test_every_module_has_a_docstring_and_an_all():
    for m in MODULES:
        assert (m.module.__doc__ or "").strip(), f"module {m.name} has no docstring"
        assert hasattr(m.module, "__all__"), f"module {m.name} has no __all__"


def _own_doc(obj) -> str:
    if inspect.isclass(obj):
        doc = vars(obj).get("__doc__") or ""
        if dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
            return ""  # the signature dataclasses write when there is no docstring
        return doc
    return getattr(obj, "__doc__", None) or ""


@pytest.mark.parametrize("module_name, name", PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_public_name_has_a_docstring(module_name, name):
    obj = getattr(importlib.import_module(module_name), name)
    if inspect.isclass(obj) or inspect.isroutine(obj):
        assert _own_doc(obj).strip(), f"{module_name}.{name} has no docstring"
    else:  # data: documented by a ``#:`` comment where it is defined
        doc = gw_api._attribute_doc(f"{module_name}.{name}")
        assert doc and "".join(doc).strip(), (
            f"{module_name}.{name} is data without a '#:' comment where it is defined"
        )


def test_public_methods_have_docstrings():
    missing = set()
    for module_name, name in PUBLIC:
        obj = getattr(importlib.import_module(module_name), name)
        if not inspect.isclass(obj) or not obj.__module__.startswith(("graphwire", "models")):
            continue
        for attr, member in vars(obj).items():
            if attr.startswith("_") or not (
                inspect.isfunction(member) or isinstance(member, property)
            ):
                continue
            if not inspect.getdoc(
                getattr(obj, attr, member) if isinstance(member, property) else member
            ):
                missing.append(f"{obj.__module__}.{obj.__qualname__}.{attr}")
    assert not missing, f"public methods without a docstring (inherited counts): {missing}"


def test_every_public_name_is_in_the_reference():
    pages = gw_api.render_pages(INFOS)
    canonical = gw_api.canonical_names(INFOS)
    text = "\n".join(pages.values())
    for module_name, name in PUBLIC:
        obj = getattr(importlib.import_module(module_name), name)
        home = canonical[id(obj)]
        home_module, _, home_name = home.rpartition(".")
        # documented once, at its home, in an autosummary under that module ...
        block = f".. currentmodule:: {home_module}\n\n.. autosummary::"
        assert block in text, f"no autosummary for {home_module}"
        section = text.split(block, 1)[1].split("\n\n\n", 1)[0].split(".. ", 1)[0]
        assert f"\n   {home_name}\n" in section + "\n", f"{home} missing from the reference"
        # ... and listed on every other page that exports it, linking home.
        if home != f"{module_name}.{name}" and module_name in {i.name for i in INFOS}:
            assert f":py:obj:`{name} <{home}>`" in pages[f"{module_name}.rst"]


def test_aliases_point_at_documented_names():
    canonical = set(gw_api.canonical_names(INFOS).values())
    aliases = gw_api.aliases(INFOS)
    assert aliases, "graphwire re-exports names, so there must be aliases"
    assert set(aliases.values()) <= canonical
    assert aliases.get("graphwire.execution.wired.WiredGraph") == "graphwire.WiredGraph"


def test_local_inventories_are_up_to_date(tmp_path):
    build = _load(DOCS / "_inventories" / "build.py", "inventory_build")
    for path in build.write_all(tmp_path):
        assert path.read_bytes() == (DOCS / "_inventories" / path.name).read_bytes(), (
            f"run python docs/_inventories/build.py ({path.name} is stale)"
        )


def test_offline_nitpicky_build_fails_on_a_broken_reference(tmp_path):
    """The inventories resolve offline, and one broken reference fails the -W -n build."""
    conf = (
        "extensions = ['sphinx.ext.intersphinx', 'myst_parser']\n"
        f"intersphinx_mapping = {{'torch': ('https://pytorch.org/docs/stable/', "
        f"{str(DOCS / '_inventories' / 'torch.inv')!r})}}\n"
        "nitpicky = True\n"
    )
    (tmp_path / "conf.py").write_text(conf)
    (tmp_path / "index.md").write_text("# t\n\n{py:class}`torch.Tensor`\n")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html"]
    ok = subprocess.run([*cmd, str(tmp_path), str(tmp_path / "out")], capture_output=True)
    assert ok.returncode == 0, ok.stderr.decode()
    html = (tmp_path / "out" / "index.html").read_text()
    assert "https://pytorch.org/docs/stable/tensors.html#torch.Tensor" in html
    (tmp_path / "index.md").write_text("# t\n\n{py:class}`torch.NoSuchThing`\n")
    bad = subprocess.run([*cmd, str(tmp_path), str(tmp_path / "out2")], capture_output=True)
    assert bad.returncode != 0
    assert "torch.NoSuchThing" in bad.stderr.decode()


def test_model_registry_page_lists_every_model():
    import models

    page = gw_api.render_registry()
    for name in models.list_models():
        assert f"   * - ``{name}``" in page
