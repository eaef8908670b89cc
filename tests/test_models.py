"""Every registered network: creation by name, the shared interface, parameter counts, gradients,
determinism, and a few optimisation steps on synthetic targets."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from irstd.models import count_parameters, create, fuse_for_inference, list_models, model_info

EXPECTED = {"acm", "alcnet", "dnanet", "uiunet", "isnet", "rdian", "istdunet", "sctransnet", "hcfnet", "agpcnet",
            "irstd_diff", "irstd_diff_ce"}
HEAVY = {"uiunet"}  # > 40 M parameters: smaller inputs in the training smoke test
# Generative networks (IRSTD-Diff, paper 001): trained through their own loss, reached as
# model(image, mask, generator=...) -> {"loss": ...}, not through a logit output; their eval forward
# samples a mask (seeded, so deterministic). Built here with few sampling steps: each step is one
# denoiser pass, and the interface checks need no more.
GENERATIVE = {"irstd_diff"}
TEST_KWARGS = {"irstd_diff": {"steps": 1}}


def _create(name: str, **kwargs):
    return create(name, **{**TEST_KWARGS.get(name, {}), **kwargs})


def _train_outputs(model, name: str, x: torch.Tensor, y: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Train-mode outputs to put a loss on: the logits (a list with deep supervision), or for a
    generative network its training loss on ``y`` (an empty mask when not given), with fixed draws."""
    if name in GENERATIVE:
        y = torch.zeros_like(x[:, :1]) if y is None else y
        return [model(x, y, generator=torch.Generator().manual_seed(0))["loss"]]
    out = model(x)
    return out if isinstance(out, list) else [out]


def test_registry_names_present():
    missing = EXPECTED - set(list_models())
    assert not missing, f"models not registered: {sorted(missing)}"


def test_unknown_model_is_a_clear_error():
    from irstd.errors import IRSTDError

    with pytest.raises(IRSTDError, match="unknown model"):
        create("no-such-net")


@pytest.fixture(params=sorted(list_models()))
def name(request):
    if request.param in GENERATIVE:
        pytest.importorskip("diffusers", reason='the diffusion samplers need pip install "irstd[diffusion]"')
    return request.param


