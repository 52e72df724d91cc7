"""The thesis's eight autoencoders as plain ``torch.nn`` modules.

Every network maps a float32 batch ``(batch, chunk_size, n_features)`` to a
reconstruction of the same shape, and ``encode`` returns the bottleneck code.
Layer widths follow the Keras tables of the thesis's Appendix B; at chunk size
100 with 8 features the trainable parameter counts equal the Appendix's:

=============== ======= ============ =====
name            params  bottleneck   depth
=============== ======= ============ =====
LSTM_AE         17,032  (16,)        1
LSTM_AE_Small   10,636  (3,)         1
LSTM_AE_Deep    17,864  (8,)         2
LSTM_AE_Deep2   18,088  (4,)         3
TCN_AE          29,204  (12, 6)      4
TCN_AE2         30,281  (3,)         4
TCN_AE_Small    29,339  (6, 3)       5
TCN_AE_Small2   29,468  (3,)         5
=============== ======= ============ =====

(``depth`` is the value of the thesis's Figure 4.1.)

LSTM networks
-------------
Stacked single-layer LSTMs; the last encoder LSTM returns only its final
hidden state (Keras ``return_sequences=False``), which is repeated
``chunk_size`` times (``RepeatVector``) and decoded by LSTMs returning
sequences, followed by a per-step ``Linear`` (``TimeDistributed(Dense)``).

A Keras LSTM has one bias per gate (``4h``), PyTorch's two (``b_ih`` and
``b_hh``). :class:`KerasLSTM` keeps ``nn.LSTM`` (and so its fused CPU/oneDNN
and cuDNN kernels) but turns ``bias_hh_l0`` into a non-persistent zero
buffer, so ``bias_ih_l0`` is the Keras bias. Keras semantics otherwise:
tanh cell/output activation, sigmoid gates, zero initial state.
Initialisation is Keras's: Glorot-uniform input weights, orthogonal
recurrent weights, zero biases except a forget-gate bias of 1
(``unit_forget_bias``).

TCN networks
------------
Kernel sizes follow from the parameter counts: every ``Conv1D`` of the tables
has kernel 2 (e.g. 8 -> 100 channels with 1,700 parameters = 8*100*2 + 100).

* Convolutions are *causal* by default (one zero on the left, so output ``t``
  sees inputs ``t-1`` and ``t``), the definition of a TCN the thesis adopts
  (Section 2.3.2: TCN = 1-D fully convolutional network + causal
  convolutions). ``padding="same"`` gives Keras's ``padding="same"`` instead
  (for kernel 2: one zero on the right). Both keep the length and have the
  same parameter count.
* Every convolution is followed by ReLU. The ``Dense`` layers (the channel
  bottleneck, the flattening bottleneck of ``TCN_AE2``/``TCN_AE_Small2`` and
  the output) are linear, the Keras default.
* ``MaxPooling1D(2)`` floor-halves the length; ``UpSampling1D(2)`` repeats
  each step twice (nearest).
* Layout: the networks stay channels-last ``(N, L, C)`` like Keras, with no
  transposes at all. A convolution (weights of an ordinary ``nn.Conv1d``,
  ``(out, in, 2)``) runs as one GEMM on its input unfolded to ``2 * in``
  columns per step (im2col), with a hand-written backward; ``Dense`` on the
  channel axis is a plain ``nn.Linear`` on the last axis; pooling and
  upsampling use PyTorch's channels-last kernels. On CPU this trains faster
  than ``nn.Conv1d`` in ``(N, C, L)`` with two transposes.
* ``TCN_AE2`` and ``TCN_AE_Small2`` flatten the ``(length, channels)`` map
  length-major, as Keras's ``Reshape`` does.
* ``dropout`` is the rate of ``TCN_AE2``'s ``Dropout`` layer (the only one in
  the tables); the other networks accept and ignore it.

Other chunk sizes
-----------------
With ``p`` pooling layers (3 for ``TCN_AE``/``TCN_AE2``, 4 for the ``Small``
ones) the encoder's length is ``L_p = floor(... floor(chunk_size / 2) ... / 2)``
(``p`` times). The decoder upsamples ``p`` times to ``L_p * 2**p`` (<=
``chunk_size``) and zero-pads before its last convolution to ``chunk_size``,
splitting the padding as ``pad // 2`` zeros in front and the rest at the end
(at 100 this is Keras's ``ZeroPadding1D(2)``: 96 -> 100). The dense
bottleneck of ``TCN_AE2`` takes ``12 * L_3`` inputs, that of
``TCN_AE_Small2`` ``3 * L_4``. A chunk size needs ``L_p >= 1``, i.e.
``chunk_size >= 2**p`` (8 resp. 16); smaller ones raise ``ValueError``. The
LSTM networks take any ``chunk_size >= 1``. The instance attribute
``bottleneck`` is the code's shape at the instance's chunk size (the class
attribute is the thesis's shape at 100).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = [
    "NETS",
    "AutoencoderNet",
    "KerasLSTM",
    "LSTM_AE",
    "LSTM_AE_Deep",
    "LSTM_AE_Deep2",
    "LSTM_AE_Small",
    "TCN_AE",
    "TCN_AE2",
    "TCN_AE_Small",
    "TCN_AE_Small2",
    "UnknownNetError",
    "build_net",
    "count_parameters",
    "tune_cpu_allocator",
]

DEFAULT_DROPOUT = 0.2
Padding = Literal["causal", "same"]


# --------------------------------------------------------------------------- base


class AutoencoderNet(nn.Module, abc.ABC):
    """Common interface of the eight networks."""

    name: ClassVar[str]
    family: ClassVar[Literal["lstm", "tcn"]]
    bottleneck: tuple[int, ...]  # class: thesis shape at chunk 100; instance: actual shape
    depth: ClassVar[int]
    min_chunk_size: ClassVar[int] = 1

    def __init__(self, chunk_size: int = 100, n_features: int = 8) -> None:
        super().__init__()
        chunk_size = _positive_int("chunk_size", chunk_size)
        n_features = _positive_int("n_features", n_features)
        if chunk_size < self.min_chunk_size:
            raise ValueError(
                f"{self.name} needs chunk_size >= {self.min_chunk_size} "
                f"(its encoder halves the length {int(math.log2(self.min_chunk_size))} "
                f"times), got {chunk_size}"
            )
        self.chunk_size = chunk_size
        self.n_features = n_features

    @abc.abstractmethod
    def encode(self, x: Tensor) -> Tensor:
        """``(batch, chunk_size, n_features)`` -> latent code ``(batch, *bottleneck)``."""

    @abc.abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """``(batch, chunk_size, n_features)`` -> reconstruction of the same shape."""

    def extra_repr(self) -> str:
        return f"chunk_size={self.chunk_size}, n_features={self.n_features}"


def _positive_int(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters (Keras's "Trainable params")."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def tune_cpu_allocator() -> bool:
    """Opt-in: keep freed CPU memory in the process (glibc ``mallopt``).

    glibc returns large freed blocks to the OS, so each training step pays
    page faults to re-touch its activation buffers. Raising the mmap and trim
    thresholds keeps them in the heap: CPU training steps of these networks
    got up to ~20% faster and much less jittery. Process-wide and never
    undone; returns False (and changes nothing) where glibc is not available.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, 1 << 30) == 1  # blocks < 1 GiB come from the heap
    return bool(ok and mallopt(m_trim_threshold, (1 << 31) - 1) == 1)


