"""The documentation: it builds with warnings as errors, and the estimator links to it."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

from sk_dualhead import DualHeadClassifier

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS_PACKAGES = (
    "sphinx",
    "numpydoc",
    "sphinx_gallery",
    "myst_parser",
    "pydata_sphinx_theme",
)


def test_html_repr_links_to_the_api_page():
    url = DualHeadClassifier()._get_doc_link()
    assert url == (
        "https://sk-dualhead.readthedocs.io/en/latest/generated/"
        "sk_dualhead.DualHeadClassifier.html"
    )
    assert url in DualHeadClassifier()._repr_html_()


@pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in DOCS_PACKAGES),
    reason="the [docs] extra is not installed",
)
def test_docs_build_without_warnings(tmp_path):
    html = tmp_path / "html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(ROOT / "docs"),
            str(html),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    # The page the HTML repr links to exists under the name it links to.
    page = DualHeadClassifier()._get_doc_link().rsplit("/en/latest/", 1)[1]
    assert (html / page).is_file()
    # The gallery examples ran and produced their figures.
    assert list((html / "_images").glob("sphx_glr_plot_quickstart_*.png"))