def _padded_size(h: int, w: int, stride: int) -> tuple[int, int]:
    return (-(-h // stride) * stride, -(-w // stride) * stride)


# Designs without a public implementation: no reference count is registered (it could only be our own
# count, and the test above would compare the code with itself); their counts are derived below from
# the architecture's layer widths instead.
OWN_DESIGNS = {"litenet", "sfim_dnanet"}
# Published without a count, and with a public implementation that differs from the paper (IRSTD-Diff:
# the release's encoder pools once more than Table II and adds fusion blocks the paper does not
# describe), so there is no reference to compare with; the CE's count is derived from Table II below.
NO_PUBLISHED_COUNT = {"irstd_diff", "irstd_diff_ce"}


@pytest.mark.parametrize("model_name", sorted(set(list_models()) - OWN_DESIGNS - NO_PUBLISHED_COUNT))
def test_parameter_count_matches_reference(model_name):
    info = model_info(model_name)
    assert info["reference_params"], f"{model_name}: no reference parameter count registered"
    assert info["reference"], f"{model_name}: no reference registered"
    n = count_parameters(create(model_name))
    ratio = n / info["reference_params"]
    assert 0.9 <= ratio <= 1.1, f"{model_name}: {n} params vs reference {info['reference_params']:.0f}"


def test_only_own_designs_lack_a_reference_count():
    without = {n for n in list_models() if not model_info(n)["reference_params"]}
    assert without == OWN_DESIGNS | NO_PUBLISHED_COUNT
    assert all(model_info(n)["reference"] for n in OWN_DESIGNS | NO_PUBLISHED_COUNT)


def _rsu_params(height: int, cin: int, mid: int, cout: int) -> int:
    """RSU of irstd/models/layers/rsu.py: bias-free 3x3 conv + BN units; conv_in (cin -> cout),
    height - 1 encoder units (cout -> mid, then mid -> mid), the bottom unit (mid -> mid) and
    height - 1 decoder units on concatenations (2 mid -> mid, the last 2 mid -> cout)."""
    unit = lambda i, o: 9 * i * o + 2 * o  # noqa: E731
    n = unit(cin, cout) + unit(cout, mid) + (height - 2) * unit(mid, mid) + unit(mid, mid)
    return n + (height - 2) * unit(2 * mid, mid) + unit(2 * mid, cout)


def test_irstd_diff_ce_parameter_count_from_table_ii():
    """Paper 001's Table II (in / mid / out channels of the six encoder and five decoder RSU stages),
    the six 3x3 side heads (with bias) on Decoder1..5 and Encoder6 and the 1x1 fusion of six logits."""
    enc = [(7, 1, 16, 64), (6, 64, 16, 64), (5, 64, 32, 128), (4, 128, 32, 256), (4, 256, 32, 256), (4, 256, 64, 256)]
    dec = [(4, 512, 64, 256), (4, 512, 32, 128), (5, 256, 32, 64), (6, 128, 16, 64), (7, 128, 16, 64)]
    n = sum(_rsu_params(*s) for s in enc + dec)
    n += sum(9 * c + 1 for c in (64, 64, 64, 128, 256, 256)) + 6 + 1
    assert count_parameters(create("irstd_diff_ce")) == n
    # the CE inside IRSTD-Diff at paper size is the same network (plus LIW when k > 0)
    assert count_parameters(create("irstd_diff", size="paper", ne=False, liw_levels=0).ce) == n


def _basic_block_params(cin: int, cout: int) -> int:
    # conv3x3 + BN, conv3x3 + BN, and a 1x1 conv + BN projection when the widths differ
    return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout + (cin * cout + 2 * cout if cin != cout else 0)


def _stage_params(cin: int, cout: int, blocks: int) -> int:
    return _basic_block_params(cin, cout) + (blocks - 1) * _basic_block_params(cout, cout)


def test_litenet_parameter_count_from_its_layer_widths():
    """LiteNet (docstring of irstd/models/litenet.py): 3x3 conv-BN stem to w0; encoder stages of basic
    blocks (widths 8-16-32-64-128, blocks 1-1-2-2-2); per decoder level a one-block stage on
    [skip, up-sampled deeper map] and CBAM (reduction 4: two bias-free 1x1 convs and a 7x7 2->1 conv);
    per level a 1x1 conv-BN projection to 8 channels and a 1x1 side head; fused head 1x1 conv-BN
    (32 -> 8) then 3x3 conv to one logit."""
    widths, blocks, fuse = (8, 16, 32, 64, 128), (1, 1, 2, 2, 2), 8
    n = 9 * widths[0] + 2 * widths[0]
    prev = widths[0]
    for w, b in zip(widths, blocks):
        n += _stage_params(prev, w, b)
        prev = w
    for w, deeper in zip(widths[:-1], widths[1:]):
        n += _stage_params(w + deeper, w, 1)  # decoder stage
        n += 2 * w * (w // 4) + 2 * 49  # CBAM
        n += w * fuse + 2 * fuse + fuse + 1  # projection + side head
    levels = len(widths) - 1
    n += fuse * levels * fuse + 2 * fuse + 9 * fuse + 1
    assert n == 912_717
    for act in ("none", "relu"):  # the head's activation has no parameters
        assert count_parameters(create("litenet", fuse_act=act)) == n


@pytest.mark.parametrize("size", [(256, 256), (240, 320)])
def test_eval_forward_shape_and_determinism(name, size):
    torch.manual_seed(0)
    model = _create(name).eval()
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
    model = _create(name).train()
    s = model.stride
    h, w = _padded_size(64, 96, s)
    outs = _train_outputs(model, name, torch.randn(2, 1, h, w))
    assert isinstance(model.deep_supervision, bool)
    assert (len(outs) > 1) == model.deep_supervision
    for o in outs:
        assert o.shape == (() if name in GENERATIVE else (2, 1, h, w))
    sum(o.mean() for o in outs).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), f"{name}: some parameters received no gradient"
    assert any(g.abs().sum() > 0 for g in grads)


def test_channels_last_training_computes_the_same_loss_and_gradients(name):
    # irstd train lays kernels out channels-last on CPU (training_layout): same function, same gradients
    from irstd.models import training_layout

    torch.manual_seed(0)
    ref = _create(name).train()
    for m in ref.modules():  # dropout draws its mask in memory order: same statistics, other pixels
        if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d)):
            m.p = 0.0
    cl = training_layout(copy.deepcopy(ref), "channels_last")
    kernels = [p for p in cl.parameters() if p.dim() == 4]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    h, w = _padded_size(64, 64, ref.stride)
    x, y = _synthetic_batch(2, h, w, seed=1)

    def loss_and_grad(model, dtype):
        model = model.to(dtype)
        torch.manual_seed(1)
        if name in GENERATIVE:
            loss = _train_outputs(model, name, x.to(dtype), y.to(dtype))[0]
        else:
            outs = _train_outputs(model, name, x.to(dtype))
            loss = sum(F.binary_cross_entropy_with_logits(o, y.to(dtype)) for o in outs)
        loss.backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        grad = torch.cat([p.grad.double().flatten() for p in model.parameters() if p.grad is not None])
        return loss.detach().double(), grad

    # In float64 the layout may change nothing but rounding at 1e-16: a layout-dependent computation
    # (a view of the wrong axes, a mask drawn in memory order) shows at full size. In float32 the
    # channels-last network is as close to the float64 truth as the contiguous one, within 10
    # times: at initialisation some networks are ill-conditioned (UIU-Net's float32 gradients
    # differ from its float64 ones by most of their norm), so a fixed float32 tolerance would test
    # rounding, not layout.
    def rel(a, b):
        return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()

    loss64, g64 = loss_and_grad(copy.deepcopy(ref), torch.float64)
    loss64_cl, g64_cl = loss_and_grad(training_layout(copy.deepcopy(ref).double(), "channels_last"), torch.float64)
    assert rel(loss64_cl, loss64) < 1e-6 and rel(g64_cl, g64) < 1e-6, f"{name}: layout changes the float64 result"
    if not getattr(ref, "train_channels_last", True):  # opted out for float32 accuracy: auto keeps it
        auto = training_layout(copy.deepcopy(ref).float(), "auto")
        assert all(p.is_contiguous() for p in auto.parameters())
        return
    loss32, g32 = loss_and_grad(ref, torch.float32)
    loss_cl, g_cl = loss_and_grad(cl, torch.float32)
    for what, got, ref32, want in (("loss", loss_cl, loss32, loss64), ("gradients", g_cl, g32, g64)):
        tol = max(1e-4 if what == "loss" else 1e-3, 10 * rel(ref32, want))
        assert rel(got, want) <= tol, f"{name}: channels-last {what} off by {rel(got, want):.2g} (contiguous {rel(ref32, want):.2g})"
    back = training_layout(cl, "contiguous")
    assert all(p.is_contiguous() for p in back.parameters())
    # the inference copy of a channels-last trained network follows the network's own choice
    fused = fuse_for_inference(training_layout(cl, "channels_last"))
    want = torch.channels_last if getattr(cl, "inference_channels_last", False) else torch.contiguous_format
    convs = [m.weight for m in fused.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w_.is_contiguous(memory_format=want) for w_ in convs)


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
    model = _create(name).train()
    size = 32 if name in HEAVY else 64
    h, w = _padded_size(size, size, model.stride)
    x, y = _synthetic_batch(4, h, w, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_fn():
        if name in GENERATIVE:  # the same timesteps and noise every time: the loss of one problem
            return _train_outputs(model, name, x, y)[0]
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


def _trained_like(name: str) -> torch.nn.Module:
    """A zoo network in eval mode whose BatchNorms have non-trivial statistics and affine maps (a fresh
    network's identity norms would hide a wrong fold)."""
    torch.manual_seed(0)
    model = _create(name)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model.train()
        h = max(64, 2 * model.stride)
        _train_outputs(model, name, torch.randn(2, 1, h, h))  # running statistics from data
    return model.eval()


def _eval_size(model) -> int:
    return max(64, 2 * model.stride)


def test_fused_copy_matches_eval_output_and_leaves_the_original(name):
    from irstd.models.layers.conv import ConvBNAct

    model = _trained_like(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 1, _eval_size(model), _eval_size(model))
    fused = fuse_for_inference(model)
    with torch.no_grad():
        ref = model(x)
        out = fused(x)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5 * max(1.0, ref.abs().max().item())), (
        f"{name}: fused copy differs by {(out - ref).abs().max().item():.3g}"
    )
    # the original: same tensors, still training-ready (norms in place, gradients on), still eval
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in model.parameters())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    # the copy: every conv unit's norm folded away, frozen, same interface attributes
    units = [m for m in fused.modules() if isinstance(m, ConvBNAct)]
    assert all(not isinstance(m.bn, torch.nn.BatchNorm2d) for m in units if "bn" in m._modules)
    assert not any(p.requires_grad for p in fused.parameters())
    assert not fused.training and fused.stride == model.stride
    if getattr(model, "inference_channels_last", False):
        convs = [m for m in fused.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)


