"""A fourth scheme beside the paper's three, and a claim about it, in one file: cross-entropy with label
smoothing, and "label smoothing beats cross-entropy".

Label smoothing (Szegedy et al., 2016, "Rethinking the Inception Architecture") trains the classifier
towards 1 - eps on the true class and eps / K on every class, a regulariser a reader of SoundCLR may
well ask about: does the contrastive term beat a cheaper way of keeping the classifier from
over-confident logits? It runs under exactly the paper schemes' conditions: the same folds, seeds,
schedule (one stage, not stretched: it has no contrastive term), augmentation and statistics.

    soundclr reproduce --plugin examples/label_smoothing.py --schemes label_smoothing
    soundclr train --plugin examples/label_smoothing.py --schemes ce,label_smoothing --folds 1,2,3,4,5 --seeds 0,1
    soundclr status --plugin examples/label_smoothing.py

``reproduce`` trains it beside the paper's three schemes and builds the book with it: a training page of its
own, a row in Table III, a bar in Fig. 4 and 5, its learning curves, and the claim LS1 in the ledger with the
statistics of the paper's claims. In a notebook: ``plugins = ["examples/label_smoothing.py"]`` and
``schemes = ["label_smoothing"]`` in the parameters cell (or ``papermill -p plugins ... -p schemes ...``).

In Python: ``soundclr.schemes.load_plugin("examples/label_smoothing.py")``, then the tables and figures of
``soundclr.analysis.tables`` and ``soundclr.book.figures`` show it beside the paper's schemes.
"""
import torch.nn.functional as F

from soundclr.analysis.claims import Claim
from soundclr.analysis.claims import register as register_claim
from soundclr.analysis.rows import beats
from soundclr.schemes import Scheme, register

# The smoothing of Szegedy et al.: part of this file, so part of its runs'
# identity (an edited file trains again).
EPSILON = 0.1


def loss(cfg, out, labels):
    """Cross-entropy against the smoothed targets, in float32 (as the
    paper's Eq. 2 is computed)."""
    return F.cross_entropy(out.logits.float(), labels,
                           label_smoothing=EPSILON)


register(Scheme(
    name="label_smoothing",
    label="CE, label smoothing",
    loss=loss,
    heads=("classifier",),
    minimises=f"the cross-entropy of a linear classifier on h against "
              f"targets smoothed by {EPSILON:g} (Szegedy et al. 2016); its "
              "projection head is built but no loss trains it",
    color="#c44e52",
    claims=("LS1",),       # the claim its training page concludes on
))

# The claim, tested as the paper's C1 is (hybrid vs cross-entropy): the
# fold is the unit, with the seeds averaged within it.
register_claim(Claim(
    id="LS1",
    text="label smoothing beats cross-entropy",
    measure="label smoothing minus cross-entropy, final-epoch accuracy",
    evidence="results",    # the page whose conclusion lists it
    source="examples/label_smoothing.py (not a claim of the paper)",
    compute=beats("label_smoothing", "ce"),
))
