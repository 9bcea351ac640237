#!/usr/bin/env python3
"""Coverage survey over keras-hub architectures: tiny configs, random seeded weights, default flags.

    python scripts/bench/keras_hub_coverage.py [--only NAME,...] [--json FILE] [--keep DIR]
                                               [--timeout S] [--list]

Needs the ``coverage`` extra (``pip install -e .[coverage]``: keras-hub). Nothing is downloaded: every
model is built from its config classes (a backbone, encoder or task class with a tiny config) and
initialised with ``keras.utils.set_random_seed(0)``.

What it measures. For every model it

  1. builds the model in a child process (``--export-one``), seeds its BatchNormalization statistics
     (``keras_coverage.seed_batchnorm``) and exports it with
     ``model.export(DIR, format="tf_saved_model")`` (a dynamic batch; text models also have a dynamic
     sequence axis). RetinaNet is exported with its prediction decoder and NMS: a ``tf.function`` of
     ``decode_predictions(model(images), images)`` saved with ``tf.saved_model.save``, at a static batch of 1
     (keras-hub's NonMaxSuppression cannot be traced with a dynamic batch);
  2. compiles it with ``python -m compiler DIR OUT.engine --quiet --keep-intermediates DIR2`` and default
     flags, plus ``--input-shapes`` where a sequence axis is dynamic (it cannot be guessed);
  3. runs ``python -m compiler check-trt`` on the exported ``model.onnx`` (same ``--input-shapes``), so the
     verdict is about what compile hands TensorRT after the passes;
  4. runs tf2onnx's own CLI alone on the same SavedModel (``python -m tf2onnx.convert --saved-model DIR
     --signature_def serving_default --opset 17``), the peer: its exit code, and whether onnxruntime
     loads what it wrote (an ``InferenceSession`` in a child).

One table row per model:

  model       the name ``--only`` takes        group     text, vision, detection, multimodal, audio
  export      ``ok`` when Keras built and exported the SavedModel, else ``build``
  exit        the compile's exit code (0: compiled and every seam validated; see compiler/errors.py)
  seams       the seams that failed (``tf→onnx``, ...), ``-`` when none failed
  check-trt   ``supported`` / ``N unsupported`` / ``loads: no`` (the verdict's first reason), ``-`` when
              there was no model.onnx to check
  seconds     wall time of the compile process     RSS MiB   its peak resident memory (ru_maxrss)
  tf2onnx     the peer: ``exit N, ort loads yes|no``

The compile's one-line errors are printed under the table; the last line is ``N/M compiled and
validated``. ``--reuse DIR --peer-from JSON`` re-runs only the compile and check-trt columns on
changed compiler code: the models and tf2onnx alone do not depend on it. Child processes, timeouts and RSS
measurement are ``keras_coverage.py``'s
(``run_measured``): a model that fails or hangs costs only its own row, and the script exits 0 whenever
the survey ran (a measurement, not a gate), 2 for bad arguments, 3 when keras-hub is missing.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import keras_coverage as kc  # noqa: E402  (a sibling script: its child-process and measuring helpers)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO_ROOT = kc.REPO_ROOT
SELF = str(Path(__file__).resolve())
SEED = kc.SEED
SEQ = 8  # sequence length for --input-shapes of dynamic sequence axes
IMAGE = (32, 32, 3)
VOCAB = 64
VERSIONED_PACKAGES = ("keras", "keras_hub", "tensorflow", "tf2onnx", "onnx", "onnxruntime")
FAST_SUBSET = ("BERT", "SegFormer", "KerasArgmax")  # what the test suite runs (tests/test_keras_hub_coverage.py)


# --------------------------------------------------------------------------- model catalogue (child only)

def _text(cls_name: str, **extra):
    import keras_hub

    cfg = dict(vocabulary_size=VOCAB, num_layers=2, hidden_dim=16, intermediate_dim=32)
    cfg.update(extra)
    return getattr(keras_hub.models, cls_name)(**cfg)


def _decoder(cls_name: str, **extra):
    return _text(cls_name, num_query_heads=2, num_key_value_heads=1, **extra)


def _resnet(stages: int = 2, image_shape=IMAGE):
    import keras_hub

    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16, 16, 16][:stages],
        stackwise_num_blocks=[1] * stages, stackwise_num_strides=[1, 2, 2, 2][:stages], block_type="basic_block",
        image_shape=image_shape)


def _efficientnet():
    import keras_hub

    n = 2
    return keras_hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * n, stackwise_depth_coefficients=[1.0] * n,
        stackwise_kernel_sizes=[3] * n, stackwise_num_repeats=[1] * n, stackwise_input_filters=[8, 8],
        stackwise_output_filters=[8, 16], stackwise_expansion_ratios=[1, 4],
        stackwise_squeeze_and_excite_ratios=[0.25] * n,
        stackwise_strides=[1, 2], stackwise_block_types=["v1"] * n, stackwise_force_input_filters=[0] * n,
        stackwise_nores_option=[False] * n, input_shape=IMAGE, num_features=32, dropout=0.0)


def _segformer():
    import keras_hub

    mit = keras_hub.models.MiTBackbone(
        layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2], layerwise_sr_ratios=[2, 1],
        max_drop_path_rate=0.0, layerwise_patch_sizes=[7, 3], layerwise_strides=[4, 2], image_shape=IMAGE,
        hidden_dims=[8, 16])
    backbone = keras_hub.models.SegFormerBackbone(image_encoder=mit, projection_filters=16)
    return keras_hub.models.SegFormerImageSegmenter(backbone=backbone, num_classes=3)


def _deeplab():
    import keras_hub

    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=_resnet(3), spatial_pyramid_pooling_key="P4", upsampling_size=4, dilation_rates=[2, 4],
        low_level_feature_key="P2", projection_filters=8, image_shape=IMAGE)
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=3)


def _retinanet():
    import keras_hub

    image = (64, 64, 3)
    backbone = keras_hub.models.RetinaNetBackbone(image_encoder=_resnet(4, image), min_level=3, max_level=4,
                                                  use_p5=False, image_shape=image)
    return keras_hub.models.RetinaNetObjectDetector(backbone=backbone, num_classes=3, pre_logits_num_conv_layers=1)


def _two_tower(prefix: str):
    import keras_hub

    m = keras_hub.models
    vision = getattr(m, f"{prefix}VisionEncoder")(patch_size=8, hidden_dim=16, num_layers=2, num_heads=2,
                                                  intermediate_dim=32, image_shape=IMAGE)
    text = getattr(m, f"{prefix}TextEncoder")(vocabulary_size=VOCAB, embedding_dim=16, hidden_dim=16, num_layers=2,
                                              num_heads=2, intermediate_dim=32, max_sequence_length=SEQ)
    extra = {"projection_dim": 16} if prefix == "CLIP" else {}
    return getattr(m, f"{prefix}Backbone")(vision_encoder=vision, text_encoder=text, **extra)


def _whisper_encoder():
    import keras
    import keras_hub

    full = keras_hub.models.WhisperBackbone(vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16,
                                            intermediate_dim=32, num_mels=8, max_encoder_sequence_length=32,
                                            max_decoder_sequence_length=16)
    return keras.Model(full.input["encoder_features"], full.output["encoder_sequence_output"],
                       name="whisper_encoder")


def _keras_argmax():
    """Not keras-hub: the plainest Keras model that outputs an argmax (Keras 3 lowers it through a sign bit)."""
    import keras

    x = keras.Input((10,), name="x")
    logits = keras.layers.Dense(5)(x)
    return keras.Model(x, {"logits": logits, "label": keras.ops.argmax(logits, axis=-1)}, name="keras_argmax")


@dataclass
class Spec:
    name: str
    group: str
    build: Callable[[], object] = field(repr=False)
    input_shapes: str | None = None  # --input-shapes for dynamic sequence axes
    detail: str = ""
    export: str = "keras"  # "keras": model.export; "retinanet": decoder + NMS through a tf.function


def _seq(*names: str) -> str:
    return ",".join(f"{n}:1x{SEQ}" for n in names)


_BERT_IDS = _seq("token_ids", "segment_ids", "padding_mask")
_IDS = _seq("token_ids", "padding_mask")
_SEQ2SEQ = _seq("encoder_token_ids", "encoder_padding_mask", "decoder_token_ids", "decoder_padding_mask")


def specs() -> list[Spec]:
    def hub(name):
        def build(**kw):
            import keras_hub
            return getattr(keras_hub.models, name)(**kw)
        return build

    heads = dict(num_heads=2)
    return [
        Spec("BERT", "text", lambda: _text("BertBackbone", max_sequence_length=16, **heads), _BERT_IDS,
             "BertBackbone, 2 layers, hidden 16; segment_ids index a 2-row table"),
        Spec("DistilBERT", "text", lambda: _text("DistilBertBackbone", max_sequence_length=16, **heads), _IDS),
        Spec("RoBERTa", "text", lambda: _text("RobertaBackbone", max_sequence_length=16, **heads), _IDS),
        Spec("ALBERT", "text", lambda: _text("AlbertBackbone", embedding_dim=8, max_sequence_length=16, **heads),
             _BERT_IDS),
        Spec("GPT2", "text", lambda: _text("GPT2Backbone", max_sequence_length=16, **heads), _IDS),
        Spec("Llama", "text", lambda: _decoder("LlamaBackbone"), _IDS, "GQA: 2 query heads, 1 KV head, RoPE"),
        Spec("Gemma", "text", lambda: _decoder("GemmaBackbone", head_dim=8), _IDS),
        Spec("Mistral", "text", lambda: _decoder("MistralBackbone"), _IDS),
        Spec("T5", "text", lambda: _text("T5Backbone", key_value_dim=8, **heads), _SEQ2SEQ),
        Spec("BART", "text", lambda: _text("BartBackbone", max_sequence_length=16, **heads), _SEQ2SEQ),
        Spec("ViT", "vision", lambda: hub("ViTBackbone")(image_shape=IMAGE, patch_size=8, num_layers=2, num_heads=2,
                                                         hidden_dim=16, mlp_dim=32)),
        Spec("DINOv2", "vision", lambda: hub("DINOV2Backbone")(patch_size=8, num_layers=2, hidden_dim=16, num_heads=2,
                                                               intermediate_dim=32, image_shape=IMAGE,
                                                               position_embedding_shape=IMAGE)),
        Spec("Swin", "vision", lambda: hub("SwinTransformerBackbone")(image_shape=IMAGE, embed_dim=16, depths=[2, 2],
                                                                      num_heads=[2, 2], window_size=4, patch_size=2,
                                                                      drop_path=0.0)),
        Spec("SegFormer", "vision", _segformer, detail="MiT backbone (2 stages) + SegFormer head, dynamic batch"),
        Spec("ResNet", "vision", lambda: _resnet(2)),
        Spec("CSPDarkNet", "vision", lambda: hub("CSPNetBackbone")(
            stem_filters=8, stem_kernel_size=3, stem_strides=1, stackwise_depth=[1, 1], stackwise_strides=[1, 2],
            stackwise_num_filters=[8, 16], block_type="dark_block", stage_type="dark", image_shape=IMAGE)),
        Spec("EfficientNet", "vision", _efficientnet),
        Spec("RetinaNet", "detection", _retinanet, detail="64x64, ResNet + FPN P3-P4, decoder + NonMaxSuppression",
             export="retinanet"),
        Spec("DeepLabV3", "detection", _deeplab, detail="ResNet (3 stages), ASPP on P4, low-level P2"),
        Spec("CLIP", "multimodal", lambda: _two_tower("CLIP"), _seq("token_ids")),
        Spec("SigLIP", "multimodal", lambda: _two_tower("SigLIP"), _seq("token_ids")),
        Spec("Whisper", "audio", _whisper_encoder, "encoder_features:1x32x8", "encoder only, 8 mels, 32 frames"),
        Spec("KerasArgmax", "keras", _keras_argmax, detail="Dense + keras.ops.argmax (sign-bit lowering)"),
    ]


def _probe_inputs(model, rng):
    """Random inputs of batch 2 for a Keras model, dict or single; ints small, masks ones."""
    import numpy as np

    def one(t):
        shape = [2] + [d if d is not None else SEQ for d in t.shape[1:]]
        if "int" in str(t.dtype):
            if "mask" in t.name:
                return np.ones(shape, "int32")
            return rng.integers(0, 2, shape).astype(str(t.dtype))
        return rng.uniform(-1, 1, shape).astype("float32")

    inputs = model.input
    if isinstance(inputs, dict):
        return {k: one(v) for k, v in inputs.items()}
    return one(inputs)


def _save_retinanet(model, out_dir: Path) -> None:
    import tensorflow as tf

    # keras-hub's NonMaxSuppression sizes its state with the static batch (ops.zeros([batch_size])): it cannot be
    # traced with a dynamic batch, so this export is the one with a static batch of 1.
    shape = [1, *model.backbone.image_shape]

    class Detector(tf.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
        def serve(self, images):
            return self.m.decode_predictions(self.m(images), images)

    module = Detector(model)
    tf.saved_model.save(module, str(out_dir), signatures={"serving_default": module.serve})


def export_one(name: str, out_dir: Path, meta_path: Path) -> int:
    """Child process: build ``name``, seed it, probe it, export it. Prints one error line on failure."""
    try:
        import keras
        import numpy as np

        spec = {s.name: s for s in specs()}[name]
        keras.utils.set_random_seed(SEED)
        model = spec.build()
        rng = np.random.default_rng(SEED)
        n_bn = kc.seed_batchnorm(model, rng)
        model(_probe_inputs(model, rng))
        if spec.export == "retinanet":
            _save_retinanet(model, out_dir)
        else:
            model.export(str(out_dir), format="tf_saved_model", verbose=False)
        meta_path.write_text(json.dumps({"params": int(model.count_params()), "batchnorm_layers": n_bn}))
        return 0
    except Exception as e:  # one line for the parent's error column; the traceback goes to the log
        return kc.build_failed(e)


def ort_loads(path: Path) -> int:
    """Child process (``--ort-load``): print ``ok`` when onnxruntime builds a session for ``path``."""
    try:
        import onnxruntime as ort

        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        print("ok")
    except Exception as e:  # any load error is the answer
        print(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300])
    return 0


def discover() -> int:
    print(json.dumps([{"name": s.name, "group": s.group, "input_shapes": s.input_shapes, "detail": s.detail}
                      for s in specs()]))
    return 0


# --------------------------------------------------------------------------- parent: run and measure

@dataclass
class Result:
    name: str
    group: str
    export: str = "-"  # ok | build
    params: int | None = None
    exit_code: int | None = None
    validated: bool = False
    failed_seams: list = field(default_factory=list)
    check_trt: str = "-"
    seconds: float | None = None
    peak_rss_mib: float | None = None
    tf2onnx_exit: int | None = None
    tf2onnx_ort: str = "-"  # yes | no | -
    error: str | None = None
    error_stage: str | None = None
    code: str | None = None
    notes: list = field(default_factory=list)


def _check_trt(onnx_path: Path, spec: dict, work: Path, timeout: float, env: dict) -> str:
    cmd = [sys.executable, "-m", "compiler", "check-trt", str(onnx_path), "--json"]
    if spec["input_shapes"]:
        cmd += ["--input-shapes", spec["input_shapes"]]
    rc, _, _, timed_out = kc.run_measured(cmd, work, "check_trt", timeout, env)
    if timed_out:
        return "timed out"
    try:  # library warnings (graphsurgeon's) may precede the JSON on stdout
        text = (work / "check_trt.out").read_text()
        verdict = json.loads(text[text.index("\n{") + 1:] if not text.startswith("{") else text)
    except (OSError, ValueError):
        return f"exit {rc}: {kc._last_error_line(work / 'check_trt.err')}"[:60]
    loads = verdict.get("loads")
    if loads is not None and not loads.get("ok", True):
        return "loads: no"
    n = len(verdict.get("findings") or [])
    return "supported" if verdict.get("supported") else f"{n} unsupported"


def _tf2onnx_alone(sm_dir: Path, work: Path, timeout: float, env: dict) -> tuple[int | None, str]:
    out = work / "tf2onnx_alone.onnx"
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(sm_dir), "--signature_def",
           "serving_default", "--tag", "serve", "--opset", "17", "--output", str(out)]
    rc, _, _, timed_out = kc.run_measured(cmd, work, "tf2onnx", timeout, env)
    if timed_out or not out.is_file():
        return (None if timed_out else rc), "-"
    proc = subprocess.run([sys.executable, SELF, "--ort-load", str(out)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO_ROOT)
    lines = proc.stdout.strip().splitlines()
    return rc, "yes" if lines and lines[-1] == "ok" else "no"


def _read_report(res: Result, report_path: Path, rc: int, work: Path) -> None:
    report = kc.read_report(report_path, res.notes)
    if report is None:
        res.error_stage = "compile"
        res.error = f"no report (exit {rc}): {kc._last_error_line(work / 'compile.err')}"
        return
    res.validated = report["status"] == "ok" and rc == 0
    res.failed_seams = [s["seam"] for s in report.get("validation") or [] if not s["passed"]]
    if report.get("error"):
        res.error_stage, res.error = report["error"].get("stage"), report["error"].get("message")
    elif rc != 0:
        res.error = f"exit {rc}: {kc._last_error_line(work / 'compile.err')}"


def _build(spec: dict, work: Path, timeout: float, env: dict, reuse: Path | None) -> tuple[int, bool]:
    """The model's SavedModel in ``work``: copied from an earlier ``--keep`` directory (``--reuse``), else built."""
    earlier = reuse / spec["name"] if reuse else None
    if earlier and (earlier / "saved_model" / "saved_model.pb").is_file() and (earlier / "meta.json").is_file():
        shutil.copytree(earlier / "saved_model", work / "saved_model")
        shutil.copy(earlier / "meta.json", work / "meta.json")
        return 0, False
    rc, _, _, timed_out = kc.run_measured([sys.executable, SELF, "--export-one", spec["name"],
                                           str(work / "saved_model"), str(work / "meta.json")],
                                          work, "build", timeout, env)
    return rc, timed_out


