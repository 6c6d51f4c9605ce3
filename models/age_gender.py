"""face-api's age and gender net rebuilt as ONNX from its tfjs weights manifest (no graph ships with it).

Source: ``@vladmandic/face-api@1.7.15`` on npm, ``model/age_gender_model.bin`` and
``model/age_gender_model-weights_manifest.json`` (MIT). The manifest lists each tensor's name, shape, dtype
and uint8 quantisation (``value = q * scale + min``); the network is face-api's ``AgeGenderNet``: a
``TinyXception`` with two main blocks, then a 7x7 average pool and two fully connected heads. The wiring is
face-api's (``src/xception/TinyXception.ts``, ``src/ageGenderNet/AgeGenderNet.ts``), rebuilt here:

- input ``(x - mean_rgb) / 256`` with mean RGB (122.782, 117.001, 104.298), 112x112;
- ``conv_in`` 3x3 stride 2 + ReLU; reduction blocks (ReLU? -> sepconv -> ReLU -> sepconv -> max-pool 3x3/2,
  plus a 1x1 stride-2 expansion conv of the block input); main blocks (3x ReLU -> sepconv, plus the input);
  exit reduction block, then ReLU(sepconv); every convolution has a bias and TensorFlow SAME padding
  (the odd pixel at the end);
- average pool 7x7 (valid) -> 512 features -> ``fc/age`` (1 value, years) and ``fc/gender`` (2 logits,
  male then female, softmax).

Model contract (after ``convert_age_gender``):

- input ``faces``: float32 [B, 3, 112, 112], RGB, 0..255 (the normalisation is inside the graph);
- outputs ``age`` float32 [B, 1] (years) and ``gender`` float32 [B, 2] (probabilities: male, female).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CONVERTER_VERSION = "age-gender-faceapi-1"
INPUT = "faces"
INPUT_SIZE = 112
MANIFEST_MEMBER = "age_gender_model-weights_manifest.json"
GENDER_LABELS = ("male", "female")
_MEAN_RGB = (122.782, 117.001, 104.298)
_MAIN_BLOCKS = 2


def read_weights(bin_path: Path, manifest_path: Path) -> dict[str, np.ndarray]:
    """The float32 tensors of a tfjs weights manifest (uint8 / uint16 quantisation undone), by name."""
    groups = json.loads(manifest_path.read_text())
    out: dict[str, np.ndarray] = {}
    for group in groups:
        data = b"".join((bin_path.parent / p).read_bytes() for p in group["paths"])
        pos = 0
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            quant = spec.get("quantization")
            if quant:
                qtype = np.dtype(quant["dtype"])
                raw = np.frombuffer(data, qtype, count, pos)
                pos += count * qtype.itemsize
                values = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
            else:
                raw = np.frombuffer(data, np.dtype(spec["dtype"]), count, pos)
                pos += raw.nbytes
                values = raw.astype(np.float32)
            out[spec["name"]] = values.reshape(spec["shape"])
        if pos != len(data):
            raise ValueError(f"weights manifest does not cover {bin_path.name}: {pos} of {len(data)} bytes read")
    return out


class _Graph:
    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.w = weights
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.size = INPUT_SIZE

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def pads(self, kernel: int, stride: int, size: int) -> list[int]:
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        return [total // 2, total // 2, total - total // 2, total - total // 2]

    def conv(self, x: str, prefix: str, stride: int, size: int) -> str:
        kernel = self.w[f"{prefix}/filters"]  # (kh, kw, in, out)
        w = self.const(prefix + "/w", kernel.transpose(3, 2, 0, 1))
        b = self.const(prefix + "/b", self.w[f"{prefix}/bias"])
        k = kernel.shape[0]
        return self.node("Conv", [x, w, b], prefix, kernel_shape=[k, k], strides=[stride, stride],
                         pads=self.pads(k, stride, size))

    def sepconv(self, x: str, prefix: str, size: int) -> str:
        dw = self.w[f"{prefix}/depthwise_filter"]  # (kh, kw, in, 1)
        kh, kw, cin, mult = dw.shape
        dw_w = self.const(prefix + "/dw_w", dw.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw))
        depth = self.node("Conv", [x, dw_w], prefix + "/dw", group=cin, kernel_shape=[kh, kw], strides=[1, 1],
                          pads=self.pads(kh, 1, size))
        pw = self.const(prefix + "/pw_w", self.w[f"{prefix}/pointwise_filter"].transpose(3, 2, 0, 1))
        b = self.const(prefix + "/b", self.w[f"{prefix}/bias"])
        return self.node("Conv", [depth, pw, b], prefix, kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0])

    def relu(self, x: str) -> str:
        return self.node("Relu", [x], x + "/relu")

    def reduction(self, x: str, prefix: str, activate_input: bool) -> str:
        size = self.size
        out = self.relu(x) if activate_input else x
        out = self.sepconv(out, prefix + "/separable_conv0", size)
        out = self.sepconv(self.relu(out), prefix + "/separable_conv1", size)
        out = self.node("MaxPool", [out], prefix + "/pool", kernel_shape=[3, 3], strides=[2, 2],
                        pads=self.pads(3, 2, size))
        shortcut = self.conv(x, prefix + "/expansion_conv", 2, size)
        self.size = -(-size // 2)
        return self.node("Add", [out, shortcut], prefix + "/add")

    def main_block(self, x: str, prefix: str) -> str:
        out = x
        for i in range(3):
            out = self.sepconv(self.relu(out), f"{prefix}/separable_conv{i}", self.size)
        return self.node("Add", [out, x], prefix + "/add")


def build_model(weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The ONNX graph of face-api's AgeGenderNet from its named weights (contract in the module docstring)."""
    g = _Graph(weights)
    mean = np.asarray(_MEAN_RGB, np.float32).reshape(1, 3, 1, 1)
    x = g.node("Sub", [INPUT, g.const("mean_rgb", mean)], "centred")
    x = g.node("Mul", [x, g.const("inv_256", np.asarray(1 / 256, np.float32))], "normalised")
    x = g.relu(g.conv(x, "entry_flow/conv_in", 2, g.size))
    g.size = -(-g.size // 2)
    x = g.reduction(x, "entry_flow/reduction_block_0", activate_input=False)
    x = g.reduction(x, "entry_flow/reduction_block_1", activate_input=True)
    for i in range(_MAIN_BLOCKS):
        x = g.main_block(x, f"middle_flow/main_block_{i}")
    x = g.reduction(x, "exit_flow/reduction_block", activate_input=True)
    x = g.relu(g.sepconv(x, "exit_flow/separable_conv", g.size))
    if g.size != 7:
        raise ValueError(f"unexpected feature map size {g.size} (want 7 for the 7x7 pool)")
    pooled = g.node("AveragePool", [x], "pool", kernel_shape=[7, 7], strides=[2, 2])
    flat = g.node("Flatten", [pooled], "features", axis=1)
    g.node("Gemm", [flat, g.const("fc/age/w", weights["fc/age/weights"]),
                    g.const("fc/age/b", weights["fc/age/bias"])], "age")
    logits = g.node("Gemm", [flat, g.const("fc/gender/w", weights["fc/gender/weights"]),
                             g.const("fc/gender/b", weights["fc/gender/bias"])], "gender/logits")
    g.node("Softmax", [logits], "gender", axis=1)
    graph = helper.make_graph(
        g.nodes, "faceapi_age_gender",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["B", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("age", TensorProto.FLOAT, ["B", 1]),
         helper.make_tensor_value_info("gender", TensorProto.FLOAT, ["B", 2])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="facestream")
    model.ir_version = 8
    return model


def convert_age_gender(bin_path: Path, onnx_path: Path) -> None:
    """Convert ``age_gender_model.bin`` (its weights manifest beside it) to ONNX (contract above)."""
    model = build_model(read_weights(bin_path, bin_path.with_name(MANIFEST_MEMBER)))
    onnx.checker.check_model(model)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(onnx_path))
