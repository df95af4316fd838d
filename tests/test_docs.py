"""The documentation's links and script names stay true: every relative link in README.md and
docs/ points at a file that exists (and, with #anchor, at a heading of it), and every
scripts/<file> a page names exists unless its paragraph or code block says which older commit had it."""
import re
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SCRIPT = re.compile(r"(?<![\w/])scripts/([A-Za-z0-9_]+\.(?:py|sh))")
OLD_COMMIT = re.compile(r"\bat [0-9a-f]{7}\b|\b[0-9a-f]{7}:scripts/|\(then |\bthen `scripts/|old script")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = "".join(c for c in text if c in " -" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(page: Path) -> set:
    found, seen = set(), {}
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            base = slug(line.lstrip("#"))
            n = seen.get(base, 0)
            found.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert broken == []


def chunks(text: str):
    """Paragraphs, and each fenced code block as one piece."""
    out, current, in_code = [], [], False
    for line in text.splitlines():
        if line.startswith("```"):
            if in_code:
                out.append("\n".join(current + [line]))
                current = []
            else:
                out.append("\n".join(current))
                current = [line]
            in_code = not in_code
        elif not line.strip() and not in_code:
            out.append("\n".join(current))
            current = []
        else:
            current.append(line)
    return out + ["\n".join(current)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_named_scripts_exist(page):
    missing = [name for chunk in chunks(page.read_text()) if not OLD_COMMIT.search(chunk)
               for name in SCRIPT.findall(chunk) if not (REPO / "scripts" / name).exists()]
    assert missing == []


def test_slug_follows_github():
    assert slug("8.2 Stage 1: mouth–pose decoupling") == "82-stage-1-mouthpose-decoupling"
    assert slug("4.3 LIA `vox.pt`") == "43-lia-voxpt"
    assert slug("On a GPU: precision and speed") == "on-a-gpu-precision-and-speed"
