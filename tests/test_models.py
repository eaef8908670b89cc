"""Every registered network: creation by name, the shared interface, parameter counts, gradients,
determinism, and a few optimisation steps on synthetic targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from irstd.models import count_parameters, create, list_models, model_info

EXPECTED = {"acm", "alcnet", "dnanet", "uiunet", "isnet", "rdian", "istdunet", "sctransnet", "hcfnet", "agpcnet"}
HEAVY = {"uiunet"}  # > 40 M parameters: smaller inputs in the training smoke test


def test_registry_names_present():
    missing = EXPECTED - set(list_models())
    assert not missing, f"models not registered: {sorted(missing)}"


def test_unknown_model_is_a_clear_error():
    from irstd.errors import IRSTDError

    with pytest.raises(IRSTDError, match="unknown model"):
        create("no-such-net")


@pytest.fixture(params=sorted(list_models()))
def name(request):
    return request.param


def _padded_size(h: int, w: int, stride: int) -> tuple[int, int]:
    return (-(-h // stride) * stride, -(-w // stride) * stride)


def test_parameter_count_matches_reference(name):
    info = model_info(name)
    assert info["reference_params"], f"{name}: no reference parameter count registered"
    assert info["reference"], f"{name}: no reference registered"
    n = count_parameters(create(name))
    ratio = n / info["reference_params"]
    assert 0.9 <= ratio <= 1.1, f"{name}: {n} params vs reference {info['reference_params']:.0f}"


@pytest.mark.parametrize("size", [(256, 256), (240, 320)])
def test_eval_forward_shape_and_determinism(name, size):
    torch.manual_seed(0)
    model = create(name).eval()
    assert isinstance(model.stride, int) and model.stride >= 1
    h, w = _padded_size(*size, model.stride)
    x = torch.randn(1, 1, h, w)
    with torch.no_grad():
        y1 = model(x)
        y2 = model(x)
    assert isinstance(y1, torch.Tensor), "eval mode must return one logit tensor"
    assert y1.shape == (1, 1, h, w)
    assert torch.isfinite(y1).all()
    assert torch.equal(y1, y2)


def test_train_mode_output_structure_and_backward(name):
    torch.manual_seed(0)
    model = create(name).train()
    s = model.stride
    h, w = _padded_size(64, 96, s)
    out = model(torch.randn(2, 1, h, w))
    outs = out if isinstance(out, list) else [out]
    assert isinstance(model.deep_supervision, bool)
    assert (len(outs) > 1) == model.deep_supervision
    for o in outs:
        assert o.shape == (2, 1, h, w)
    sum(o.mean() for o in outs).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), f"{name}: some parameters received no gradient"
    assert any(g.abs().sum() > 0 for g in grads)


def _synthetic_batch(n: int, h: int, w: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, h, w, generator=g) * 0.3
    y = torch.zeros(n, 1, h, w)
    for i in range(n):
        for _ in range(2):
            cy = int(torch.randint(4, h - 4, (1,), generator=g))
            cx = int(torch.randint(4, w - 4, (1,), generator=g))
            y[i, 0, cy - 2 : cy + 2, cx - 2 : cx + 2] = 1
            x[i, 0, cy - 2 : cy + 2, cx - 2 : cx + 2] += 2.0
    return x, y


def test_short_training_reduces_loss(name):
    torch.manual_seed(0)
    model = create(name).train()
    size = 32 if name in HEAVY else 64
    h, w = _padded_size(size, size, model.stride)
    x, y = _synthetic_batch(4, h, w, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_fn():
        out = model(x)
        outs = out if isinstance(out, list) else [out]
        return sum(F.binary_cross_entropy_with_logits(o, y) for o in outs) / len(outs)

    first = loss_fn()
    losses = [first.item()]
    opt.zero_grad()
    first.backward()
    opt.step()
    for _ in range(5):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], f"{name}: loss did not decrease: {losses}"
