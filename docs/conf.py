"""Sphinx configuration of the MinImagen website (build command: README.md, <!-- docs-command -->).

The site is built from the repository itself: the source folder is the repository root, and only
the files matched by ``include_patterns`` become pages, so the notebooks, exercises, solutions and
READMEs are read where they are (whatever is on disk at build time, never a copy). This folder holds
only what exists for the website: this file, the API reference page, the local Colab badge and a
style sheet.
Nothing is downloaded at build time and no page loads anything from another host: MathJax comes from
sphinx-mathjax-offline, notebooks keep their stored outputs and are never executed.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document the package in this checkout, not another installed copy

project = "MinImagen"
author = "MinImagen contributors"
copyright = "MinImagen contributors"
root_doc = "README"  # the README is the home page (copied to index.html when the build finishes)

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx-mathjax-offline",  # MathJax 3 served from the site's own _static folder
]

# Pages: found by globbing, so new or renamed notebooks and exercises appear without editing this file.
COURSE_GLOBS = {
    "The course": ["notebooks/[0-9]*"],
    "Exercises": ["exercises/README", "exercises/[0-9]*"],
    "Solutions": ["solutions/[0-9]*"],
    "Reference": ["docs/api", "benchmarks/README", "CONTRIBUTING"],
}
include_patterns = [
    "README.md", "CONTRIBUTING.md", "docs/*.md", "benchmarks/README.md",
    "notebooks/[0-9]*.ipynb", "exercises/README.md", "exercises/[0-9]*.ipynb", "solutions/[0-9]*.ipynb",
]
exclude_patterns = ["docs/_build", "**/.ipynb_checkpoints"]

# MyST and notebooks: stored outputs only, $...$ math, GitHub-style heading anchors (README links use them).
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # sliders need a live kernel; loading their JavaScript would reach another host
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
suppress_warnings = [
    "mystnb.unknown_mime_type",  # widget views: no kernel on a static page
    "myst.header",  # heading levels are written for GitHub and Jupyter, where a skipped level is fine
]

# API reference from the docstrings.
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}

# Theme: a book layout; every notebook page gets a download button for its .ipynb and a Colab button.
REPOSITORY = "https://github.com/minimagen/minimagen"
html_theme = "sphinx_book_theme"
html_title = "MinImagen"
html_static_path = ["_static"]
html_css_files = ["minimagen.css"]
html_sourcelink_suffix = ""  # the download button serves the notebook itself, not a .txt copy
html_theme_options = {
    "repository_url": REPOSITORY,
    "repository_branch": "main",
    "path_to_docs": "",
    "use_download_button": True,
    "use_repository_button": False,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "navigation_with_keys": False,
}

COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_COLAB_BADGE = "/docs/_static/colab-badge.svg"  # from the source root; no image from another host


def add_course_toctree(app, docname, source):
    """Give the home page (the README, which stays plain Markdown on GitHub) the site's table of contents."""
    if docname != app.config.root_doc:
        return
    for caption, globs in COURSE_GLOBS.items():
        entries = "\n".join(globs)
        source[0] += f"\n\n```{{toctree}}\n:hidden:\n:glob:\n:caption: {caption}\n\n{entries}\n```\n"


def colab_badge_and_download_link(app, doctree):
    """Show the notebooks' Colab badge from the site's own copy (the link still opens Colab) and put a
    download link for the notebook itself beside it."""
    from docutils import nodes
    from sphinx import addnodes

    source = Path(app.env.doc2path(app.env.docname))
    for image in list(doctree.findall(nodes.image)):
        if image["uri"] != COLAB_BADGE:
            continue
        image["uri"] = LOCAL_COLAB_BADGE
        badge = image.parent if isinstance(image.parent, nodes.reference) else image
        if source.suffix == ".ipynb" and isinstance(badge.parent, nodes.paragraph):
            link = addnodes.download_reference(
                "", "", nodes.inline("", f"Download {source.name}"),
                reftarget=source.name, refdoc=app.env.docname, refexplicit=True, refwarn=True,
                classes=["notebook-download"],
            )
            badge.parent.insert(badge.parent.index(badge) + 1, [nodes.Text(" "), link])


def link_folders_to_the_repository(app, doctree):
    """A Markdown link to a folder of the repository (it works on GitHub) opens that folder on GitHub:
    a folder is no page of the site."""
    from docutils import nodes
    from sphinx import addnodes

    here = Path(app.env.doc2path(app.env.docname)).parent
    for xref in list(doctree.findall(addnodes.pending_xref)):
        path, _, _ = xref["reftarget"].partition("#")
        if xref.get("reftype") != "myst" or not path:
            continue
        folder = (here / path).resolve()
        if folder.is_dir() and folder.is_relative_to(ROOT):
            url = f"{REPOSITORY}/tree/main/{folder.relative_to(ROOT).as_posix()}"
            xref.replace_self(nodes.reference("", "", *xref.children, refuri=url))


def copy_home_page_to_index(app, exception):
    """Serve the README page as index.html too, so the site's address opens the home page."""
    if exception is None and app.builder.format == "html":
        out = Path(app.outdir)
        (out / "index.html").write_text((out / f"{app.config.root_doc}.html").read_text())


def show_docstring_as_written(app, what, name, obj, options, lines):
    """Render each docstring as the preformatted text it is written as (plain text, equations and
    shape lines aligned by spaces, e.g. `x0: (b, c, h, w)`), never reinterpreted as reStructuredText."""
    if any(line.strip() for line in lines):
        text = [f"   {line}" if line.strip() else "" for line in lines]
        lines[:] = [".. code-block:: none", "   :class: docstring", "", *text, ""]


def skip_re_exports(app, what, name, obj, skip, options):
    """Document a class or function once, under the package that defines it: `minimagen.train`
    re-exports a few names of `minimagen.data`, which lists them already."""
    import inspect

    documented = app.env.temp_data.get("autodoc:module")
    home = getattr(obj, "__module__", None)
    if documented and home and (inspect.isclass(obj) or inspect.isroutine(obj)):
        if home != documented and not home.startswith(documented + "."):
            return True
    return None


def setup(app):
    app.connect("autodoc-process-docstring", show_docstring_as_written)
    app.connect("autodoc-skip-member", skip_re_exports)
    app.connect("source-read", add_course_toctree)
    app.connect("doctree-read", colab_badge_and_download_link, priority=400)  # before the file collectors
    app.connect("doctree-read", link_folders_to_the_repository)
    app.connect("build-finished", copy_home_page_to_index)
