"""MkDocs hook: run the ``digits`` study preset and put its figures and tables into the site.

The figure and the numbers of the study guide are never committed by hand: before the pages
are rendered, this hook runs ``advrobust study run --preset digits`` (resuming what it can) and
``advrobust study report`` into ``.cache/docs-digits/`` and adds the figures to the site as
``generated/digits-*.png``, plus ``generated/digits-report.md``, which the guide includes with
``--8<--``. The study is rerun from scratch whenever the package's source changes (a hash of
``advrobust/**/*.py`` and the preset is kept beside it), so the docs always show what the
current code produces. The first build takes about two minutes on two CPU cores.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "docs-digits"
GENERATED = CACHE / "site" / "generated"
FIGURES = ("curves", "adversarial-accuracy", "scaling-law", "pareto")


def _stamp() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "advrobust").rglob("*")):
        if path.suffix in (".py", ".toml") and path.is_file():
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _run() -> None:
    sys.path.insert(0, str(ROOT))
    from advrobust.study import load_preset, run_study, write_report

    study = CACHE / "study"
    stamp_file = CACHE / "stamp"
    stamp = _stamp()
    if not stamp_file.is_file() or stamp_file.read_text() != stamp:
        shutil.rmtree(study, ignore_errors=True)
    study.parent.mkdir(parents=True, exist_ok=True)
    run_study(load_preset("digits"), study, progress=False, stream=None)
    write_report(study, formats=("png",))
    stamp_file.write_text(stamp)
    GENERATED.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        shutil.copyfile(study / "figures" / f"digits-{name}.png", GENERATED / f"digits-{name}.png")
    # the report's tables and analyses, headings one level down, for the study guide
    report = (study / "report.md").read_text()
    body = report[report.index("## Results") : report.index("## Timings")]
    body = body.replace("\n## ", "\n### ").replace("## Results", "### Results", 1)
    (GENERATED / "digits-report.md").write_text(body)


def on_files(files: Any, config: Any) -> Any:
    """Run the study (if needed) and add the generated files to the site."""
    from mkdocs.structure.files import File

    _run()
    for path in sorted(GENERATED.glob("*.png")):
        files.append(
            File(
                f"generated/{path.name}",
                src_dir=str(GENERATED.parent),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files
