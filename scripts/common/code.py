"""What a rule's code is, by content: a hash of its script and of every project
module the script imports (transitively), given to the rule as a param.

With ``code`` left out of Snakemake's rerun triggers (profiles/default), a rule
re-runs exactly when this hash changes: ``touch``, a checkout that restores the
same file, or an edit of comments, docstrings or formatting re-runs nothing; a
real edit of the script or of a shared module (e.g. the bootstrap in
``common/stats.py``) re-runs every rule that imports it.  Python files are
hashed as their syntax tree without docstrings (the base configs too); other files as bytes.
Standard library only: it runs at planning time.
"""

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "common"
# Files a module reads at run time, relative to the scripts folder.
DATA_FILES = {"common/mmseg_config.py": ["common/configs"]}


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def _version(path: Path) -> tuple:
    """What tells an edit of ``path`` (the caches below hash each version once)."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


@lru_cache(maxsize=None)
def _imports(path: Path, version: tuple, scripts: Path) -> frozenset[Path]:
    """The files of package ``common``, and the entry scripts beside it, that ``path``
    imports (once per version of it)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if "." not in name and name != PACKAGE and (scripts / f"{name}.py").is_file():
                found.add(scripts / f"{name}.py")  # another entry script (its rule's job, reused)
            elif name == PACKAGE or name.startswith(PACKAGE + "."):
                parts = name.split(".")
                module = scripts.joinpath(*parts).with_suffix(".py")
                package = scripts.joinpath(*parts, "__init__.py")
                for candidate in (module, package):
                    if candidate.is_file():
                        found.add(candidate)
                # `import common.x` also runs common/__init__.py
                found.add(scripts / PACKAGE / "__init__.py")
    return frozenset(found)


def code_files(script, scripts=None) -> list[Path]:
    """``script`` and the project files it depends on, sorted."""
    script = Path(script).resolve()
    scripts = Path(scripts).resolve() if scripts else script.parent
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(_imports(path, _version(path), scripts) - seen)
    files = set(seen)
    for path in seen:
        for extra in DATA_FILES.get(path.relative_to(scripts).as_posix() if path.is_relative_to(scripts) else "", []):
            folder = scripts / extra
            files.update(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return sorted(files)


@lru_cache(maxsize=None)
def _content_digest(path: Path, version: tuple) -> bytes:
    """The sha256 of a file's content as hashed here (once per version of the file)."""
    if path.suffix == ".py":
        content = ast.dump(_without_docstrings(ast.parse(path.read_text()))).encode()
    else:
        content = path.read_bytes()
    return hashlib.sha256(content).digest()


def code_digest(script, scripts=None) -> str:
    """A short hash of what ``script`` runs (see the module's docstring).  Each file is
    parsed and hashed once per process while it is unchanged (planning asks for a
    rule's hash once per job)."""
    script = Path(script).resolve()
    scripts = Path(scripts).resolve() if scripts else script.parent
    digest = hashlib.sha256()
    for path in code_files(script, scripts):
        digest.update(path.relative_to(scripts).as_posix().encode() + b"\0")
        digest.update(_content_digest(path, _version(path)))
    return digest.hexdigest()[:16]
