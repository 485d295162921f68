"""train.fused_optimizer: torch's fused AdamW kernel, the same update as the default's."""

from __future__ import annotations

import torch

from monokd.training.schedule import build_optimizer


def test_the_fused_update_equals_the_default_one():
    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 3)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    cfg = {"train": {"weight_decay": 0.01, "lr": 1e-2, "no_decay_bias": True}}
    optimizers = [build_optimizer(models[0], cfg),
                  build_optimizer(models[1], {"train": {**cfg["train"], "fused_optimizer": True}})]
    assert [bool(g["fused"]) for o in optimizers for g in o.param_groups] == [False, False, True, True]
    x = torch.randn(7, 5)
    for _ in range(3):
        for model, optimizer in zip(models, optimizers):
            optimizer.zero_grad()
            model(x).square().sum().backward()
            optimizer.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert not torch.equal(a, models[0][0].weight.new_zeros(a.shape))
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
