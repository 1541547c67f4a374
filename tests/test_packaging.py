"""The pins agree everywhere: requirements-dev.txt, constraints.txt and environment.yml."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def _requirements():
    return _pins((ROOT / "requirements-dev.txt").read_text().splitlines())


def test_every_requirement_is_pinned_exactly():
    lines = [ln.split("#", 1)[0].strip() for ln in (ROOT / "requirements-dev.txt").read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    assert len(_requirements()) == len(lines), "every line of requirements-dev.txt must be name==version"
    assert _requirements()["torch"] == "2.13.0"


def test_environment_yml_repeats_the_pip_pins():
    env = (ROOT / "environment.yml").read_text().splitlines()
    pip_lines = [ln.strip()[2:].strip() for ln in env if ln.startswith("      - ")]
    assert _pins(pip_lines) == _requirements()


def test_constraints_agree_with_requirements():
    constraints = _pins((ROOT / "constraints.txt").read_text().splitlines())
    for name, version in _requirements().items():
        assert constraints.get(name) == version, f"{name}: constraints.txt has {constraints.get(name)}, requirements {version}"
    assert not any(name.startswith("nvidia-") for name in constraints), "a CUDA build of torch crept in"


def test_citation_file_cites_the_book_and_the_paper():
    import yaml

    root = Path(__file__).resolve().parents[1]
    cff = yaml.safe_load((root / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["title"] and cff["authors"]
    paper = cff["preferred-citation"]
    assert "Why Lottery Ticket Wins" in paper["title"] and paper["year"] == 2021
    assert [a["family-names"] for a in paper["authors"]] == ["Zhang", "Wang", "Liu", "Chen", "Xiong"]
    import tomllib

    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    assert cff["version"] == version  # the book's version is the package's
    assert "CITATION.cff" in (root / "book" / "intro.md").read_text()


def test_no_string_in_the_package_holds_control_characters():
    # a docstring once held a BEL (0x07) where "\a" of "\approx" had been read as an escape; MathJax
    # then failed on that formula in the API page and the PDF
    import ast

    bad = []
    for path in sorted((Path(__file__).resolve().parents[1] / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if any(ord(c) < 32 and c not in "\n\t" for c in node.value):
                    bad.append(f"{path.name}:{node.lineno}")
    assert not bad, bad
