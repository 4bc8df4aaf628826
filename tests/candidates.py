"""Candidate rule folders for tests: a copy of a bundled policy as a new version, edited as text."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ISASS = "isass-2023-restorative-neurostimulation"


def candidate(root: Path, replacements: dict[str, str], *, policy: str = ISASS, version: str = "1.1.0") -> Path:
    """``root`` as a rules folder holding the bundled ``fields.yaml`` and ``policy`` as ``version``
    only, its policy.yaml edited by plain text replacements, each of which must apply."""
    source = ROOT / "rules" / policy
    newest = sorted(p for p in source.iterdir() if p.is_dir())[-1]
    folder = root / policy / version
    shutil.copytree(newest, folder)
    shutil.copy(ROOT / "rules" / "fields.yaml", root / "fields.yaml")
    path = folder / "policy.yaml"
    text = path.read_text(encoding="utf-8").replace(f'version: "{newest.name}"', f'version: "{version}"')
    for old, new in replacements.items():
        assert old in text, f"{old!r} is not in {path}"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return root
