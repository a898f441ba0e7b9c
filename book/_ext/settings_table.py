"""Sphinx extension (local to this book): the table of every setting of soundclr.config.

    ```{soundclr-settings}
    ```

renders one row per setting (its section, the value in the `paper` and `quick` presets, and
its description, read from the comment beside the field in ``soundclr/config.py`` by
:func:`soundclr.config.setting_descriptions`), so the API page lists each setting once, from
the code.
"""
from __future__ import annotations

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else repr(v) if isinstance(v, str) else str(v)


class SettingsTable(SphinxDirective):
    has_content = False

    def run(self):
        from soundclr.config import FIELD_SECTION, preset, setting_descriptions
        described = setting_descriptions()
        paper, quick = preset("paper"), preset("quick")
        table = nodes.table(classes=["soundclr-settings"])
        group = nodes.tgroup(cols=5)
        table += group
        for width in (14, 8, 12, 12, 54):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        head += self._row(["setting", "section", "paper preset", "quick preset", "what it sets"])
        body = nodes.tbody()
        group += body
        for name, section in FIELD_SECTION.items():
            body += self._row([name, section, _value(paper.get(name)), _value(quick.get(name)), described.get(name, "")],
                              literal=(0,))
        return [table]

    @staticmethod
    def _row(cells, literal=()):
        row = nodes.row()
        for i, text in enumerate(cells):
            entry = nodes.entry()
            para = nodes.paragraph()
            para += nodes.literal(text=text) if i in literal else nodes.Text(text)
            entry += para
            row += entry
        return row


def setup(app):
    app.add_directive("soundclr-settings", SettingsTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
