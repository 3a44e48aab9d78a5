"""The layers of docs/architecture.md hold: import-linter's contracts (pyproject.toml) are kept, and no
module imports itself through others (an import cycle)."""

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


def test_the_import_linter_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.is_file():
        pytest.fail(f"{lint_imports} is missing: install the dev extras (make install)")
    result = subprocess.run([str(lint_imports)], cwd=REPOSITORY, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "0 broken" in result.stdout


def test_the_package_has_no_import_cycle():
    graph = grimp.build_graph("resnode_lightning")
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            # a package's __init__ importing its own modules is how packages are built, not a cycle
            if importer == imported or importer.startswith(f"{imported}.") or imported.startswith(f"{importer}."):
                continue
            chain = graph.find_shortest_chain(importer=imported, imported=importer)
            if chain and not any(a.startswith(f"{b}.") or b.startswith(f"{a}.") for a, b in zip(chain, chain[1:])):
                cycles.append(" -> ".join([importer, *chain[1:]]) if chain[0] == imported else str(chain))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
