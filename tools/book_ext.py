"""The book's own Sphinx extension (loaded by _config.yml, ``sphinx.local_extensions``).

- **One repository URL drives every link to the code.** ``repository.url`` in _config.yml is empty
  until the repository is public; then the book has no repository, issue, Binder or Colab
  buttons. Set it (e.g. ``https://github.com/OWNER/aimoe``) and the next build shows all four,
  with the launch providers listed under ``launch_buttons``.
- **Author-year bibliography.** The text cites author-year ("Büchel et al. (2025)",
  ``bibtex_reference_style: author_year``); the bibliography's labels follow suit
  (``bibtex_default_style: authoryear``, registered here with pybtex) instead of pybtex's alpha
  labels.
- **Alt text from the caption.** A figure's PNG carries its title and takeaway under the PNG
  keyword ``Description`` (aimoe_lib.viz.static.png_with_alt); images without alt text get it.
- **A readable API reference.** Enum classes show no constructor signature, and module
  constants or attributes whose repr is longer than ``MAX_REPR`` characters show no value (their
  docstrings say what they hold).
- **Source tags are citations.** The code names its sources with tags such as ``[3DSIM]``; in the
  API reference each tag of :data:`SOURCE_TAGS` is followed by its linked bibliography entry.
- **No Thebe.** Thebe would start a kernel on a public Binder; the book's interactivity is its
  static sliders instead, so sphinx-thebe's scripts (a config snippet that it may inject twice
  and a loader) and its per-page configuration (which names an example repository) are dropped
  from every page when ``launch_buttons.thebe`` is false.
"""

from __future__ import annotations

import re

THEBE_CONFIG = re.compile(r'\s*<script type="text/x-thebe-config">.*?</script>', re.S)
"""The per-page Thebe configuration sphinx-thebe writes into the body."""

BUTTONS = ("use_repository_button", "use_issues_button")
"""Theme options switched on when the repository URL is set."""
LAUNCHERS = ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url", "jupyterlite_url")
"""Launch providers that need the repository URL."""


def _configure_buttons(app, config) -> None:
    opts = config.html_theme_options
    url = (opts.get("repository_url") or "").strip()
    launch = dict(opts.get("launch_buttons") or {})
    if url:
        for key in BUTTONS:
            opts[key] = True
    else:
        opts.pop("repository_url", None)
        for key in (*BUTTONS, "use_edit_page_button", "use_source_button"):
            opts[key] = False
        for key in LAUNCHERS:
            launch.pop(key, None)
    opts["launch_buttons"] = launch


def _thebe_on(app) -> bool:
    return bool((app.config.html_theme_options.get("launch_buttons") or {}).get("thebe"))


def _drop_thebe(app, pagename, templatename, context, doctree) -> None:
    if _thebe_on(app) or "script_files" not in context:
        return

    def is_thebe(js) -> bool:
        name = getattr(js, "filename", None) or str(js)
        body = (getattr(js, "attributes", None) or {}).get("body", "")
        return "sphinx-thebe" in (name or "") or "THEBE_JS_URL" in body or "thebe@" in (name or "")

    context["script_files"] = [js for js in context["script_files"] if not is_thebe(js)]
    if "body" in context:
        context["body"] = THEBE_CONFIG.sub("", context["body"])
    if "css_files" in context:
        context["css_files"] = [c for c in context["css_files"]
                                if "sphinx-thebe" not in (getattr(c, "filename", None) or str(c))]


def _author_year(entry) -> str:
    """'Büchel et al., 2025' for an entry with authors 'Büchel and others' and year 2025."""
    import codecs

    import latexcodec  # noqa: F401  (registers the 'ulatex' codec; a pybtex dependency)

    people = entry.persons.get("author", [])
    names = [codecs.decode(" ".join(p.last_names) or " ".join(p.first_names), "ulatex")
             .replace("{", "").replace("}", "") for p in people]
    others = any(str(p) == "others" for p in people)
    names = [n for n in names if n != "others"]
    if not names:
        who = entry.key
    elif len(names) == 1 and not others:
        who = names[0]
    elif len(names) == 2 and not others:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


def _register_author_year_style() -> None:
    from pybtex.plugin import register_plugin
    from pybtex.richtext import Text
    from pybtex.style.formatting.unsrt import Style as Unsrt
    from pybtex.style.template import join, node, sentence
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            labels = [_author_year(e) for e in sorted_entries]
            seen: dict[str, int] = {}
            for label in labels:
                seen[label] = seen.get(label, 0) + 1
            count: dict[str, int] = {}
            for label in labels:  # the same authors and year twice: 2024a, 2024b
                if seen[label] > 1:
                    count[label] = count.get(label, 0) + 1
                    label += "abcdefghijklmnopqrstuvwxyz"[count[label] - 1]
                yield label

    @node
    def names_et_al(children, context, role, **kwargs):
        """pybtex's ``names``, with a trailing 'others' written 'et al.' (not as a name)."""
        persons = context["entry"].persons[role]
        listed = [p for p in persons if str(p) != "others"]
        style = context["style"]
        text = join(**kwargs)[[style.format_name(p, style.abbreviate_names)
                               for p in listed]].format_data(context)
        return Text(text, " et al.") if len(listed) < len(persons) else text

    class AuthorYear(Unsrt):
        default_label_style = "aimoe-authoryear"
        default_sorting_style = "author_year_title"

        def format_names(self, role, as_sentence=True):
            formatted = names_et_al(role, sep=", ", sep2=" and ", last_sep=", and ")
            return sentence[formatted] if as_sentence else formatted

    register_plugin("pybtex.style.labels", "aimoe-authoryear", AuthorYearLabels)
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYear)


