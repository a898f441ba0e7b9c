"""DistributedDataParallel gives the single-process gradient, exactly.

Each of 2 gloo processes runs the model on its half of the batch; ``soundclr.train``
gathers the outputs from every rank and computes the loss on the whole batch (SupCon
needs every pair), and DDP averages the gradients. BatchNorm is put in eval mode so its
statistics are the same on every rank (on CPU, SyncBatchNorm is not available); what
remains is the gradient path itself, which must equal one process on the whole batch.
"""
import pytest
import torch
import torch.multiprocessing as mp

from soundclr import preset

BATCH = 8


def _setup(scheme):
    from soundclr.model import build_model
    cfg = preset("quick", scheme=scheme, temperature=0.2).resolved()
    torch.manual_seed(0)
    model = build_model(cfg, 4).eval()
    x = torch.randn(BATCH, 1, 32, 40, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 0])
    return cfg, model, x, labels


def _worker(rank, world, init_file, out_dir, scheme):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from soundclr.train.runtime import gather_output
    from soundclr.train.step import scheme_loss
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    cfg, model, x, labels = _setup(scheme)
    net = DistributedDataParallel(model, find_unused_parameters=scheme != "hybrid")
    per = BATCH // world
    out = gather_output(net(x[rank * per:(rank + 1) * per]), world)
    loss = scheme_loss(cfg, 1, out, labels)
    loss.backward()
    torch.save({"loss": loss.detach(), "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None}},
               f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize("scheme", ["hybrid", "supcon", "ce"])
def test_two_processes_give_the_single_process_gradient(scheme, tmp_path):
    from soundclr.train.step import scheme_loss
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path), scheme), nprocs=2, join=True)
    cfg, model, x, labels = _setup(scheme)
    loss = scheme_loss(cfg, 1, model(x), labels)
    loss.backward()
    single = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.allclose(got["loss"], loss.detach(), atol=1e-6)
        assert set(got["grads"]) == set(single)
        for name, g in single.items():
            assert torch.allclose(got["grads"][name], g, rtol=1e-4, atol=1e-7), name
