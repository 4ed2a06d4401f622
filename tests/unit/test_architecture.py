"""The folder tree is the architecture: the import contracts in pyproject.toml ([tool.importlinter]) hold.

import-linter builds the import graph with grimp, function-local imports included, so a dependency
pointing up (accounts importing billing, billing importing the gateway) fails here, with the line that
makes it, rather than at the next refactor that trips over the cycle.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support.env import ROOT

# In a process of its own: in this one, the classes the test run has loaded (zope.interface's, through
# twisted) break import-linter's own option check.
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def test_the_apps_depend_one_way():
    result = subprocess.run([sys.executable, "-c", LINT, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
