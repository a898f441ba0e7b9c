"""The scheme registry (issue 26), in timm's manner: tests that run over every registered scheme.

The paper's three and two planted ones (the example plugin ``examples/label_smoothing.py``, one stage; and a
two-stage scheme written here as a user would, to a plugin file of its own) each train a tiny run, resume
after a kill to the same bits, and appear in every table and figure that shows schemes; a plugin reaches
the processes a command starts through the environment; bad records and unknown names are clear errors.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from soundclr import preset, schemes  # noqa: E402
from soundclr.config import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "label_smoothing.py"

# A two-stage scheme of a user's own: SupCon with a hard-coded temperature of 0.1 in stage 1 (stage 2 is the
# library's linear classifier on the frozen encoder).
TWO_STAGE = '''
from soundclr import losses
from soundclr.schemes import Scheme, register


def loss(cfg, out, labels):
    return losses.supcon_loss(out.projection, labels, 0.1, form=cfg.optim.supcon_form, no_positive=cfg.optim.no_positive)


register(Scheme("supcon_warm", "SupCon, t = 0.1", loss, heads=("projection",), two_stage=True, contrastive=True,
                loss_name="SupCon loss, t = 0.1 (stage 1)", color="#937860",
                minimises="SupCon at temperature 0.1 in stage 1; a linear classifier in stage 2"))
'''


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Both plugins loaded (once per test process); the names of the schemes they registered."""
    path = tmp_path_factory.mktemp("plugin") / "supcon_warm.py"
    path.write_text(TWO_STAGE)
    names = schemes.load_plugins([EXAMPLE, path])
    return names, path


def small(root, scheme, **kw):
    base = dict(dataset="synthetic", data_root=str(root), epochs=3, warmup_epochs=1, stage2_epochs=2, batch_size=32,
                contrastive_stretch=1.0, scheme=scheme)
    base.update(kw)
    return preset("quick", **base)


def test_the_paper_schemes_are_registered_in_the_books_order():
    assert schemes.names()[:3] == schemes.PAPER_SCHEMES == ("ce", "supcon", "hybrid")
    assert [schemes.label_of(s) for s in schemes.PAPER_SCHEMES] == ["Cross-entropy", "SupCon, two stages", "Hybrid (SoundCLR)"]
    ce, supcon, hybrid = (schemes.get(s) for s in schemes.PAPER_SCHEMES)
    assert supcon.two_stage and not ce.two_stage and not hybrid.two_stage
    assert hybrid.uses_every_parameter and not ce.uses_every_parameter and not supcon.uses_every_parameter
    assert not ce.trains_projection and supcon.trains_projection and hybrid.trains_projection


def test_bad_records_and_unknown_names_are_clear_errors():
    def loss(cfg, out, labels):
        return out.logits.sum()
    with pytest.raises(ValueError, match="lowercase"):
        schemes.register(schemes.Scheme("My-Scheme", "x", loss))
    with pytest.raises(ValueError, match="heads"):
        schemes.register(schemes.Scheme("badheads", "x", loss, heads=("encoder",)))
    with pytest.raises(ValueError, match="registered already"):
        schemes.register(schemes.Scheme("ce", "my ce", loss))
    with pytest.raises(ConfigError, match="scheme='nosuch'"):
        preset("quick", scheme="nosuch")
    with pytest.raises(ValueError, match="--plugin"):
        schemes.get("nosuch")
    with pytest.raises(FileNotFoundError, match="no_such_plugin.py"):
        schemes.load_plugin("no_such_plugin.py")


