"""Convert dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) to ONNX, no dlib.

The network is dlib's ``anet_type`` from ``examples/dnn_face_recognition_ex.cpp``: a 29-layer residual network
whose output is an un-normalised 128-D descriptor (same person: L2 distance below 0.6). The residual wiring is
not stored in the file; it is written below as data (``ARCHITECTURE``) and the file's contents are checked
against it layer by layer while reading.

dlib's serialisation format (``dlib/serialize.h``, ``dlib/dnn/core.h``, ``layers.h``, ``tensor.h``):

* integer: a control byte (low nibble = number of bytes that follow, 0x80 = negative), then the magnitude as
  little-endian bytes; 0 is the single byte 0x00.
* float/double: two integers, an int64 mantissa and an int16 exponent; value = mantissa * 2**exponent.
* bool: one ASCII byte, ``'1'`` or ``'0'``. string: integer length, then the bytes.
* tensor: integer version 2, integers n, k, nr, nc, then n*k*nr*nc float32 little-endian (NCHW).
* alias_tensor (a view into a layer's parameter tensor): integer version 1, then n, k, nr, nc.
* network: ``add_loss_layer`` writes its version, the loss details, then the subnetwork. Every ``add_layer``
  writes its version, then its subnetwork, *then* its own details followed by three bools and three (empty)
  tensors; ``add_tag_layer`` / ``add_skip_layer`` write only a version and their subnetwork. The layer that
  sits on the input also writes the input layer's details before its own, and a fourth trailing field.
  Hence the stream is: loss, the wrapper versions outermost first, the input layer, then the layers'
  payloads innermost (input side) first.

Numerics reproduced: input (pixel - channel mean) / 256; convolutions with bias, zero padding = 0 for stride 2
and k//2 for stride 1; ``affine`` (batch norm folded by dlib) as per-channel scale and shift, folded here into
the preceding convolution; a residual add whose operands differ in shape zero-pads the smaller one at the end
(channels and space, top-left aligned) as dlib's ``tt::add`` does; global average pooling; fc without bias
(``y = x @ W`` with ``W`` stored as [inputs, outputs]).
"""

from __future__ import annotations

import builtins
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "ARCHITECTURE", "DlibFormatError", "DlibResnet", "build_onnx", "convert_dlib_resnet", "read_dlib_resnet",
]

OPSET = 17
CONVERTER_VERSION = "dlib-resnet-1"  # recorded in the model manifest: bump to force a re-conversion
DESCRIPTOR_DIM = 128


class DlibFormatError(ValueError):
    """The .dat stream does not hold the expected network (one-line message with the byte offset)."""


# --------------------------------------------------------------------------------------------------
# Architecture as data: dlib's anet_type, in forward order (input side first).
#
# Op tuples:  ("con", filters, kernel, stride) | ("affine",) | ("relu",) | ("max_pool", kernel, stride)
#             ("avg_pool", kernel, stride) | ("avg_pool_everything",) | ("fc", outputs)
#             ("tag", i) marks the current tensor as tag i | ("skip", i) makes tag i the current tensor
#             ("add_prev", i) adds tag i to the current tensor
# --------------------------------------------------------------------------------------------------

Op = tuple[str | int, ...]


def _block(filters: int, stride: int) -> list[Op]:
    """dlib's ``block``: con(stride) -> affine -> relu -> con(1) -> affine."""
    return [("con", filters, 3, stride), ("affine",), ("relu",), ("con", filters, 3, 1), ("affine",)]


def _ares(filters: int) -> list[Op]:
    """``relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>``: identity shortcut."""
    return [("tag", 1), *_block(filters, 1), ("add_prev", 1), ("relu",)]


def _ares_down(filters: int) -> list[Op]:
    """``relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>``: pooled shortcut."""
    return [("tag", 1), *_block(filters, 2), ("tag", 2), ("skip", 1), ("avg_pool", 2, 2),
            ("add_prev", 2), ("relu",)]


def _anet() -> list[Op]:
    stem: list[Op] = [("con", 32, 7, 2), ("affine",), ("relu",), ("max_pool", 3, 2)]
    levels: list[Op] = []
    levels += _ares(32) + _ares(32) + _ares(32)  # alevel4
    levels += _ares_down(64) + _ares(64) + _ares(64) + _ares(64)  # alevel3
    levels += _ares_down(128) + _ares(128) + _ares(128)  # alevel2
    levels += _ares_down(256) + _ares(256) + _ares(256)  # alevel1
    levels += _ares_down(256)  # alevel0
    head: list[Op] = [("avg_pool_everything",), ("fc", DESCRIPTOR_DIM)]
    return stem + levels + head