def test_in_place_data_edit_changes_the_no_grad_output(name):
    # EMA and weight averaging write through .data, which bumps no version counter: nothing derived
    # from the weights may be cached between calls.
    model = _trained_like(name)
    x = torch.randn(1, 1, _eval_size(model), _eval_size(model))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) and m.affine]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        first = model(x)
        model(x)  # a second call, so that anything lazily built in the first is in use
        for m in norms:
            m.weight.data.mul_(0.5)
        edited = model(x)
        for m in convs:
            m.weight.data.zero_()
            if m.bias is not None:
                m.bias.data.fill_(0.25)
        zeroed = model(x)
    assert not torch.allclose(edited, first), f"{name}: a .data edit of the norms was not seen"
    assert not torch.allclose(zeroed, edited), f"{name}: a .data edit of the convolutions was not seen"


def test_size_not_a_multiple_of_the_stride_is_a_clear_error(name):
    from irstd.errors import IRSTDError

    model = _create(name).eval()
    s = model.stride
    if s == 1:
        pytest.skip("stride 1: every size is a multiple")
    for h, w in ((2 * s + 1, 2 * s), (2 * s, 3 * s - 1)):
        with pytest.raises(IRSTDError, match=rf"{name}: input of {h}x{w} .*stride {s}.*pad_to_stride") as info:
            with torch.no_grad():
                model(torch.randn(1, 1, h, w))
        assert isinstance(info.value, ValueError)
    # the check survives the inference copy
    with pytest.raises(IRSTDError, match="pad_to_stride"), torch.no_grad():
        fuse_for_inference(model)(torch.randn(1, 1, s + 1, s))


