"""``import kbsearch`` and the CLI's start stay cheap: heavy libraries load when something needs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("sklearn", "scipy", "whoosh", "numpy", "lxml", "requests")


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _loaded(after: str) -> list[str]:
    code = f"""
import json, sys
{after}
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    return _run(code)  # type: ignore[return-value]


def test_import_kbsearch_loads_no_heavy_library() -> None:
    assert _loaded("import kbsearch") == []


def test_cli_start_loads_no_heavy_library() -> None:
    assert _loaded("import kbsearch.cli") == []
    help_text = subprocess.run([sys.executable, "-c", "from kbsearch.cli import run; run()", "--help"],
                               capture_output=True, text=True, timeout=120)
    assert help_text.returncode == 0 and "crawl" in help_text.stdout


def test_opening_an_index_does_not_load_scikit_learn(tmp_path: Path) -> None:
    """scikit-learn loads for fitting or using a TF-IDF model, not to open (or crawl into) an index."""
    loaded = _loaded(f"""
from kbsearch import KnowledgeBase
kb = KnowledgeBase.open({str(tmp_path / 'kb')!r})
kb.search("anything at all")
kb.close()
""")
    assert "whoosh" in loaded and "sklearn" not in loaded and "scipy" not in loaded


def test_every_public_name_resolves_to_its_definition() -> None:
    result = _run("""
import importlib, json, kbsearch
bad = []
for name in kbsearch.__all__:
    value = getattr(kbsearch, name)
    if name == "__version__":
        continue
    source = importlib.import_module("kbsearch." + kbsearch._SOURCES[name])
    if getattr(source, name) is not value:
        bad.append(name)
import kbsearch.evaluation.evaluate  # the submodule does not shadow the public function `kbsearch.evaluate`
from kbsearch import *  # noqa: F403
print(json.dumps({"bad": bad, "evaluate_is_function": callable(kbsearch.evaluate) and not isinstance(
    kbsearch.evaluate, type(kbsearch)), "star": sorted(set(kbsearch.__all__) - set(globals())),
    "dir": sorted(set(kbsearch.__all__) - set(dir(kbsearch))), "submodule": kbsearch.kb.__name__}))
""")
    assert result == {"bad": [], "evaluate_is_function": True, "star": [], "dir": [], "submodule": "kbsearch.kb"}


def test_unknown_attribute_is_an_attribute_error() -> None:
    result = _run("""
import json, kbsearch
try:
    kbsearch.no_such_name
except AttributeError as exc:
    print(json.dumps(str(exc)))
""")
    assert "no_such_name" in result