def test_a_plugin_registers_its_schemes_and_names_itself_to_child_processes(planted):
    names, path = planted
    assert names == ["label_smoothing", "supcon_warm"]
    assert schemes.names()[3:] == ("label_smoothing", "supcon_warm")
    assert str(EXAMPLE.resolve()) in os.environ[schemes.PLUGIN_ENV]
    # a process this one starts (a training worker, a SLURM job, a notebook's kernel) finds them by name
    code = ("from soundclr import preset; c = preset('quick', dataset='synthetic', scheme='supcon_warm'); "
            "print(c.stages()[1]['epochs'] > 0, c.identity())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=True)
    here = preset("quick", dataset="synthetic", scheme="supcon_warm")
    assert out.stdout.split() == ["True", here.identity()]


def test_a_plugin_schemes_runs_are_identified_by_its_file(planted, tmp_path):
    """Editing the plugin file trains its runs again: its contents are part of the run's identity (the
    paper's schemes' identities are unchanged by the registry: test_train and the book's stored runs)."""
    before = preset("quick", dataset="synthetic", scheme="label_smoothing").identity()
    edited = tmp_path / "label_smoothing_v2.py"
    edited.write_text(EXAMPLE.read_text().replace('name="label_smoothing"', 'name="label_smoothing_v2"')
                      .replace('id="LS1"', 'id="LS2"'))            # a claim id, like a scheme name, is one plugin's
    schemes.load_plugin(edited)
    assert schemes.get("label_smoothing_v2").source.startswith("label_smoothing_v2.py@")
    other = preset("quick", dataset="synthetic", scheme="label_smoothing_v2")
    assert before != other.identity()
    assert "scheme_source" not in json.dumps(preset("quick", dataset="synthetic", scheme="ce").to_dict())


@pytest.mark.parametrize("scheme", ["ce", "supcon", "hybrid", "label_smoothing", "supcon_warm"])
def test_every_registered_scheme_trains_and_resumes_to_the_same_bits(scheme, planted, synthetic_root, synthetic_bank,
                                                                      tmp_path):
    from test_train import train_until

    from soundclr.train import train_run
    cfg = small(synthetic_root, scheme)
    assert scheme in schemes.names()
    whole = train_run(cfg, tmp_path / "whole", bank=synthetic_bank, progress=False)
    train_until(cfg, tmp_path / "killed", 2, synthetic_bank)
    resumed = train_run(cfg, tmp_path / "killed", bank=synthetic_bank, progress=False)
    rows = [[{k: v for k, v in json.loads(x).items() if k != "seconds"}
             for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("whole", "killed")]
    assert rows[0] == rows[1] and len(rows[0]) == cfg.total_epochs
    assert whole["final"] == resumed["final"]
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    two_stage = schemes.get(scheme).two_stage
    assert cfg.total_epochs == 3 + (2 if two_stage else 0)
    stage1 = [r for r in rows[0] if r["stage"] == 1]
    assert all((r["train_acc"] is None) == two_stage for r in stage1)   # no classifier in a two-stage stage 1


def test_a_fourth_and_fifth_scheme_appear_in_every_table_and_figure(planted, synthetic_root, synthetic_bank, tmp_path):
    """The planted schemes beside cross-entropy: Table III's rows, Fig. 4's bars, the confusion figure's panels
    and its table of confused pairs, Fig. 5's lines, the learning curves (with the scheme's own loss name) and
    the training page's schedule line; nothing is dropped or raises for a scheme the book did not know."""
    import matplotlib.pyplot as plt

    from soundclr.analysis import tables
    from soundclr.book import figures
    from soundclr.book.plan import make_plan
    from soundclr.book.sections import robustness
    from soundclr.book.sections.training import schedule_text
    from soundclr.runs.grid import grid, run_grid
    from soundclr.runs.store import frame, load_metrics
    shown = ["ce", "label_smoothing", "supcon_warm"]
    cfg = small(synthetic_root, "ce", epochs=2, stage2_epochs=1)
    runs = grid(cfg, "main", schemes=shown, folds=[1, 2], seeds=[0], results=str(tmp_path / "r"))
    run_grid(runs, bank=synthetic_bank, progress=False, verbose=False)
    df = frame(runs)
    labels = [schemes.label_of(s) for s in shown]
    assert labels == ["Cross-entropy", "CE, label smoothing", "SupCon, t = 0.1"]

    assert list(tables.scheme_table(df).index) == labels                     # Table III
    assert list(tables.scheme_fold_table(df).index) == labels                # Fig. 4's numbers
    assert set(tables.confused_pairs_table(df).index.get_level_values(0)) <= set(labels)

    fig = figures.fold_bars(df)                                              # Fig. 4
    legend = [t.get_text() for t in fig.legends[0].get_texts()] if fig.legends else \
        [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == labels
    plt.close(fig)

    fig = figures.confusion_panels(df)                                       # the confusion matrices
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == labels
    plt.close(fig)

    noise = tables.noise_frame(df, [0.0, 0.05], bank=synthetic_bank, device="cpu")
    fig = robustness.noise_figure(noise)                                     # Fig. 5
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == labels
    plt.close(fig)

    for scheme in ("label_smoothing", "supcon_warm"):                        # the training page
        mine = [r for r in runs if r.config.run.scheme == scheme]
        fig = figures.learning_curves(load_metrics(frame(mine)), scheme)
        assert schemes.get(scheme).loss_name in [ax.get_ylabel() for ax in fig.axes]
        plt.close(fig)
        plan = make_plan("synthetic", "quick", size="tiny", device="cpu", results=str(tmp_path / "r"),
                         data_root=str(synthetic_root))
        text = schedule_text(plan, scheme)
        assert schemes.label_of(scheme) in text and schemes.get(scheme).minimises.split(" ")[0] in text


def test_the_command_line_trains_a_plugin_scheme_beside_the_papers(synthetic_root, tmp_path):
    """`soundclr train --plugin examples/label_smoothing.py --schemes ce,label_smoothing` in a fresh process (two
    workers, which find the plugin through the environment); `status --plugin` reads the runs; without the
    plugin the name is a usage error that says how to load one."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop(schemes.PLUGIN_ENV, None)
    base = [sys.executable, "-m", "soundclr"]
    common = ["--preset", "quick", "--dataset", "synthetic", "--data-root", str(synthetic_root), "--results",
              str(tmp_path / "r"), "--folds", "1", "--seeds", "0", "--epochs", "2", "--quiet"]
    r = subprocess.run(base + ["train", "--plugin", str(EXAMPLE), "--schemes", "ce,label_smoothing", "--workers", "2",
                               *common], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert sorted(p.parent.name.split("-")[0] for p in (tmp_path / "r").rglob("summary.json")) == ["ce", "label_smoothing"]
    r = subprocess.run(base + ["status", "--plugin", str(EXAMPLE), "--results", str(tmp_path / "r"), "--brief"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "2 finished" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(base + ["train", "--schemes", "label_smoothing", *common], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 2 and "--plugin FILE" in r.stderr, r.stderr