ARCHITECTURE: tuple[Op, ...] = tuple(_anet())

# dlib's name for each layer kind's details in the stream (tags and skips write no details).
_DETAILS_NAME = {
    "con": "con_4",
    "affine": "affine_",
    "relu": "relu_",
    "max_pool": "max_pool_2",
    "avg_pool": "avg_pool_2",
    "avg_pool_everything": "avg_pool_2",
    "add_prev": "add_prev_",
    "fc": "fc_2",
}


# --------------------------------------------------------------------------------------------------
# The stream reader
# --------------------------------------------------------------------------------------------------


class DlibStream:
    """Sequential reader of dlib's serialisation primitives over an in-memory buffer."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.pos = 0

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self._data):
            raise DlibFormatError(f"unexpected end of stream at byte {self.pos} (wanted {n} bytes)")
        chunk = self._data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def at_end(self) -> bool:
        return self.pos == len(self._data)

    def fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{what} (at byte {self.pos})")

    def int(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        specials = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        if exponent in specials:
            return specials[exponent]
        return math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        byte = bytes(self._take(1))
        if byte not in (b"0", b"1"):
            raise self.fail(f"bad bool byte {byte!r}")
        return byte == b"1"

    def string(self) -> str:
        start = self.pos
        raw = bytes(self._take(self.int()))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise DlibFormatError(f"expected a layer name, found non-ASCII bytes (at byte {start})") from None

    def expect_int(self, expected: object, what: str) -> None:
        start = self.pos
        value = self.int()
        if value != expected:
            raise DlibFormatError(f"{what}: expected {expected}, found {value} (at byte {start})")

    def expect_string(self, expected: str) -> None:
        start = self.pos
        value = self.string()
        if value != expected:
            raise DlibFormatError(f"expected layer {expected!r}, found {value!r} (at byte {start})")

    def tensor(self) -> np.ndarray:
        """A ``resizable_tensor`` as a float32 array of shape (n, k, nr, nc)."""
        self.expect_int(2, "tensor version")
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0:
            raise self.fail(f"negative tensor shape {shape}")
        count = int(np.prod(shape))
        data = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        return data.reshape(shape)

    def alias_shape(self) -> tuple[builtins.int, builtins.int, builtins.int, builtins.int]:
        """An ``alias_tensor``: only its shape (n, k, nr, nc); the values live in the layer's params."""
        self.expect_int(1, "alias_tensor version")
        n, k, nr, nc = (self.int() for _ in range(4))
        return n, k, nr, nc