def survey_one(spec: dict, work: Path, timeout: float, env: dict, reuse: Path | None = None,
               peer: dict | None = None) -> Result:
    """Build (or reuse), compile, check-trt and tf2onnx alone (or its earlier result, ``peer``) for one model."""
    res = Result(spec["name"], spec["group"])
    work.mkdir(parents=True, exist_ok=True)
    sm_dir, meta_path, inter = work / "saved_model", work / "meta.json", work / "intermediates"
    engine, report_path = work / "model.engine", work / "model.engine.report.json"
    rc, timed_out = _build(spec, work, timeout, env, reuse)
    if rc != 0 or not meta_path.is_file():
        res.export, res.error_stage = "build", "build"
        res.error = f"build: timed out after {timeout:.0f} s" if timed_out else kc._last_error_line(work / "build.err")
        return res
    res.export, res.params = "ok", json.loads(meta_path.read_text())["params"]
    res.code = kc.code_label(kc.git_state())
    cmd = [sys.executable, "-m", "compiler", str(sm_dir), str(engine), "--quiet", "--keep-intermediates", str(inter)]
    if spec["input_shapes"]:
        cmd += ["--input-shapes", spec["input_shapes"]]
    rc, wall, rss, timed_out = kc.run_measured(cmd, work, "compile", timeout, env)
    res.exit_code, res.seconds, res.peak_rss_mib = (None if timed_out else rc), wall, rss
    if timed_out:
        res.error_stage, res.error = "compile", f"compile: timed out after {timeout:.0f} s"
    else:
        _read_report(res, report_path, rc, work)
    if (inter / "model.onnx").is_file():
        res.check_trt = _check_trt(inter / "model.onnx", spec, work, timeout, env)
    if peer is not None:  # --peer-from (its entry) or --no-peer (an empty dict): tf2onnx alone is not run
        res.tf2onnx_exit, res.tf2onnx_ort = peer.get(spec["name"], (None, "-"))
    else:
        res.tf2onnx_exit, res.tf2onnx_ort = _tf2onnx_alone(sm_dir, work, timeout, env)
    return res


