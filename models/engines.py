"""Inference engines behind one interface: ONNX Runtime on CPU and TensorRT (+ pycuda) on NVIDIA GPUs.

Both run the same ONNX files. Every model here has one float32 input [B, 3, H, W] (RGB, NCHW); ``Engine.run``
takes that array and returns the outputs in the model's output order. An engine opened with
``image_input=True`` takes images instead: uint8 [B, H, W, 3] (RGB, NHWC, the layout OpenCV gives), and the
conversion to the model's float NCHW input happens inside the engine (ONNX Runtime: a Transpose and a Cast
prepended to the graph when the session opens, so no per-call Python copy; ``image_input_model``). Engines are
opened once and reused; ``run`` is safe to call from several threads.

``engine=auto`` picks TensorRT only where ``tensorrt`` and ``pycuda`` import and a CUDA device exists,
else ONNX Runtime on CPU. TensorRT is the optional extra ``pip install 'facestream[gpu]'``; its modules are
imported lazily, only when a TensorRT engine is opened.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import onnxruntime as ort

from models.config import ModelSettings

log = logging.getLogger(__name__)
EngineName = Literal["onnxruntime", "tensorrt"]


class EngineUnavailableError(RuntimeError):
    """The requested engine cannot run here (missing extra or no CUDA device)."""


class Engine(Protocol):
    """A loaded model: one input with a leading batch dimension (float32 NCHW, or uint8 NHWC images when
    opened with ``image_input``), outputs in model order."""

    name: EngineName

    def run(self, batch: np.ndarray) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class ShapeProfile:
    """Input shapes a TensorRT engine is built for (smallest, most common, largest); ONNX Runtime ignores it."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def cuda_available() -> bool:
    """True when the TensorRT extra is installed and at least one CUDA device is visible."""
    if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("pycuda") is None:
        return False
    try:
        import pycuda.driver as cuda

        cuda.init()
        return bool(cuda.Device.count() > 0)
    except Exception:  # noqa: BLE001 - any driver failure means "no usable GPU"
        return False


def resolve_engine(settings: ModelSettings) -> EngineName:
    """The engine ``settings.engine`` selects here (``auto``: TensorRT where CUDA is present)."""
    if settings.engine == "auto":
        return "tensorrt" if cuda_available() else "onnxruntime"
    return settings.engine


def open_engine(onnx_path: Path, settings: ModelSettings, profile: ShapeProfile, image_input: bool = False) -> Engine:
    """Open ``onnx_path`` with the engine the settings select (``image_input``: see the module docstring;
    ``profile`` is always in the model's own NCHW shapes)."""
    if resolve_engine(settings) == "tensorrt":
        return TensorRTEngine(onnx_path, settings, profile, image_input)
    return OnnxRuntimeEngine(onnx_path, settings.threads, OrtOptions(spinning=settings.spin_wait), image_input)


