"""MkDocs hook: the browser tests' screenshots (tests/screenshots/) are the docs' pictures.

They stay where the tests write them; the site gets them as ``screenshots/NAME.png``, so a page links
``../screenshots/4-compare.png`` and a screenshot a test no longer takes is a broken link the strict build refuses.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

SCREENSHOTS = Path(__file__).resolve().parents[2] / "tests" / "screenshots"


def on_files(files, config):
    for picture in sorted(SCREENSHOTS.glob("*.png")):
        files.append(File.generated(config, f"screenshots/{picture.name}", abs_src_path=str(picture)))
    return files