def test_created_model_still_pickles_and_copies():
    import copy
    import pickle

    model = create("acm")
    clone = pickle.loads(pickle.dumps(model))
    with pytest.raises(ValueError, match="stride 16"), torch.no_grad():
        clone(torch.randn(1, 1, 20, 16))
    with pytest.raises(ValueError, match="stride 16"), torch.no_grad():
        copy.deepcopy(model)(torch.randn(1, 1, 20, 16))


@pytest.mark.parametrize("fuse_act, bounded", [("none", False), ("relu", True)])
def test_litenet_head_bound(fuse_act, bounded):
    """With every weight of the logit conv negative, a ReLU before it caps the logit at the conv's
    bias (the shipped detector's saturated 0.911 scores); the default head has no such cap: mixing
    features pushed negative (through the norm's shift) lift the logit far above the bias."""
    torch.manual_seed(0)
    model = create("litenet", fuse_act=fuse_act).eval()
    mix, final = model.fuse[0], model.fuse[-1]
    with torch.no_grad():
        final.weight.copy_(-final.weight.abs() - 1e-2)
        final.bias.fill_(1.0)
        mix.bn.bias.fill_(-5.0)
        logits = torch.cat([model(torch.randn(2, 1, 64, 64) * scale) for scale in (0.1, 1.0, 10.0)])
    if bounded:
        assert logits.max() <= 1.0 + 1e-6
    else:
        assert logits.max() > 2.0, "the default head should not bound the logit by the bias"


def test_litenet_rejects_an_unknown_head_activation():
    with pytest.raises(ValueError, match="fuse_act"):
        create("litenet", fuse_act="gelu")


def test_litenet_space_to_depth():
    """space_to_depth=2: full-resolution logits (train and eval), stride doubled, the default network
    untouched; the shuffle path is exact: a head that copies its input sub-pixels returns the frame
    itself, so no pixel of a one-pixel target is averaged away; BatchNorm folding keeps the output."""
    torch.manual_seed(0)
    model = create("litenet", space_to_depth=2)
    assert model.stride == 2 * create("litenet").stride == 32
    x = torch.randn(2, 1, 64, 96)
    outs = model.train()(x)
    assert len(outs) == 5 and all(o.shape == x.shape for o in outs)
    model.eval()
    with torch.no_grad():
        want = model(x)
        np.testing.assert_allclose(fuse_for_inference(model)(x).numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
    assert want.shape == x.shape
    assert model._full(F.pixel_unshuffle(x, 2)).equal(x)
    with pytest.raises(ValueError, match="space_to_depth"):
        create("litenet", space_to_depth=0)


def test_litenet_space_to_depth_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    from irstd.engine.onnx_backend import OnnxNetwork, export_onnx

    torch.manual_seed(0)
    model = fuse_for_inference(create("litenet", space_to_depth=2).eval())
    path = tmp_path / "s2d.onnx"
    export_onnx(model, path, metadata={"model": "litenet", "kwargs": {"space_to_depth": 2}})
    x = torch.randn(1, 1, 96, 128)
    with torch.no_grad():
        want = model(x)
    assert float((OnnxNetwork(path)(x) - want).abs().max()) <= 1e-4