def open_parts(onnx_path: Path, settings: ModelSettings, profile: ShapeProfile,
               image_input: bool = False) -> tuple[Engine, Engine | None]:
    """``open_engine``'s engine, and (ONNX Runtime with ``models.concurrent_runs`` > 1 only; else None) the
    session that parts of a call run on at once (``ConcurrentEngine``, the CenterFace plug-in's frames): one of
    the same model with ``threads // concurrent_runs`` intra-op threads (at least 1), or the engine itself
    where that is its own thread count (``models.threads`` 1: every run single-threaded, several at once)."""
    whole = open_engine(onnx_path, settings, profile, image_input)
    runs = settings.concurrent_runs
    if whole.name != "onnxruntime" or runs <= 1:
        return whole, None
    part_threads = max(1, settings.threads // runs)
    if part_threads == settings.threads:
        return whole, whole
    return whole, open_engine(onnx_path, settings.model_copy(update={"threads": part_threads}), profile, image_input)


class ConcurrentEngine:
    """A batch of one on ``whole`` (``models.threads`` intra-op threads); a larger batch split into ``runs``
    parts that run at once on ``part`` (fewer threads each), outputs concatenated in order: the same outputs
    (each input's inference is independent of the others in its batch). Safe to call from several threads.

    Why (``bench models``, ONNX Runtime session options, 2 cores): the descriptor at batch 32 on 2 threads
    ran 628 faces/s, as two single-threaded runs of 16 at once 822 (interleaved A/B, load 1.8): one run's
    threads wait on each other at every layer, two runs do not."""

    name: EngineName = "onnxruntime"

    def __init__(self, whole: Engine, part: Engine, runs: int) -> None:
        self._whole, self._part, self._runs = whole, part, runs
        self._workers = ThreadPoolExecutor(runs, "engine-part")

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs for ``batch`` (as the engines' ``run``)."""
        if len(batch) < 2:
            return self._whole.run(batch)
        parts = list(self._workers.map(self._part.run, np.array_split(batch, min(self._runs, len(batch)))))
        return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]


def open_concurrent(onnx_path: Path, settings: ModelSettings, profile: ShapeProfile,
                    image_input: bool = False) -> Engine:
    """``open_engine``, as a ``ConcurrentEngine`` where ``open_parts`` gives a part session."""
    whole, part = open_parts(onnx_path, settings, profile, image_input)
    return whole if part is None else ConcurrentEngine(whole, part, settings.concurrent_runs)


def image_input_model(onnx_path: Path) -> bytes:
    """``onnx_path`` (one float32 input [B, 3, H, W]) rewritten to take uint8 [B, H, W, 3]: a Transpose to
    NCHW, then a Cast to float32, in front of the graph (values unchanged: 0..255). Serialised, for
    ``onnxruntime.InferenceSession``."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    source = graph.input[0]
    batch, channels, height, width = (d.dim_param or d.dim_value for d in source.type.tensor_type.shape.dim)
    images = f"{source.name}_images"
    front = [helper.make_node("Transpose", [images], [f"{images}_nchw"], perm=[0, 3, 1, 2], name="images_nchw"),
             helper.make_node("Cast", [f"{images}_nchw"], [source.name], to=TensorProto.FLOAT, name="images_float")]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(front + nodes)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(images, TensorProto.UINT8, [batch, height, width, channels]))
    if isinstance(height, int) and isinstance(width, int):
        _expand_channel_constants(graph, source.name, (height, width))
    return bytes(model.SerializeToString())


_ELEMENTWISE = ("Add", "Sub", "Mul", "Div")


def _expand_channel_constants(graph: Any, image: str, size: tuple[int, int]) -> None:
    """Per-channel constants ([1, C, 1, 1]) of the element-wise nodes that take ``image`` (the float NCHW input,
    of static ``size``) expanded to [1, C, H, W]: the same values. Why: ONNX Runtime runs the int8 convolutions
    in NHWC and moves the input's Transpose past such a node, which then broadcasts over a last axis of 3
    (dlib's mean subtraction: 15 of the 82 ms of a batch of 32 on 2 threads, as long as the 7x7 first
    convolution); expanded, it broadcasts over the batch only (a quarter of the descriptor's CPU time saved)."""
    from onnx import numpy_helper

    constants = {init.name: init for init in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for node in graph.node:
        if node.op_type not in _ELEMENTWISE or image not in node.input:
            continue
        for name in node.input:
            init = constants.get(name)
            if init is None or uses[name] != 1 or len(init.dims) != 4 or tuple(init.dims[2:]) != (1, 1):
                continue
            values = numpy_helper.to_array(init)
            if values.shape[0] != 1:
                continue
            full = np.ascontiguousarray(np.broadcast_to(values, (1, values.shape[1], *size)))
            init.CopyFrom(numpy_helper.from_array(full, name))


_OPTIMISATION = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                 "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                 "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


@dataclass(frozen=True)
class OrtOptions:
    """ONNX Runtime session options beyond the thread count. The defaults are what ``facestream bench models``
    measured best for these models on 2 shared cores (its ONNX Runtime options table): sequential execution
    (these graphs are chains, inter-op parallelism has nothing to overlap), every graph optimisation, and no
    spin-waiting (the pipeline's stages share the cores, and spinning threads steal them: 40 ms instead of
    67 ms per 640x384 detector frame on a loaded 2-core machine; ``models.spin_wait`` turns it on for a
    machine whose cores the models have to themselves)."""

    parallel: bool = False  # ORT_PARALLEL execution mode, with 2 inter-op threads
    optimization: Literal["basic", "extended", "all"] = "all"
    spinning: bool = False


class OnnxRuntimeEngine:
    """An ONNX Runtime CPU session (``threads`` intra-op threads, ``options`` as ``OrtOptions`` says; with
    ``image_input`` it takes uint8 NHWC images, ``image_input_model``), opened once and reused (opening one
    costs far more than a run: see ``bench models``)."""

    name: EngineName = "onnxruntime"

    def __init__(self, onnx_path: Path, threads: int, options: OrtOptions | None = None,
                 image_input: bool = False) -> None:
        tuning = options or OrtOptions()
        session = ort.SessionOptions()
        session.intra_op_num_threads = threads
        session.inter_op_num_threads = 2 if tuning.parallel else 1
        session.execution_mode = ort.ExecutionMode.ORT_PARALLEL if tuning.parallel else ort.ExecutionMode.ORT_SEQUENTIAL
        session.graph_optimization_level = _OPTIMISATION[tuning.optimization]
        session.log_severity_level = 3
        session.add_session_config_entry("session.intra_op.allow_spinning", "1" if tuning.spinning else "0")
        source = image_input_model(onnx_path) if image_input else str(onnx_path)
        self._session = ort.InferenceSession(source, session, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        self._dtype = np.uint8 if image_input else np.float32

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs for ``batch`` (C-contiguous; uint8 NHWC with ``image_input``, else float32 NCHW); ONNX
        Runtime sessions are thread-safe."""
        return list(self._session.run(self._outputs, {self._input: np.ascontiguousarray(batch, self._dtype)}))


def plan_cache_key(onnx_bytes: bytes, gpu: str, trt_version: str, fp16: bool, profile: ShapeProfile) -> str:
    """File stem of a cached TensorRT plan: changes with the model, GPU, TensorRT version, precision, profile."""
    digest = hashlib.sha256()
    for part in (hashlib.sha256(onnx_bytes).hexdigest(), gpu, trt_version, str(fp16), repr(profile)):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


class TensorRTEngine:
    """A TensorRT engine built from the ONNX file (explicit batch, one optimisation profile, FP16 where the
    GPU has fast FP16), its serialised plan cached under ``<cache_dir>/tensorrt/`` by
    ``plan_cache_key``. Calls are serialised by a lock (one execution context, one CUDA stream)."""

    name: EngineName = "tensorrt"

    def __init__(self, onnx_path: Path, settings: ModelSettings, profile: ShapeProfile,
                 image_input: bool = False) -> None:
        self._image_input = image_input  # uint8 NHWC batches, converted on the host (the plan stays float NCHW)
        if not cuda_available():
            raise EngineUnavailableError(
                "TensorRT needs an NVIDIA GPU with CUDA and the extra: pip install 'facestream[gpu]'"
            )
        import pycuda.driver as cuda
        import tensorrt as trt

        self._cuda, self._trt = cuda, trt
        self._lock = threading.Lock()
        cuda.init()
        self._context_cuda = cuda.Device(0).retain_primary_context()
        self._context_cuda.push()
        try:
            self._logger = trt.Logger(trt.Logger.WARNING)
            plan = self._load_or_build(onnx_path, settings, profile)
            self._engine = trt.Runtime(self._logger).deserialize_cuda_engine(plan)
            if self._engine is None:
                raise EngineUnavailableError(f"TensorRT could not deserialise the plan for {onnx_path.name}")
            self._context = self._engine.create_execution_context()
            self._stream = cuda.Stream()
            names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
            is_input = [self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
            self._input = next(n for n, flag in zip(names, is_input, strict=True) if flag)
            self._outputs = [n for n, flag in zip(names, is_input, strict=True) if not flag]
            self._buffers: dict[str, tuple[int, Any]] = {}  # name -> (capacity bytes, device allocation)
        finally:
            self._context_cuda.pop()

    def _load_or_build(self, onnx_path: Path, settings: ModelSettings, profile: ShapeProfile) -> bytes:
        trt, cuda = self._trt, self._cuda
        onnx_bytes = onnx_path.read_bytes()
        device = cuda.Device(0)
        gpu = f"{device.name()}-sm{device.compute_capability()[0]}{device.compute_capability()[1]}"
        builder = trt.Builder(self._logger)
        fp16 = settings.tensorrt_fp16 and builder.platform_has_fast_fp16
        key = plan_cache_key(onnx_bytes, gpu, trt.__version__, fp16, profile)
        plan_path = settings.cache_dir / "tensorrt" / f"{onnx_path.stem}-{key}.plan"
        if plan_path.is_file():
            return plan_path.read_bytes()
        log.info("building TensorRT engine for %s (fp16=%s); cached as %s", onnx_path.name, fp16, plan_path)
        explicit = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        flags = 0 if int(trt.__version__.split(".")[0]) >= 10 else explicit
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(onnx_bytes):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineUnavailableError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        trt_profile = builder.create_optimization_profile()
        trt_profile.set_shape(network.get_input(0).name, profile.min, profile.opt, profile.max)
        config.add_optimization_profile(trt_profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise EngineUnavailableError(f"TensorRT failed to build an engine for {onnx_path.name}")
        data = bytes(plan)
        plan_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = plan_path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(plan_path)
        return data

    def _device_buffer(self, name: str, nbytes: int) -> Any:
        capacity, allocation = self._buffers.get(name, (0, None))
        if nbytes > capacity:
            allocation = self._cuda.mem_alloc(nbytes)
            self._buffers[name] = (nbytes, allocation)
        return allocation

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs for ``batch`` (float32 NCHW, or uint8 NHWC with ``image_input``), copied back to host memory."""
        cuda = self._cuda
        host_in = np.ascontiguousarray(batch.transpose(0, 3, 1, 2) if self._image_input else batch, np.float32)
        with self._lock:
            self._context_cuda.push()
            try:
                self._context.set_input_shape(self._input, host_in.shape)
                device_in = self._device_buffer(self._input, host_in.nbytes)
                cuda.memcpy_htod_async(device_in, host_in, self._stream)
                self._context.set_tensor_address(self._input, int(device_in))
                host_out = []
                for name in self._outputs:
                    shape = tuple(self._context.get_tensor_shape(name))
                    out = cuda.pagelocked_empty(shape, np.float32)
                    device_out = self._device_buffer(name, out.nbytes)
                    self._context.set_tensor_address(name, int(device_out))
                    host_out.append((out, device_out))
                if not self._context.execute_async_v3(self._stream.handle):
                    raise RuntimeError("TensorRT execution failed")
                for out, device_out in host_out:
                    cuda.memcpy_dtoh_async(out, device_out, self._stream)
                self._stream.synchronize()
                return [np.array(out) for out, _ in host_out]
            finally:
                self._context_cuda.pop()