def _split(params: np.ndarray, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    """Cut a flat parameter tensor into consecutive views of ``shapes`` (dlib's alias_tensor offsets)."""
    flat = params.reshape(-1)
    sizes = [int(np.prod(s)) for s in shapes]
    if sum(sizes) != flat.size:
        raise DlibFormatError(f"parameter tensor holds {flat.size} values, layout needs {sum(sizes)}")
    out, offset = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        out.append(flat[offset : offset + size].reshape(shape))
        offset += size
    return out


# --------------------------------------------------------------------------------------------------
# Layer payload readers, one per kind. Each returns the layer's weights (empty dict when it has none).
# --------------------------------------------------------------------------------------------------

Weights = dict[str, np.ndarray]


def _read_con(s: DlibStream, op: Op) -> Weights:
    _, filters, kernel, stride = op
    params = s.tensor()
    s.expect_int(filters, "con num_filters")
    s.expect_int(kernel, "con nr")
    s.expect_int(kernel, "con nc")
    s.expect_int(stride, "con stride_y")
    s.expect_int(stride, "con stride_x")
    pad = 0 if stride != 1 else int(kernel) // 2
    s.expect_int(pad, "con padding_y")
    s.expect_int(pad, "con padding_x")
    w_shape, b_shape = s.alias_shape(), s.alias_shape()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        s.float()
    w, b = _split(params, w_shape, b_shape)
    if w_shape[0] != filters or b_shape != (1, filters, 1, 1):
        raise s.fail(f"con filter/bias shapes {w_shape}, {b_shape} do not match {filters} filters")
    return {"weight": w, "bias": b.reshape(-1)}


def _read_affine(s: DlibStream, op: Op) -> Weights:
    params = s.tensor()
    g_shape, b_shape = s.alias_shape(), s.alias_shape()
    s.expect_int(0, "affine mode (CONV_MODE)")
    gamma, beta = _split(params, g_shape, b_shape)
    return {"gamma": gamma.reshape(-1), "beta": beta.reshape(-1)}


def _read_pool(s: DlibStream, op: Op) -> Weights:
    kernel, stride = (0, 1) if op[0] == "avg_pool_everything" else (op[1], op[2])
    pad = 0 if stride != 1 else int(kernel) // 2
    for value, what in ((kernel, "nr"), (kernel, "nc"), (stride, "stride_y"), (stride, "stride_x"),
                        (pad, "padding_y"), (pad, "padding_x")):
        s.expect_int(value, f"{op[0]} {what}")
    return {}


def _read_fc(s: DlibStream, op: Op) -> Weights:
    outputs = s.int()
    inputs = s.int()
    if outputs != op[1]:
        raise s.fail(f"fc has {outputs} outputs, expected {op[1]}")
    params = s.tensor()
    w_shape, b_shape = s.alias_shape(), s.alias_shape()
    s.expect_int(1, "fc bias mode (FC_NO_BIAS)")
    for _ in range(4):
        s.float()
    if w_shape[:2] != (inputs, outputs) or int(np.prod(b_shape)) != 0:
        raise s.fail(f"fc weight/bias alias shapes {w_shape}, {b_shape} unexpected for {inputs}->{outputs}")
    (w,) = _split(params, (inputs, outputs))
    return {"weight": w}


def _read_nothing(s: DlibStream, op: Op) -> Weights:
    return {}


_PAYLOAD_READERS = {
    "con": _read_con,
    "affine": _read_affine,
    "relu": _read_nothing,
    "max_pool": _read_pool,
    "avg_pool": _read_pool,
    "avg_pool_everything": _read_pool,
    "add_prev": _read_nothing,
    "fc": _read_fc,
}


# --------------------------------------------------------------------------------------------------
# The whole file
# --------------------------------------------------------------------------------------------------


@dataclass
class DlibResnet:
    """The network read from the file: input normalisation and per-layer weights in ``ARCHITECTURE`` order."""

    mean_rgb: tuple[float, float, float]
    chip_size: int
    weights: list[Weights] = field(default_factory=list)  # one entry per ARCHITECTURE op (empty when none)
    inventory: Counter[str] = field(default_factory=Counter)  # dlib layer names found, with counts


def _read_layer_trailer(s: DlibStream) -> None:
    """The fields ``add_layer`` writes after its details: 3 bools, then empty training tensors."""
    for _ in range(3):
        s.bool()
    for _ in range(3):  # x_grad, cached_output, params_grad (grad_final for the layer on the input)
        s.tensor()


def _read_input_layer(s: DlibStream) -> tuple[tuple[float, float, float], int]:
    s.expect_string("input_rgb_image_sized")
    mean = (s.float(), s.float(), s.float())
    rows, cols = s.int(), s.int()
    if rows != cols:
        raise s.fail(f"input chips are {rows}x{cols}, expected square")
    return mean, rows


def read_dlib_resnet(data: bytes) -> DlibResnet:
    """Parse the bytes of ``dlib_face_recognition_resnet_model_v1.dat`` against ``ARCHITECTURE``.

    Raises ``DlibFormatError`` naming the byte offset where the stream departs from the expected network.
    """
    s = DlibStream(data)
    s.expect_int(1, "add_loss_layer version")
    s.expect_string("loss_metric_2")
    s.float(), s.float()  # margin, distance threshold

    ops = ARCHITECTURE
    # 1. Versions, outermost wrapper first. The layer on the input has its own version (2 or 3).
    for op in reversed(ops[1:]):
        s.expect_int(1 if op[0] in ("tag", "skip") else 2, f"version of {op[0]}")
    first_version_at = s.pos
    input_version = s.int()
    if input_version not in (2, 3):
        raise DlibFormatError(f"version {input_version} of the input-side layer (at byte {first_version_at})")

    # 2. The input layer, then each computational layer's payload, input side first.
    mean, chip = _read_input_layer(s)
    result = DlibResnet(mean_rgb=mean, chip_size=chip)
    result.inventory["input_rgb_image_sized"] += 1
    for index, op in enumerate(ops):
        kind = str(op[0])
        if kind in ("tag", "skip"):
            result.weights.append({})
            continue
        name = _DETAILS_NAME[kind]
        s.expect_string(name)
        result.inventory[name] += 1
        result.weights.append(_PAYLOAD_READERS[kind](s, op))
        _read_layer_trailer(s)
        if index == 0 and input_version == 3:
            s.int()  # _sample_expansion_factor
    if not s.at_end():
        raise s.fail("trailing bytes after the network")
    return result


# --------------------------------------------------------------------------------------------------
# The ONNX graph, one emitter per layer kind. Shapes are tracked statically as (channels, rows, cols); the
# batch dimension stays symbolic.
# --------------------------------------------------------------------------------------------------

Shape = tuple[int, int, int]


class _GraphBuilder:
    """Accumulates ONNX nodes and initializers while walking ``ARCHITECTURE``."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, value: np.ndarray) -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(
        self, op_type: str, inputs: list[str], stem: str, output: str | None = None, **attrs: object
    ) -> str:
        """Append one node; returns its output name (``output`` when given, else a fresh one)."""
        out = output or self.name(stem)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))  # type: ignore[arg-type]
        return out


def _emit_normalise(g: _GraphBuilder, x: str, mean_rgb: tuple[float, float, float]) -> str:
    """(pixel - channel mean) / 256, as dlib's ``input_rgb_image_sized::to_tensor``."""
    mean = np.asarray(mean_rgb, dtype=np.float32).reshape(1, 3, 1, 1)
    centred = g.node("Sub", [x, g.const("mean_rgb", mean)], "centred")
    return g.node("Mul", [centred, g.const("inv_256", np.asarray(1 / 256, dtype=np.float32))], "normalised")


def _out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - kernel) // stride


