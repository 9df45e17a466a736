"""labkit's layering rules, checked on the source: no module reaches into another module's private names.

A name that starts with one underscore is private to the module that defines it. Other modules — topic
modules, benchmarks and tests alike — use the public API (``labkit.lm`` for the language model). The scan
parses every Python file of ``labkit/``, ``benchmarks/``, ``tests/`` and ``tools/`` and reports:

* ``module._name`` where ``module`` is an imported labkit module (``hooks._layout``);
* ``thing._name`` where ``_name`` is defined privately in a *different* labkit module (``lm._batch`` on a
  ``LanguageModel``, defined in ``labkit/lm/model.py``), unless ``thing`` is ``self`` or ``cls``;
* ``from labkit.x import _name``, and imports of a private module from outside its own package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ["labkit", "benchmarks", "tests", "tools"]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path) -> str | None:
    """``labkit/lm/model.py`` → ``labkit.lm.model`` (None outside the package)."""
    rel = path.relative_to(ROOT)
    if rel.parts[0] != "labkit":
        return None
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _defined_privates(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, module variables, methods and ``self._x`` attributes."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _private(node.name):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and _private(node.id):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _private(node.attr):
            names.add(node.attr)
    return names


def _files() -> list[Path]:
    out = []
    for folder in SCANNED:
        if (ROOT / folder).is_dir():
            out += sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)
    return out


def _labkit_module_aliases(tree: ast.AST, here: str | None) -> dict[str, str]:
    """Local names bound to labkit modules by the file's imports: ``{"hooks": "labkit.lm.hooks", ...}``."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("labkit"):
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else "labkit"
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and here:  # relative import inside the package
                pkg = here.split(".")[: len(here.split(".")) - node.level + (1 if _is_package(here) else 0)]
                base = ".".join(pkg + ([node.module] if node.module else []))
            if base.startswith("labkit"):
                for a in node.names:
                    candidate = f"{base}.{a.name}"
                    if (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists() or (ROOT / Path(*candidate.split("."))).is_dir():
                        aliases[a.asname or a.name] = candidate
    return aliases


def _is_package(module: str) -> bool:
    return (ROOT / Path(*module.split(".")) / "__init__.py").exists()


def test_no_module_reaches_into_another_modules_private_names():
    files = _files()
    trees = {p: ast.parse(p.read_text(), filename=str(p)) for p in files}
    owners: dict[str, set[str]] = {}  # private name -> labkit modules defining it
    for path, tree in trees.items():
        mod = _module_name(path)
        if mod:
            for name in _defined_privates(tree):
                owners.setdefault(name, set()).add(mod)
    problems = []
    for path, tree in trees.items():
        here = _module_name(path)
        own = _defined_privates(tree)
        aliases = _labkit_module_aliases(tree, here)
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if base.startswith("labkit"):
                    for a in node.names:
                        if _private(a.name):
                            problems.append(f"{rel}:{node.lineno}: imports the private {a.name} from {base}")
                    private_parts = [p for p in base.split(".") if _private(p)]
                    if private_parts:
                        owner_pkg = base.split(".")[: base.split(".").index(private_parts[0])]
                        if not (here and here.split(".")[: len(owner_pkg)] == owner_pkg):
                            problems.append(f"{rel}:{node.lineno}: imports the private module {base}")
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                continue
            if isinstance(value, ast.Name) and value.id in aliases:
                problems.append(f"{rel}:{node.lineno}: {value.id}.{node.attr} is private to {aliases[value.id]}")
            elif node.attr in owners and node.attr not in own:
                where = ", ".join(sorted(owners[node.attr]))
                problems.append(f"{rel}:{node.lineno}: .{node.attr} is private to {where}")
    assert not problems, "private names used across modules:\n" + "\n".join(problems)


def test_the_scan_catches_what_it_forbids(tmp_path):
    """The rule is not vacuous: each forbidden pattern, written into a file, is reported."""
    bad = ast.parse("from labkit.lm import hooks\nhooks.layout(lm)\nhooks._real_block(x)\nlm._sequences(['a'])\n")
    aliases = _labkit_module_aliases(bad, "labkit.steering")
    assert aliases == {"hooks": "labkit.lm.hooks"}
    attrs = [n for n in ast.walk(bad) if isinstance(n, ast.Attribute) and _private(n.attr)]
    assert [a.attr for a in attrs] == ["_real_block", "_sequences"]
    model_privates = _defined_privates(ast.parse((ROOT / "labkit" / "lm" / "model.py").read_text()))
    assert "_sequences" in model_privates and "_pad" in model_privates


LM_TOPICS = ["llm_explain", "steering", "sae", "patching", "mediation", "bias", "values", "preference", "dpo",
             "pluralistic", "constitutional", "circuits"]


def test_no_language_model_topic_module_imports_another_topic_module():
    """The language-model topic modules stand on the core (``labkit.lm``, ``datasets``, ``runtime``, ``viz``, ``validation``,
    ``distributed``),
    not on each other (notebook 05's module once imported notebook 06's)."""
    core = {"labkit", "labkit.datasets", "labkit.runtime", "labkit.viz", "labkit.widgets", "labkit.stats", "labkit.validation",
            "labkit.distributed"}
    topic_names = {f"labkit.{p.stem}" for p in (ROOT / "labkit").glob("*.py") if not p.name.startswith("_")} - core
    problems = []
    for path in [ROOT / "labkit" / f"{name}.py" for name in LM_TOPICS]:
        here = f"labkit.{path.stem}"
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("labkit"):
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t in topic_names and t != here:
                    problems.append(f"labkit/{path.name}:{node.lineno} imports {t}")
    assert not problems, "\n".join(problems)


def test_no_labkit_function_moves_the_language_model_it_was_handed():
    """Only loading places a language model on a device; only LoraDPO and Organism (which say so) add an adapter
    to it, and both can take it out again."""
    problems = []
    for path in sorted((ROOT / "labkit").rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(ROOT).as_posix()
        for lineno, line in enumerate(text.splitlines(), 1):
            if ".model.to(" in line and rel != "labkit/lm/load.py":
                problems.append(f"{rel}:{lineno}: {line.strip()}")
            if "get_peft_model(" in line and "import" not in line and rel not in ("labkit/dpo.py", "labkit/organisms/__init__.py"):
                problems.append(f"{rel}:{lineno}: {line.strip()}")
    assert not problems, "\n".join(problems)
    from labkit import dpo, organisms

    assert "in place" in dpo.LoraDPO.__doc__ and "remove" in dpo.LoraDPO.__doc__
    assert "in place" in organisms.Organism.__doc__ and "remove" in organisms.Organism.__doc__
