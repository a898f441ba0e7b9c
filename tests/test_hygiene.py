"""Repository hygiene: licence, citation metadata and clean notebook sources.

- ``LICENSE`` is the MIT licence (the SPDX text, word for word) and
  ``pyproject.toml`` declares it as the SPDX expression ``MIT``.
- ``CITATION.cff`` parses, has the keys CFF 1.2.0 requires, carries
  pyproject's version, and prefers the paper (matching ``references.bib``).
- Every ``notebooks/*.ipynb`` is committed without outputs and execution
  counts, with exactly one cell tagged ``parameters`` (papermill's).
"""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# The MIT licence as published by SPDX (https://spdx.org/licenses/MIT.html) and the OSI, after its copyright line.
MIT_BODY = """
Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated
documentation files (the "Software"), to deal in the Software without restriction, including without limitation the
rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and to permit
persons to whom the Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial portions of the
Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE
WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR
COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def words(text: str) -> list[str]:
    """The text as a list of words: line breaks and indentation do not matter, wording does."""
    return text.split()


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


# -- licence -------------------------------------------------------------------------

def test_license_is_the_mit_text():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    lines = [line.strip() for line in text.strip().splitlines()]
    assert lines[0] == "MIT License"
    assert re.fullmatch(r"Copyright \(c\) 2026 The soundclr contributors", lines[2]), lines[2]
    body = "\n".join(lines[3:])
    assert words(body) == words(MIT_BODY)


def test_pyproject_declares_mit_as_an_spdx_expression():
    data = pyproject()
    project = data["project"]
    assert project["license"] == "MIT"   # a string: the table form is deprecated by setuptools
    assert project["license-files"] == ["LICENSE"]
    assert not any(c.startswith("License ::") for c in project.get("classifiers", [])), \
        "a licence classifier beside an SPDX expression is an error for setuptools >= 77"
    from packaging.requirements import Requirement  # packaging comes with pytest
    (setuptools,) = [r for r in map(Requirement, data["build-system"]["requires"]) if r.name == "setuptools"]
    assert "76.9" not in setuptools.specifier   # setuptools reads license = "<SPDX>" from 77 on


def test_python_minimum_is_the_same_in_pyproject_and_the_makefile_and_has_extraction_filters():
    from packaging.specifiers import SpecifierSet
    required = SpecifierSet(pyproject()["project"]["requires-python"])
    assert "3.11.3" not in required     # tarfile's extraction filters (soundclr.data.unpack) came in 3.11.4
    makefile = (ROOT / "Makefile").read_text()
    (check,) = re.findall(r"sys\.version_info >= \((\d+), (\d+)(?:, (\d+))?\)", makefile)
    minimum = ".".join(n for n in check if n)
    assert str(required) == f">={minimum}", (str(required), minimum)
    assert f"needs Python {minimum} or newer" in makefile    # and the Makefile's message says which


# -- citation --------------------------------------------------------------------------

def citation() -> dict:
    with open(ROOT / "CITATION.cff", encoding="utf-8") as f:
        return yaml.safe_load(f)


def bib_entry(key: str) -> dict[str, str]:
    """The fields of one entry of references.bib (flat ``name = {value}`` fields, as that file writes them)."""
    text = (ROOT / "references.bib").read_text(encoding="utf-8")
    start = text.index("{" + key + ",")
    end = text.index("\n}", start)
    fields = {}
    for name, value in re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?\s*$", text[start:end], flags=re.M):
        fields[name.lower()] = value
    return fields


def test_citation_has_the_required_keys_and_pyprojects_version():
    cff = citation()
    for key in ("cff-version", "message", "title", "authors"):      # required by the CFF 1.2.0 schema
        assert cff.get(key), f"CITATION.cff lacks {key!r}"
    assert cff["cff-version"] == "1.2.0"
    assert cff["title"] == "soundclr: SoundCLR, reproduced"
    assert cff["type"] == "software" and cff["license"] == "MIT"
    assert isinstance(cff["version"], str), "quote the version in CITATION.cff, or YAML may read it as a number"
    assert cff["version"] == pyproject()["project"]["version"]
    for author in cff["authors"]:
        assert author.get("name") or author.get("family-names"), author


def test_preferred_citation_is_the_paper_as_in_references_bib():
    paper = citation()["preferred-citation"]
    bib = bib_entry("nasiri2021soundclr")
    assert paper["type"] == "article"
    assert paper["title"] == bib["title"].replace("{", "").replace("}", "")
    assert paper["year"] == int(bib["year"]) == 2021
    names = [f"{a['family-names']}, {a['given-names']}" for a in paper["authors"]]
    assert names == [n.strip() for n in bib["author"].split(" and ")] == ["Nasiri, Alireza", "Hu, Jianjun"]
    assert bib["eprint"] == "2103.01929" and bib["archiveprefix"] == "arXiv"
    assert paper["journal"] == f"arXiv preprint arXiv:{bib['eprint']}"
    ids = {i["type"]: i["value"] for i in paper["identifiers"]}
    assert ids["doi"] == f"10.48550/arXiv.{bib['eprint']}"     # the DOI arXiv assigns to every paper
    assert paper["url"] == ids["url"] == f"https://arxiv.org/abs/{bib['eprint']}"


# -- notebooks ---------------------------------------------------------------------------

def notebook_problems(path: Path) -> list[str]:
    """What keeps a notebook source from being committed as is (empty when it is clean)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return [f"cannot be read as a notebook ({err})"]
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {i} has {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {i} has execution count {cell['execution_count']}")
    tagged = [i for i, cell in enumerate(nb.get("cells", []))
              if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"{len(tagged)} cells are tagged 'parameters' ({tagged}): papermill needs exactly one")
    return problems


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks_to_check():
    assert len(NOTEBOOKS) >= 1, f"no notebook found in {ROOT / 'notebooks'}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path):
    problems = notebook_problems(path)
    assert not problems, (f"{path.relative_to(ROOT)}: {'; '.join(problems)}. Clear it before committing: "
                          f"jupyter nbconvert --clear-output --inplace {path.relative_to(ROOT)}")


def test_the_notebook_check_catches_outputs_counts_and_parameters(tmp_path):
    def write(cells) -> Path:
        path = tmp_path / "nb.ipynb"
        path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
        return path

    def code(outputs=(), count=None, tags=()):
        return {"cell_type": "code", "source": "x = 1", "metadata": {"tags": list(tags)},
                "outputs": list(outputs), "execution_count": count}
    params = code(tags=["parameters"])
    assert notebook_problems(write([params, code()])) == []
    stream = {"output_type": "stream", "name": "stdout", "text": "1\n"}
    assert notebook_problems(write([params, code(outputs=[stream])])) == ["cell 1 has 1 output(s)"]
    assert notebook_problems(write([params, code(count=3)])) == ["cell 1 has execution count 3"]
    assert "0 cells are tagged 'parameters'" in notebook_problems(write([code()]))[0]
    assert "2 cells are tagged 'parameters' ([0, 1])" in notebook_problems(write([params, params]))[0]
    (tmp_path / "nb.ipynb").write_text("{not json")
    assert "cannot be read as a notebook" in notebook_problems(tmp_path / "nb.ipynb")[0]