def _emit_con_affine(
    g: _GraphBuilder, x: str, shape: Shape, op: Op, con: Weights, affine: Weights
) -> tuple[str, Shape]:
    """Convolution with bias then dlib's ``affine`` (y * gamma + beta per channel), folded into one Conv.

    The fold is computed in float64 and rounded once to float32.
    """
    filters, kernel, stride = (int(v) for v in op[1:])
    pad = 0 if stride != 1 else kernel // 2
    gamma = affine["gamma"].astype(np.float64)
    weight = (con["weight"].astype(np.float64) * gamma[:, None, None, None]).astype(np.float32)
    bias = (con["bias"].astype(np.float64) * gamma + affine["beta"].astype(np.float64)).astype(np.float32)
    out = g.node("Conv", [x, g.const("conv_w", weight), g.const("conv_b", bias)], "conv",
                 kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
    _, rows, cols = shape
    return out, (filters, _out_size(rows, kernel, stride, pad), _out_size(cols, kernel, stride, pad))


def _emit_pool(g: _GraphBuilder, x: str, shape: Shape, op: Op) -> tuple[str, Shape]:
    """``max_pool`` / ``avg_pool`` with padding 0 (all pools here have stride 2) and floor output size."""
    kind, kernel, stride = str(op[0]), int(op[1]), int(op[2])
    onnx_op = "MaxPool" if kind == "max_pool" else "AveragePool"
    out = g.node(onnx_op, [x], kind, kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[0] * 4)
    channels, rows, cols = shape
    return out, (channels, _out_size(rows, kernel, stride, 0), _out_size(cols, kernel, stride, 0))


def _emit_zero_pad(g: _GraphBuilder, x: str, shape: Shape, target: Shape) -> str:
    """Zero-pad ``x`` at the end of channels, rows and cols up to ``target`` (no-op when equal)."""
    extra = [t - s for s, t in zip(shape, target, strict=True)]
    if not any(extra):
        return x
    pads = np.asarray([0, 0, 0, 0, 0, *extra], dtype=np.int64)
    return g.node("Pad", [x, g.const("pads", pads)], "zero_pad", mode="constant")


def _emit_add_prev(g: _GraphBuilder, x: str, shape: Shape, prev: str, prev_shape: Shape) -> tuple[str, Shape]:
    """dlib's ``add_prev``: element-wise sum over the larger shape, the smaller operand zero-padded."""
    target: Shape = tuple(max(a, b) for a, b in zip(shape, prev_shape, strict=True))  # type: ignore[assignment]
    a = _emit_zero_pad(g, x, shape, target)
    b = _emit_zero_pad(g, prev, prev_shape, target)
    return g.node("Add", [a, b], "add_prev"), target


def _emit_head(g: _GraphBuilder, x: str, shape: Shape, fc: Weights, output: str) -> str:
    """``avg_pool_everything`` then ``fc_no_bias``: global mean, flatten, ``x @ W``, W [inputs, outputs]."""
    pooled = g.node("GlobalAveragePool", [x], "global_avg")
    flat = g.node("Flatten", [pooled], "flatten", axis=1)
    weight = fc["weight"]
    if weight.shape[0] != shape[0] * 1 * 1:
        raise DlibFormatError(f"fc expects {weight.shape[0]} inputs, network gives {shape[0]}")
    return g.node("MatMul", [flat, g.const("fc_w", weight.astype(np.float32))], "fc", output=output)


def build_onnx(net: DlibResnet) -> onnx.ModelProto:
    """The ONNX model of ``net``: input ``chips`` float32 [B,3,S,S] RGB 0..255; output ``descriptors``
    float32 [B,128]. Checked with ``onnx.checker`` (full check) before it is returned."""
    g = _GraphBuilder()
    size = net.chip_size
    x = _emit_normalise(g, "chips", net.mean_rgb)
    shape: Shape = (3, size, size)
    tags: dict[int, tuple[str, Shape]] = {}
    ops, weights = ARCHITECTURE, net.weights
    i = 0
    while i < len(ops):
        kind = ops[i][0]
        if kind == "con":
            if ops[i + 1][0] != "affine":
                raise DlibFormatError("every con in anet_type is followed by an affine")
            x, shape = _emit_con_affine(g, x, shape, ops[i], weights[i], weights[i + 1])
            i += 2
            continue
        if kind == "relu":
            x = g.node("Relu", [x], "relu")
        elif kind in ("max_pool", "avg_pool"):
            x, shape = _emit_pool(g, x, shape, ops[i])
        elif kind == "tag":
            tags[int(ops[i][1])] = (x, shape)
        elif kind == "skip":
            x, shape = tags[int(ops[i][1])]
        elif kind == "add_prev":
            prev, prev_shape = tags[int(ops[i][1])]
            x, shape = _emit_add_prev(g, x, shape, prev, prev_shape)
        elif kind == "avg_pool_everything":
            if ops[i + 1][0] != "fc" or i + 2 != len(ops):
                raise DlibFormatError("anet_type ends with avg_pool_everything then fc")
            x = _emit_head(g, x, shape, weights[i + 1], output="descriptors")
            i += 2
            continue
        else:
            raise DlibFormatError(f"no ONNX emitter for layer kind {kind!r}")
        i += 1

    if x != "descriptors":
        raise DlibFormatError("ARCHITECTURE does not end with the descriptor head")
    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("chips", TensorProto.FLOAT, ["B", 3, size, size])],
        [helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["B", DESCRIPTOR_DIM])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="facestream.models.dlib_resnet")
    model.ir_version = 8  # readable by ONNX Runtime >= 1.14
    model.doc_string = (
        "dlib face recognition ResNet v1 (anet_type), converted without dlib. Input 'chips': float32 "
        "[B,3,150,150] RGB 0..255 aligned chips; output 'descriptors': float32 [B,128], un-normalised."
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def convert_dlib_resnet(dat_path: Path, onnx_path: Path) -> None:
    """Write an ONNX model: input "chips" float32 [B,3,150,150] = RGB pixels 0..255 of 150x150 aligned
    chips (NCHW, dynamic batch B); output "descriptors" float32 [B,128] (dlib's raw, un-normalised
    descriptor). Mean subtraction and /256 scaling are inside the graph.

    The chips must be aligned as dlib's ``get_face_chip(img, shape, 150, 0.25)`` does. Opset 17, IR 8,
    checked with ``onnx.checker``. Raises ``DlibFormatError`` when the file is not this network, ``OSError``
    when it cannot be read or written. ``onnx_path``'s folder is created; the file is written atomically.
    """
    net = read_dlib_resnet(Path(dat_path).read_bytes())
    model = build_onnx(net)
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_name(onnx_path.name + ".tmp")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(onnx_path)
