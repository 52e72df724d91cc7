"""The eight autoencoder networks: sizes, shapes, gradients, the Keras-style LSTM."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

from licanom.detectors.autoencoders.nets import (
    NETS,
    TCN_AE,
    AutoencoderNet,
    KerasLSTM,
    TemporalConv,
    UnknownNetError,
    _max_pool2,
    _upsample2,
    build_net,
    count_parameters,
)

# Appendix B of the thesis: trainable parameters at chunk size 100, 8 features.
THESIS = {
    "LSTM_AE": (17_032, (16,), 1, "lstm"),
    "LSTM_AE_Small": (10_636, (3,), 1, "lstm"),
    "LSTM_AE_Deep": (17_864, (8,), 2, "lstm"),
    "LSTM_AE_Deep2": (18_088, (4,), 3, "lstm"),
    "TCN_AE": (29_204, (12, 6), 4, "tcn"),
    "TCN_AE2": (30_281, (3,), 4, "tcn"),
    "TCN_AE_Small": (29_339, (6, 3), 5, "tcn"),
    "TCN_AE_Small2": (29_468, (3,), 5, "tcn"),
}
# bottleneck shapes at other chunk sizes: L_3 = chunk // 8, L_4 = chunk // 16
CHUNK_SIZES = [25, 100, 256]  # the smallest the TCNs take, the thesis's, a large one


def expected_bottleneck(name: str, chunk: int) -> tuple[int, ...]:
    if name == "TCN_AE":
        return (chunk // 8, 6)
    if name == "TCN_AE_Small":
        return (chunk // 16, 3)
    return THESIS[name][1]


def test_registry_names() -> None:
    assert list(NETS) == list(THESIS)
    for name, cls in NETS.items():
        assert issubclass(cls, AutoencoderNet)
        assert cls.name == name


@pytest.mark.parametrize("name", list(THESIS))
def test_thesis_parameter_counts_and_attributes(name: str) -> None:
    params, bottleneck, depth, family = THESIS[name]
    net = build_net(name)
    assert count_parameters(net) == params
    assert sum(p.numel() for p in net.parameters()) == params  # nothing frozen
    assert net.name == name and net.family == family and net.depth == depth
    assert NETS[name].bottleneck == bottleneck == net.bottleneck
    assert (net.chunk_size, net.n_features) == (100, 8)


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
@pytest.mark.parametrize("name", list(THESIS))
def test_shapes_for_chunk_sizes(name: str, chunk: int) -> None:
    n_features = 8 if chunk % 2 else 5
    net = build_net(name, chunk_size=chunk, n_features=n_features).eval()
    x = torch.rand(3, chunk, n_features)
    with torch.no_grad():
        y = net(x)
        z = net.encode(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert net.bottleneck == expected_bottleneck(name, chunk)
    assert z.shape == (3, *net.bottleneck)
    assert torch.isfinite(y).all()


def test_tcn_padding_rule() -> None:
    assert build_net("TCN_AE").final_pad == (2, 2)  # Keras ZeroPadding1D(2): 96 -> 100
    assert build_net("TCN_AE", chunk_size=128).final_pad == (0, 0)
    assert build_net("TCN_AE", chunk_size=25).final_pad == (0, 1)  # 3 * 8 = 24 -> 25
    assert build_net("TCN_AE_Small", chunk_size=50).final_pad == (1, 1)  # 3 * 16 = 48
    # the flattening bottleneck's input follows the chunk size
    assert build_net("TCN_AE2", chunk_size=200).to_code.in_features == 12 * 25
    assert build_net("TCN_AE_Small2", chunk_size=200).to_code.in_features == 3 * 12


@pytest.mark.parametrize(
    ("name", "too_small", "smallest"),
    [
        ("TCN_AE", 7, 8),
        ("TCN_AE2", 4, 8),
        ("TCN_AE_Small", 15, 16),
        ("TCN_AE_Small2", 8, 16),
        ("LSTM_AE", 0, 1),
    ],
)
def test_too_small_chunk_size_raises(name: str, too_small: int, smallest: int) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        build_net(name, chunk_size=too_small)
    net = build_net(name, chunk_size=smallest)
    assert net(torch.rand(2, smallest, 8)).shape == (2, smallest, 8)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="TCN_AE_Small2") as info:
        build_net("LSTM")
    assert isinstance(info.value, (KeyError, UnknownNetError))
    assert "LSTM_AE, LSTM_AE_Small" in str(info.value)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        build_net("LSTM_AE", n_features=0)
    with pytest.raises(ValueError):
        build_net("TCN_AE2", dropout=1.0)
    with pytest.raises(ValueError):
        TCN_AE(padding="valid")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(THESIS))
def test_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    net = build_net(name).train()
    x = torch.rand(4, 100, 8)
    nn.functional.l1_loss(net(x), x).backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", list(THESIS))
def test_construction_is_deterministic(name: str) -> None:
    torch.manual_seed(123)
    a = build_net(name)
    torch.manual_seed(123)
    b = build_net(name)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize("name", list(THESIS))
def test_state_dict_round_trip(name: str) -> None:
    torch.manual_seed(0)
    a = build_net(name).eval()
    torch.manual_seed(1)
    b = build_net(name).eval()
    x = torch.rand(5, 100, 8)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        assert torch.equal(a.encode(x), b.encode(x))
    # pickling and deep copies keep the LSTM's flat-weight bookkeeping intact
    for c in (copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        with torch.no_grad():
            assert torch.equal(a(x), c(x))


def test_state_dict_has_only_keras_weights() -> None:
    keys = build_net("LSTM_AE").state_dict().keys()
    assert not any("bias_hh" in k for k in keys)
    assert "encoder.0.bias_ih_l0" in keys


def _reference_lstm(layer: KerasLSTM) -> nn.LSTM:
    ref = nn.LSTM(layer.input_size, layer.hidden_size, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(layer.weight_ih_l0)
        ref.weight_hh_l0.copy_(layer.weight_hh_l0)
        ref.bias_ih_l0.copy_(layer.bias_ih_l0)
        ref.bias_hh_l0.zero_()
    return ref


def test_keras_lstm_matches_nn_lstm() -> None:
    torch.manual_seed(0)
    layer = KerasLSTM(8, 32)
    with torch.no_grad():
        layer.bias_ih_l0.normal_()
    assert count_parameters(layer) == 5248  # Keras: 4 * 32 * (8 + 32 + 1)
    names = [n for n, _ in layer.named_parameters()]
    assert names == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0"]
    ref = _reference_lstm(layer)
    x = torch.randn(6, 100, 8)
    out, (h, c) = layer(x)
    ref_out, (ref_h, ref_c) = ref(x)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-6)
    torch.testing.assert_close(h, ref_h, rtol=0, atol=1e-6)
    torch.testing.assert_close(c, ref_c, rtol=0, atol=1e-6)
    out.square().sum().backward()
    ref_out.square().sum().backward()
    torch.testing.assert_close(layer.bias_ih_l0.grad, ref.bias_ih_l0.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(layer.weight_hh_l0.grad, ref.weight_hh_l0.grad, rtol=1e-4, atol=1e-5)
    assert not layer.bias_hh_l0.requires_grad and not layer.bias_hh_l0.any()


def test_keras_lstm_init_and_dtype_moves() -> None:
    torch.manual_seed(0)
    layer = KerasLSTM(4, 3)
    b = layer.bias_ih_l0.detach()
    assert torch.equal(b, torch.tensor([0.0] * 3 + [1.0] * 3 + [0.0] * 6))  # unit_forget_bias
    w_hh = layer.weight_hh_l0.detach()
    torch.testing.assert_close(w_hh.T @ w_hh, torch.eye(3), rtol=0, atol=1e-5)  # orthogonal
    layer = layer.to(torch.float64)
    assert layer.bias_hh_l0.dtype == torch.float64
    assert all(w.dtype == torch.float64 for w in layer._flat_weights)
    assert layer._flat_weights[3] is layer.bias_hh_l0
    out, _ = layer(torch.randn(2, 7, 4, dtype=torch.float64))
    assert out.dtype == torch.float64


def test_keras_lstm_loads_a_plain_lstm_state_dict() -> None:
    torch.manual_seed(0)
    plain = nn.LSTM(5, 6, batch_first=True)  # random b_ih and b_hh
    layer = KerasLSTM(5, 6)
    layer.load_state_dict(plain.state_dict())
    x = torch.randn(3, 10, 5)
    torch.testing.assert_close(layer(x)[0], plain(x)[0], rtol=0, atol=1e-6)


def test_tcn_same_padding_variant() -> None:
    net = TCN_AE(padding="same")
    assert count_parameters(net) == 29_204
    x = torch.rand(2, 100, 8)
    assert net(x).shape == x.shape


def test_tcn_causality() -> None:
    """With causal convolutions the encoder map at step t ignores later inputs."""
    torch.manual_seed(0)
    net = build_net("TCN_AE").eval()
    x = torch.rand(1, 100, 8)
    x2 = x.clone()
    x2[:, 60:] += 1.0
    with torch.no_grad():
        a, b = net.encode(x), net.encode(x2)
    # code step j pools inputs 8j .. 8j+7 (plus earlier ones): steps 0..6 end before 60
    assert torch.equal(a[:, :7], b[:, :7])
    assert not torch.equal(a, b)


@pytest.mark.parametrize("length", [1, 2, 7, 100])
@pytest.mark.parametrize(
    ("kernel", "padding"), [(2, "causal"), (2, "same"), (3, "causal"), (3, "same")]
)
def test_temporal_conv_matches_conv1d(kernel: int, padding: str, length: int) -> None:
    """Channels-last GEMM convolution == nn.Conv1d on explicitly padded (N, C, L) input."""
    torch.manual_seed(0)
    conv = TemporalConv(5, 4, kernel, padding)  # type: ignore[arg-type]
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(3, length, 5, requires_grad=True)
    front = kernel - 1 if padding == "causal" else (kernel - 1) // 2
    ref_in = nn.functional.pad(x.transpose(1, 2), (front, kernel - 1 - front))
    ref = torch.relu(nn.functional.conv1d(ref_in, conv.weight, conv.bias)).transpose(1, 2)
    out = conv(x)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, conv.weight, conv.bias], g)
    ref_grads = torch.autograd.grad(ref, [x, conv.weight, conv.bias], g)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("length", "channels"), [(1, 3), (7, 1), (100, 12), (25, 50)])
def test_pool_and_upsample_channels_last(length: int, channels: int) -> None:
    x = torch.randn(2, length, channels)
    ref = nn.functional.max_pool1d(x.transpose(1, 2), 2).transpose(1, 2) if length > 1 else None
    if ref is not None:
        assert torch.equal(_max_pool2(x), ref)
    assert torch.equal(_upsample2(x), x.repeat_interleave(2, dim=1))