# --------------------------------------------------------------------------- output

def rows(results: list[Result]) -> tuple[list[str], list[list[str]]]:
    header = ["model", "group", "export", "exit", "seams failed", "check-trt", "seconds", "RSS MiB",
              "tf2onnx alone"]
    body = []
    for r in results:
        peer = "-" if r.tf2onnx_exit is None and r.tf2onnx_ort == "-" else \
            f"exit {r.tf2onnx_exit if r.tf2onnx_exit is not None else 'timeout'}, ort loads {r.tf2onnx_ort}"
        body.append([r.name, r.group, r.export, "-" if r.exit_code is None else str(r.exit_code),
                     ",".join(r.failed_seams) or "-", r.check_trt,
                     f"{r.seconds:.1f}" if r.seconds is not None else "-",
                     f"{r.peak_rss_mib:.0f}" if r.peak_rss_mib is not None else "-", peer])
    return header, body


def print_table(results: list[Result], markdown: bool = False) -> None:
    header, body = rows(results)
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in body:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    for cells in [header, ["-" * w for w in widths], *body]:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())


def _keras_hub_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("keras_hub") is None


def _survey(specs_: list[dict], root: Path, a, env: dict) -> list[Result]:
    results = []
    peer = {} if a.no_peer else None
    if a.peer_from:  # tf2onnx alone does not depend on this repository's code: an earlier survey's answer holds
        peer = {r["name"]: (r["tf2onnx_exit"], r["tf2onnx_ort"])
                for r in json.loads(a.peer_from.read_text())["results"] if r["export"] == "ok"}
    for i, spec in enumerate(specs_, 1):
        work = root / spec["name"]
        shutil.rmtree(work, ignore_errors=True)
        try:
            r = survey_one(spec, work, a.timeout, env, a.reuse, peer)
        except Exception as e:  # a bug in this script must not cost the other models
            r = Result(spec["name"], spec["group"], error=f"survey: {type(e).__name__}: {e}", error_stage="survey")
        results.append(r)
        status = "ok" if r.validated else f"FAILED ({r.error_stage or '?'})"
        secs = f"{r.seconds:.1f} s" if r.seconds is not None else "-"
        print(f"[{i}/{len(specs_)}] {spec['name']:<13} {status:<20} compile {secs:>8}", flush=True)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--export-one"] and len(argv) == 4:
        return export_one(argv[1], Path(argv[2]), Path(argv[3]))
    if argv == ["--discover"]:
        return discover()
    if argv[:1] == ["--ort-load"] and len(argv) == 2:
        return ort_loads(Path(argv[1]))
    ap = kc.survey_parser(__doc__, 600.0, "build, compile, check-trt, tf2onnx")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    ap.add_argument("--reuse", type=Path, metavar="DIR",
                    help="take each model's SavedModel from an earlier --keep DIR instead of building it again")
    ap.add_argument("--peer-from", type=Path, metavar="JSON",
                    help="take the tf2onnx-alone columns from an earlier --json (they do not depend on this code)")
    ap.add_argument("--no-peer", action="store_true", help="do not run tf2onnx alone (its columns show -)")
    a = ap.parse_args(argv)
    if _keras_hub_missing():
        print("error: survey: keras-hub is not installed; fix: pip install -e .[coverage]", file=sys.stderr)
        return 3
    env = dict(os.environ)
    chosen = kc.select_specs(kc.load_specs(env, SELF), a.only, ap)
    if a.list:
        for s in chosen:
            print(f"{s['name']:<13} {s['group']:<11} {s['input_shapes'] or '':<40} {s['detail']}")
        return 0
    root = a.keep or Path(tempfile.mkdtemp(prefix="keras-hub-coverage-"))
    root.mkdir(parents=True, exist_ok=True)
    git, found = kc.git_state(), kc.versions(VERSIONED_PACKAGES)
    print(f"versions: {', '.join(f'{k} {v}' for k, v in found.items())}; python {platform.python_version()}")
    print(f"code: HEAD {kc.code_label(git)}; {len(chosen)} models; seed {SEED}\n", flush=True)
    started = time.perf_counter()
    try:
        results = _survey(chosen, root, a, env)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print_table(results, a.markdown)
    failures = [r for r in results if not r.validated]
    if failures:
        print("\nfailures (full error lines):")
        for r in failures:
            print(f"  {r.name}: {r.error or '(no error recorded; exit ' + str(r.exit_code) + ')'}")
    ok = len(results) - len(failures)
    total = time.perf_counter() - started
    print(f"\n{ok}/{len(results)} compiled and validated (survey took {total / 60:.1f} min)")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"versions": found, "git": git, "seed": SEED, "survey_seconds": total,
                                      "summary": {"models": len(results), "compiled_and_validated": ok},
                                      "results": [asdict(r) for r in results]}, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
