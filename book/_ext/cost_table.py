"""Sphinx extension (local to this book): what the paper preset costs, estimated from FLOPs.

    ```{soundclr-cost}
    :tflops: 60
    ```

renders, for ESC-50, ESC-10 and UrbanSound8K, the device-hours of each grid of the paper-size
plan (Table III, II, I, Fig. 3, the mask-fill ablation, the whole book), computed by
:mod:`soundclr.book.cost` from the model's FLOP count and the assumed sustained rate, so the
numbers on the page come from the code (and change with it), not from a hand.
"""
from __future__ import annotations

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

DATASETS = {"esc50": "ESC-50", "esc10": "ESC-10", "us8k": "UrbanSound8K"}
ROWS = [("main", "Table III (and Fig. 4, 5, UMAPs)"), ("alpha", "Table II"), ("masking", "Table I"),
        ("ablation", "Fig. 3"), ("mask-fill", "mask fill"), ("the whole book", "the whole book")]


class CostTable(SphinxDirective):
    has_content = False
    option_spec = {"tflops": directives.positive_int}

    def run(self):
        from soundclr.book import cost
        from soundclr.config import preset
        tflops = self.options.get("tflops", 60)
        tables = {d: cost.cost_table(d, cost.estimate(preset("paper", dataset=d), tflops)) for d in DATASETS}
        table = nodes.table()
        group = nodes.tgroup(cols=1 + 2 * len(DATASETS))
        table += group
        for _ in range(1 + 2 * len(DATASETS)):
            group += nodes.colspec(colwidth=10)
        head = nodes.thead()
        group += head
        head += _row(["grid"] + [f"{DATASETS[d]}: {what}" for d in DATASETS for what in ("runs", "GPU-hours")])
        body = nodes.tbody()
        group += body
        for key, label in ROWS:
            cells = [label]
            for d in DATASETS:
                t = tables[d]
                cells += [f"{int(t.loc[key, 'runs'])}", f"{t.loc[key, 'hours']:.1f}"] if key in t.index else ["", ""]
            body += _row(cells)
        f = cost.flops_per_clip(preset("paper", dataset="esc50"))
        note = nodes.paragraph(text=(
            f"An estimate, not a measurement: ResNet-50 on a 5-s ESC-50 clip (3 x 128 x 431) costs "
            f"{f['forward'] / 1e9:.1f} GFLOP forward (counted by torch's FlopCounterMode), so about "
            f"{f['train'] / 1e9:.0f} GFLOP per training clip (forward and backward), and a GPU is assumed to "
            f"sustain {tflops} TFLOP/s on it (soundclr.book.cost.estimate)."))
        return [table, note]


def _row(cells):
    row = nodes.row()
    for text in cells:
        entry = nodes.entry()
        entry += nodes.paragraph(text=text)
        row += entry
    return row


def setup(app):
    app.add_directive("soundclr-cost", CostTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