def _et_al_for_others() -> None:
    """Cite an entry whose authors end in 'and others' (not all listed in the .bib) as
    'Büchel et al.': sphinxcontrib-bibtex abbreviates only lists of three or more persons and
    would print pybtex's person 'others' as a name ('Büchel and others'). Replaces its ``names``
    template node, which its person styles look up when they format a citation."""
    from pybtex.richtext import Text
    from pybtex.style.template import FieldIsMissing, node
    from sphinxcontrib.bibtex.style import referencing, template

    @node
    def names(children, data, role, **kwargs):
        assert not children
        try:
            persons = data["entry"].persons[role]
        except KeyError:
            raise FieldIsMissing(role, data["entry"]) from None
        style = data["style"]
        listed = [p for p in persons if str(p) != "others"]
        formatted = [style.person.style_plugin.format(p, style.person.abbreviate) for p in listed]
        if len(listed) < len(persons) and formatted and kwargs.get("other") is not None:
            return Text(formatted[0].format_data(data), kwargs["other"])
        return template.join(**kwargs)[formatted].format_data(data)

    template.names = names
    referencing.names = names


ALT_KEY = "Description"
"""PNG text key of a figure's alt text (aimoe_lib.viz.static.ALT_KEY)."""


def _alt_from_png(app, doctree, docname) -> None:
    from pathlib import Path

    from docutils import nodes
    from PIL import Image

    for node in doctree.findall(nodes.image):
        if node.get("alt"):
            continue
        uri = node.get("uri", "")
        path = Path(uri) if Path(uri).is_absolute() else Path(app.srcdir) / uri
        if path.suffix.lower() != ".png" or not path.exists():
            continue
        with Image.open(path) as img:
            alt = img.text.get(ALT_KEY) if hasattr(img, "text") else None
        if alt:
            node["alt"] = alt


SOURCE_TAGS = {
    "3DSIM": "ibm2024threedsim",
    "MOEPIM": "moewithpim2024",
    "HERMES": "legallo2023hermes",
    "HBM3": "jedec2022hbm3",
    "UCIE": "dassharma2022ucie",
    "SHIM-YU": "shim2021nand",
    "BUCHEL-AREA": "buchel2025moe3d",
    "GPTFAST": "pytorch2023gptfast",
}
"""Source tags of the code (book/appendix_assumptions.md lists them) and their entries in
book/references.bib."""
TAG = re.compile(r"\[(" + "|".join(re.escape(t) for t in SOURCE_TAGS) + r")\](?![_`])")


def _cite_tags(app, what, name, obj, options, lines) -> None:
    for i, line in enumerate(lines):
        lines[i] = TAG.sub(lambda m: f"[{m.group(1)}] (:cite:t:`{SOURCE_TAGS[m.group(1)]}`)", line)


MAX_REPR = 80
"""Longest value repr the API reference prints for a constant or attribute, characters."""


def _enum_signature(app, what, name, obj, options, signature, return_annotation):
    from enum import Enum

    if what == "class" and isinstance(obj, type) and issubclass(obj, Enum):
        return "", None
    return None


def _short_value_documenters(app) -> None:
    from sphinx.ext.autodoc import AttributeDocumenter, DataDocumenter
    from sphinx.util.inspect import object_description

    def too_long(obj) -> bool:
        try:
            return len(object_description(obj)) > MAX_REPR
        except Exception:  # noqa: BLE001 - an object without a repr shows no value either
            return True

    class ShortData(DataDocumenter):
        def should_suppress_value_header(self) -> bool:
            return super().should_suppress_value_header() or too_long(self.object)

    class ShortAttribute(AttributeDocumenter):
        def should_suppress_value_header(self) -> bool:
            return super().should_suppress_value_header() or too_long(self.object)

    app.add_autodocumenter(ShortData, override=True)
    app.add_autodocumenter(ShortAttribute, override=True)


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")
    _short_value_documenters(app)
    app.connect("autodoc-process-signature", _enum_signature)
    app.connect("autodoc-process-docstring", _cite_tags)
    _register_author_year_style()
    _et_al_for_others()
    app.connect("doctree-resolved", _alt_from_png)
    app.connect("config-inited", _configure_buttons)
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