def _keras_dense_init(layer: nn.Linear | nn.Conv1d) -> None:
    """Keras defaults: Glorot-uniform kernel, zero bias."""
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class KerasDense(nn.Linear):
    """``Dense`` (linear activation) with Keras's initialisation; acts on the last axis."""

    def reset_parameters(self) -> None:
        _keras_dense_init(self)


# --------------------------------------------------------------------------- LSTM


class KerasLSTM(nn.LSTM):
    """One batch-first LSTM layer with Keras's parametrisation and initialisation.

    ``bias_hh_l0`` is a zero, non-persistent buffer instead of a parameter, so
    the layer has Keras's ``4 * h * (input + h + 1)`` trainable parameters and
    still runs through ``nn.LSTM``'s fused kernels (it stays in
    ``_flat_weights``; ``.to()``, ``flatten_parameters`` and pickling work as
    for ``nn.LSTM``). A state dict of a plain ``nn.LSTM`` loads too: its
    ``bias_hh_l0`` is folded into ``bias_ih_l0``.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, num_layers=1, batch_first=True)
        bias_hh = self._parameters.pop("bias_hh_l0")
        self.register_buffer("bias_hh_l0", torch.zeros_like(bias_hh.data), persistent=False)
        self._init_flat_weights()

    def reset_parameters(self) -> None:
        h = self.hidden_size
        with torch.no_grad():
            nn.init.xavier_uniform_(self.weight_ih_l0)  # Keras: glorot_uniform kernel
            nn.init.orthogonal_(self.weight_hh_l0)  # Keras: orthogonal recurrent kernel
            self.bias_ih_l0.zero_()
            self.bias_ih_l0[h : 2 * h] = 1.0  # gate order i, f, g, o: unit_forget_bias
            self.bias_hh_l0.zero_()

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        key = prefix + "bias_hh_l0"
        if key in state_dict:  # a plain nn.LSTM's: b_ih + b_hh is the one Keras bias
            state_dict = dict(state_dict)
            b_hh = state_dict.pop(key)
            b_ih = state_dict.get(prefix + "bias_ih_l0")
            if b_ih is not None:
                state_dict[prefix + "bias_ih_l0"] = b_ih + b_hh
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class _LSTMAutoencoder(AutoencoderNet):
    """Encoder LSTMs ``widths`` (last one returns its final state), decoder mirrored."""

    family: ClassVar[Literal["lstm", "tcn"]] = "lstm"
    widths: ClassVar[tuple[int, ...]]

    def __init__(
        self, chunk_size: int = 100, n_features: int = 8, dropout: float = DEFAULT_DROPOUT
    ) -> None:
        super().__init__(chunk_size, n_features)
        del dropout  # no Dropout layer in the LSTM tables
        sizes = (n_features, *self.widths)
        self.encoder = nn.ModuleList(
            KerasLSTM(i, h) for i, h in zip(sizes[:-1], sizes[1:], strict=True)
        )
        back = tuple(reversed(self.widths))  # e.g. (16, 32) -> decoder 16 -> 16 -> 32
        self.decoder = nn.ModuleList(
            KerasLSTM(i, h) for i, h in zip((back[0], *back[:-1]), back, strict=True)
        )
        self.output = KerasDense(self.widths[0], n_features)
        self.bottleneck = (self.widths[-1],)

    def encode(self, x: Tensor) -> Tensor:
        for lstm in self.encoder[:-1]:
            x = lstm(x)[0]
        return self.encoder[-1](x)[1][0][0]  # h_n of the last layer: (batch, h)

    def forward(self, x: Tensor) -> Tensor:
        z = self.encode(x)
        y = z.unsqueeze(1).expand(-1, self.chunk_size, -1)  # RepeatVector
        for lstm in self.decoder:
            y = lstm(y)[0]
        return self.output(y)


class LSTM_AE(_LSTMAutoencoder):
    name = "LSTM_AE"
    widths = (32, 16)
    bottleneck = (16,)
    depth = 1


class LSTM_AE_Small(_LSTMAutoencoder):
    name = "LSTM_AE_Small"
    widths = (32, 3)
    bottleneck = (3,)
    depth = 1


class LSTM_AE_Deep(_LSTMAutoencoder):
    name = "LSTM_AE_Deep"
    widths = (32, 16, 8)
    bottleneck = (8,)
    depth = 2


class LSTM_AE_Deep2(_LSTMAutoencoder):
    name = "LSTM_AE_Deep2"
    widths = (32, 16, 8, 4)
    bottleneck = (4,)
    depth = 3


# --------------------------------------------------------------------------- TCN


class _Im2Col(torch.autograd.Function):
    """im2col: ``(N, L, C)`` -> ``(N, L, C * k)``.

    Column ``c * k + j`` at step ``t`` is ``x[t + j - front, c]``, zero where
    ``t + j - front`` falls outside ``0 .. L - 1`` (the convolution's zero
    padding). The column order matches ``nn.Conv1d``'s weight
    ``(out, C, k)`` flattened to ``(out, C * k)``. The hand-written backward adds
    the ``k`` shifted gradient columns straight into one buffer instead of
    autograd's zero-filled padded gradient per window.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, k: int, front: int) -> Tensor:
        n, length, c = x.shape
        ctx.k, ctx.front = k, front
        padded = F.pad(x, (0, 0, front, k - 1 - front))
        return padded.unfold(1, k, 1).reshape(n, length, c * k)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        k, front = ctx.k, ctx.front
        n, length, ck = grad.shape
        cols = grad.view(n, length, ck // k, k)
        dx = cols.select(3, front).clone()  # the unshifted tap
        for j in range(k):
            shift, overlap = j - front, length - abs(j - front)
            if shift == 0 or overlap <= 0:
                continue
            src = cols.select(3, j)
            if shift > 0:  # x[u] fed step u - shift
                dx.narrow(1, shift, overlap).add_(src.narrow(1, 0, overlap))
            else:
                dx.narrow(1, 0, overlap).add_(src.narrow(1, -shift, overlap))
        return dx, None, None


class TemporalConv(nn.Conv1d):
    """Length-keeping ``Conv1D`` + ReLU on a channels-last ``(N, L, C)`` map.

    The weights are an ordinary ``nn.Conv1d``'s (``(out, in, kernel)``), but the
    convolution runs as one GEMM on the unfolded input (``in * kernel`` columns
    per step), so no layout change is needed between layers.
    ``padding="causal"`` pads ``kernel_size - 1`` zeros in front (output ``t``
    sees inputs ``t - k + 1 .. t``); ``"same"`` pads as Keras's ``same``
    (``(k - 1) // 2`` in front, the rest behind).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 2, padding: Padding = "causal"
    ) -> None:
        if padding not in ("causal", "same"):
            raise ValueError(f"padding must be 'causal' or 'same', got {padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, padding=0)
        k = kernel_size
        self.front = k - 1 if padding == "causal" else (k - 1) // 2
        self.padding_mode_name = padding

    def reset_parameters(self) -> None:
        _keras_dense_init(self)

    def forward(self, x: Tensor) -> Tensor:  # (N, L, C_in) -> (N, L, C_out)
        k = self.kernel_size[0]
        if k > 1:
            x = _Im2Col.apply(x, k, self.front)
        return torch.relu(F.linear(x, self.weight.flatten(1), self.bias))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", {self.padding_mode_name}, relu, channels-last"


def _max_pool2(x: Tensor) -> Tensor:
    """``MaxPooling1D(2)`` on ``(N, L, C)``: floor(L / 2) steps.

    ``x.transpose(1, 2).unsqueeze(2)`` is a channels-last ``(N, C, 1, L)`` view,
    for which ``max_pool2d`` has a vectorised CPU kernel; the result transposes
    back to a contiguous ``(N, L // 2, C)``.
    """
    return F.max_pool2d(x.transpose(1, 2).unsqueeze(2), (1, 2)).squeeze(2).transpose(1, 2)


def _upsample2(x: Tensor) -> Tensor:
    """``UpSampling1D(2)`` on ``(N, L, C)``: every step twice (channels-last, as above)."""
    y = F.interpolate(x.transpose(1, 2).unsqueeze(2), scale_factor=(1.0, 2.0), mode="nearest")
    return y.squeeze(2).transpose(1, 2)


def _pooled_length(chunk_size: int, n_pool: int) -> int:
    for _ in range(n_pool):
        chunk_size //= 2
    return chunk_size


class _TCNAutoencoder(AutoencoderNet):
    """Conv/pool encoder ``enc_widths``, bottleneck, upsample/conv decoder ``dec_widths``.

    Encoder: conv(F -> enc[0]) then, for each further width, pool + conv.
    Decoder (from ``decoder_in_channels`` channels at length ``L_p``): for each
    of the first ``n_pool`` widths, upsample + conv; then zero-pad to
    ``chunk_size``, conv(-> dec[-1]) and the per-step output ``Dense``. All
    maps are channels-last ``(N, L, C)``, the layout of the input.
    """

    family: ClassVar[Literal["lstm", "tcn"]] = "tcn"
    enc_widths: ClassVar[tuple[int, ...]]
    dec_widths: ClassVar[tuple[int, ...]]
    kernel_size: ClassVar[int] = 2

    def __init__(
        self,
        chunk_size: int = 100,
        n_features: int = 8,
        dropout: float = DEFAULT_DROPOUT,
        padding: Padding = "causal",
    ) -> None:
        super().__init__(chunk_size, n_features)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.n_pool = len(self.enc_widths) - 1
        self.code_length = _pooled_length(chunk_size, self.n_pool)  # L_p
        up_length = self.code_length * 2**self.n_pool
        front = (chunk_size - up_length) // 2
        self.final_pad = (front, chunk_size - up_length - front)
        k = self.kernel_size
        chans = (n_features, *self.enc_widths)
        self.enc_convs = nn.ModuleList(
            TemporalConv(i, o, k, padding) for i, o in zip(chans[:-1], chans[1:], strict=True)
        )
        self._build_bottleneck(dropout)
        dec = (self.decoder_in_channels, *self.dec_widths)
        self.dec_convs = nn.ModuleList(
            TemporalConv(i, o, k, padding) for i, o in zip(dec[:-1], dec[1:], strict=True)
        )
        self.output = KerasDense(self.dec_widths[-1], n_features)

    # subclasses: make the bottleneck layers, set self.bottleneck and self.decoder_in_channels
    @abc.abstractmethod
    def _build_bottleneck(self, dropout: float) -> None: ...

    @abc.abstractmethod
    def _to_code(self, h: Tensor) -> Tensor:
        """Last encoder map ``(N, L_p, C)`` -> latent code ``(N, *bottleneck)``."""

    @abc.abstractmethod
    def _from_code(self, z: Tensor) -> Tensor:
        """Latent code -> ``(N, L_p, decoder_in_channels)``."""

    def encode(self, x: Tensor) -> Tensor:
        h = x
        for i, conv in enumerate(self.enc_convs):
            if i:
                h = _max_pool2(h)
            h = conv(h)
        return self._to_code(h)

    def forward(self, x: Tensor) -> Tensor:
        h = self._from_code(self.encode(x))
        last = len(self.dec_convs) - 1
        for i, conv in enumerate(self.dec_convs):
            if i < last:
                h = _upsample2(h)
            elif self.final_pad != (0, 0):
                h = F.pad(h, (0, 0, *self.final_pad))  # ZeroPadding1D
            h = conv(h)
        return self.output(h)


class _ChannelBottleneck(_TCNAutoencoder):
    """``Dense(code_channels)`` on the channel axis: code ``(L_p, code_channels)``."""

    code_channels: ClassVar[int]

    def _build_bottleneck(self, dropout: float) -> None:
        del dropout  # no Dropout layer in these tables
        self.to_code = KerasDense(self.enc_widths[-1], self.code_channels)
        self.decoder_in_channels = self.code_channels
        self.bottleneck = (self.code_length, self.code_channels)

    def _to_code(self, h: Tensor) -> Tensor:
        return self.to_code(h)

    def _from_code(self, z: Tensor) -> Tensor:
        return z


class TCN_AE(_ChannelBottleneck):
    name = "TCN_AE"
    enc_widths = (100, 50, 25, 12)
    code_channels = 6
    dec_widths = (12, 25, 50, 100)
    bottleneck = (12, 6)
    depth = 4
    min_chunk_size = 8


class TCN_AE_Small(_ChannelBottleneck):
    name = "TCN_AE_Small"
    enc_widths = (100, 50, 25, 12, 6)
    code_channels = 3
    dec_widths = (6, 12, 25, 50, 100)
    bottleneck = (6, 3)
    depth = 5
    min_chunk_size = 16


class TCN_AE2(_TCNAutoencoder):
    """Reshape -> Dropout -> Dense(3) -> Dense(L_3 * 12) -> Reshape(L_3, 12)."""

    name = "TCN_AE2"
    enc_widths = (100, 50, 25, 12)
    dec_widths = (12, 25, 50, 100)
    bottleneck = (3,)
    depth = 4
    min_chunk_size = 8
    code_size: ClassVar[int] = 3

    def _build_bottleneck(self, dropout: float) -> None:
        flat = self.code_length * self.enc_widths[-1]
        self.dropout = nn.Dropout(dropout)
        self.to_code = KerasDense(flat, self.code_size)
        self.from_code = KerasDense(self.code_size, flat)
        self.decoder_in_channels = self.enc_widths[-1]
        self.bottleneck = (self.code_size,)

    def _to_code(self, h: Tensor) -> Tensor:
        return self.to_code(self.dropout(h.flatten(1)))

    def _from_code(self, z: Tensor) -> Tensor:
        return self.from_code(z).view(-1, self.code_length, self.decoder_in_channels)


class TCN_AE_Small2(_TCNAutoencoder):
    """Dense(3) on channels -> Reshape -> Dense(3) -> Dense(L_4 * 3) -> Reshape(L_4, 3)."""

    name = "TCN_AE_Small2"
    enc_widths = (100, 50, 25, 12, 6)
    dec_widths = (6, 12, 25, 50, 100)
    bottleneck = (3,)
    depth = 5
    min_chunk_size = 16
    channel_code: ClassVar[int] = 3
    code_size: ClassVar[int] = 3

    def _build_bottleneck(self, dropout: float) -> None:
        del dropout  # no Dropout layer in this table
        flat = self.code_length * self.channel_code
        self.to_channels = KerasDense(self.enc_widths[-1], self.channel_code)
        self.to_code = KerasDense(flat, self.code_size)
        self.from_code = KerasDense(self.code_size, flat)
        self.decoder_in_channels = self.channel_code
        self.bottleneck = (self.code_size,)

    def _to_code(self, h: Tensor) -> Tensor:
        return self.to_code(self.to_channels(h).flatten(1))

    def _from_code(self, z: Tensor) -> Tensor:
        return self.from_code(z).view(-1, self.code_length, self.decoder_in_channels)


# --------------------------------------------------------------------------- registry

NETS: Mapping[str, type[AutoencoderNet]] = MappingProxyType(
    {
        cls.name: cls
        for cls in (
            LSTM_AE,
            LSTM_AE_Small,
            LSTM_AE_Deep,
            LSTM_AE_Deep2,
            TCN_AE,
            TCN_AE2,
            TCN_AE_Small,
            TCN_AE_Small2,
        )
    }
)


class UnknownNetError(ValueError, KeyError):
    """``build_net`` got a name that is not in :data:`NETS`."""

    def __str__(self) -> str:  # not KeyError's repr-quoted message
        return str(self.args[0]) if self.args else ""


def build_net(
    name: str, chunk_size: int = 100, n_features: int = 8, dropout: float = DEFAULT_DROPOUT
) -> AutoencoderNet:
    """Build the network ``name`` (one of :data:`NETS`) for the given input shape.

    ``dropout`` is the rate of ``TCN_AE2``'s ``Dropout`` layer; the other
    networks have none. Raises :class:`UnknownNetError` (a ``ValueError`` and a
    ``KeyError``) for an unknown name and
    ``ValueError`` for a chunk size too small for the network's pooling.
    """
    cls = NETS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise UnknownNetError(f"unknown network {name!r}; valid names: {', '.join(NETS)}")
    return cls(chunk_size=chunk_size, n_features=n_features, dropout=dropout)
