"""Export parity, typed export errors, and every quantization mode producing a gated bundle."""

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("galsim")

from bundle_helpers import tiny_redshift_graph  # noqa: E402
from cai_edge.bundle import open_bundle  # noqa: E402
from cai_edge.cli import main  # noqa: E402
from cai_edge.export.errors import ExportParityError, ExportShapeError  # noqa: E402
from cai_edge.export.onnx_export import check_interface, export_onnx  # noqa: E402
from cai_edge.export.parity import check_parity  # noqa: E402
from cai_edge.models import AstroMAE  # noqa: E402
from cai_edge.models.datasets import rendered_split  # noqa: E402
from cai_edge.models.reference import save_reference  # noqa: E402
from cai_edge.predictor import Predictor  # noqa: E402
from cai_edge.quantize.recipes import store_weights_int8  # noqa: E402
from cai_edge.quantize.integer_layers import as_integer_matmuls  # noqa: E402
from cai_edge.quantize.runtime_dequantize import layers_run_in_float, runtime_dequantized_weights  # noqa: E402
from cai_edge.preprocessing import SDSS_NOISE_NANOMAGGIES, Preprocessing  # noqa: E402

PREP = Preprocessing(
    image_transform="asinh", image_softening=SDSS_NOISE_NANOMAGGIES,
    magnitude_offset=(19.5, 17.9, 17.0, 16.6, 16.3), magnitude_scale=(0.9, 0.9, 0.9, 0.9, 0.9),
)
VALIDATION = "sdss:validation:256"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = AstroMAE().eval()
    with torch.no_grad():  # a sensible output range: z ≈ 0.1 ± small
        model.concat_block[2].bias.fill_(0.1)
        model.concat_block[2].weight.mul_(0.1)
    return save_reference(model, PREP, tmp_path_factory.mktemp("w") / "w.safetensors")


@pytest.fixture(scope="module")
def fp32_bundle(weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "test-fp32"
    assert main(["export", "--weights", str(weights), "--out", str(out), "--name", "test", "--validation-limit", "256"]) == 0
    return out


def test_export_writes_a_verified_fp32_bundle_with_parity(fp32_bundle):
    bundle = open_bundle(fp32_bundle)
    m = bundle.manifest
    assert m["variant"] == "fp32" and m["name"] == "test-fp32" and m["opset"] >= 17
    assert m["parity"]["max_abs_dz"] <= 1e-4 and m["parity"]["n"] == 256
    assert m["preprocessing"] == PREP.to_dict()
    assert m["metrics"]["validation"]["n"] == 256 and "SIMULATED" in m["metrics"]["validation"]["data"]
    assert m["source"]["kind"] == "weights" and len(m["source"]["sha256"]) == 64
    # Attention is exported head by head: no 5-D permutes or Gathers of q/k/v for ORT to copy.
    graph = onnx.load_from_string(bundle.model_bytes).graph
    five_d = [n.name for n in graph.node if n.op_type == "Transpose" and len(n.attribute[0].ints) == 5]
    assert not five_d and sum(n.op_type == "Split" for n in graph.node) == 12


def test_exported_graph_matches_pytorch_at_any_batch_size(fp32_bundle, weights):
    from cai_edge.models.reference import load_reference_with_preprocessing

    model, prep = load_reference_with_preprocessing(weights)
    data = rendered_split("validation", 0, 256)
    predictor = Predictor(open_bundle(fp32_bundle), threads=1)
    for n in (1, 7, 64):
        image, mag = prep.network_inputs(data.images[:n], data.magnitudes[:n])
        with torch.no_grad():
            expected = model(torch.from_numpy(image), torch.from_numpy(mag)).numpy()
        got = predictor.predict_prepared(data.images[:n], data.magnitudes[:n])
        assert got.shape == (n,) and np.max(np.abs(got - expected)) <= 1e-4


def test_parity_failure_is_a_typed_error_reporting_the_difference():
    torch.manual_seed(1)
    a, b = AstroMAE().eval(), AstroMAE().eval()
    proto = export_onnx(a)
    data = rendered_split("validation", 0, 256)
    with pytest.raises(ExportParityError) as info:
        check_parity(b, proto.SerializeToString(), data.images[:32], data.magnitudes[:32], PREP)
    assert info.value.max_abs_dz > 1e-4 and info.value.n == 32 and "rejected" in str(info.value)


def test_wrong_interface_is_a_typed_shape_error():
    proto = tiny_redshift_graph()
    check_interface(proto)  # the right interface passes
    proto.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 64
    with pytest.raises(ExportShapeError, match="inputs"):
        check_interface(proto)
    fixed = tiny_redshift_graph()
    fixed.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 4
    fixed.graph.output[0].type.tensor_type.shape.dim[0].ClearField("dim_param")
    with pytest.raises(ExportShapeError, match="dynamic batch"):
        check_interface(fixed)


@pytest.mark.parametrize("variant", ["fp16", "int8-dynamic", "int8-static"])
def test_each_quantization_mode_gives_a_bundle_with_its_gate_computed(fp32_bundle, tmp_path, variant, capsys):
    out = tmp_path / variant
    code = main(["quantize", str(fp32_bundle), "--to", variant, "--out", str(out), "--validation", VALIDATION,
                 "--calibration", "sdss:train:512"])
    bundle = open_bundle(out)
    m = bundle.manifest
    assert m["variant"] == variant and m["source"]["bundle_sha256"] == open_bundle(fp32_bundle).sha256
    gate = m["gate"]
    assert set(gate["accuracy"]["checks"]) == {"sigma_nmad_relative_change", "bias_change", "eta_05_increase"}
    assert isinstance(gate["passed"], bool) and code == (0 if gate["passed"] else 1)
    assert gate["speed"]["galaxies_per_s"] > 0 and gate["speed"]["threads"] >= 1
    assert m["metrics"]["validation"]["n"] == 256
    data = rendered_split("validation", 0, 256)
    z = Predictor(bundle, threads=1).predict_prepared(data.images[:4], data.magnitudes[:4])
    assert z.shape == (4,) and np.isfinite(z).all()
    if variant == "int8-static":
        q = m["quantization"]
        assert q["calibration"]["split"] == "train" and q["calibration"]["galaxies"] == 512
        ops = {n.op_type for n in onnx.load_from_string(bundle.model_bytes).graph.node}
        assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
        assert "LayerNormalization" in ops and "Softmax" in ops  # stay float
        # No int8 weight is left for ONNX Runtime to dequantize on every call: such layers compute in float.
        assert runtime_dequantized_weights(onnx.load_from_string(bundle.model_bytes)) == set()
        assert set(q.get("float_compute_int8_weights", [])) <= set(q["kept_float"])
        graph = onnx.load_from_string(bundle.model_bytes).graph
        for layer in q.get("matmul_integer_layers", []):  # unfusable QDQ layers, written out as integer products
            assert layer not in q["kept_float"] and f"{layer}_MatMulInteger" in {n.name for n in graph.node}
    if variant == "fp16":
        assert bundle.size_bytes < 0.6 * open_bundle(fp32_bundle).size_bytes


def test_calibration_on_validation_or_test_is_refused(fp32_bundle, tmp_path, capsys):
    code = main(["quantize", str(fp32_bundle), "--to", "int8-static", "--out", str(tmp_path / "x"),
                 "--calibration", "sdss:validation:600", "--validation", VALIDATION])
    assert code == 2 and "training split only" in capsys.readouterr().err


def test_a_layer_ort_would_dequantize_every_call_is_found_and_stored_int8_computed_float(tmp_path):
    """A QDQ Gemm whose weights ORT keeps dequantizing is detected; int8 storage of a float layer folds at load."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    scale = (np.abs(w).max(axis=1) / 127).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    # A QDQ Gemm with a float bias: ORT's QGemm fusion needs an int32 bias, so it keeps the weight's
    # DequantizeLinear and runs the float Gemm, expanding the weights on every call.
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"]),
         helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"]),
         helper.make_node("DequantizeLinear", ["w_quantized", "w_scale", "w_zp"], ["w_dq"], axis=0),
         helper.make_node("Gemm", ["x_dq", "w_dq", "b"], ["y"], name="layer", transB=1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])],
        [numpy_helper.from_array(q, "w_quantized"), numpy_helper.from_array(scale, "w_scale"),
         numpy_helper.from_array(np.zeros(64, np.int8), "w_zp"), numpy_helper.from_array(np.float32(0.05), "x_scale"),
         numpy_helper.from_array(np.uint8(128), "x_zp"), numpy_helper.from_array(np.ones(64, np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert runtime_dequantized_weights(model) == {"w_quantized"}

    float_graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="dense", transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])], [numpy_helper.from_array(w, "w")],
    )
    float_model = helper.make_model(float_graph, opset_imports=[helper.make_opsetid("", 17)])
    stored = store_weights_int8(float_model, ["dense"])
    onnx.checker.check_model(stored)
    assert {i.name: i.data_type for i in stored.graph.initializer}["w_int8"] == TensorProto.INT8
    assert stored.ByteSize() < 0.4 * float_model.ByteSize()
    assert layers_run_in_float(float_model, stored) == []  # folded at load, nothing dequantized per call
    import onnxruntime as ort

    x = rng.standard_normal((8, 32)).astype(np.float32)
    y = ort.InferenceSession(stored.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ (q.astype(np.float32) * scale[:, None]).T, rtol=1e-4, atol=1e-4)
    assert np.abs(y - x @ w.T).max() < 0.05 * np.abs(x @ w.T).max()


def test_quantize_debug_prints_the_lowest_sqnr_tensors(fp32_bundle, tmp_path, capsys):
    """The README's `cai-edge quantize … [--debug]`: per-tensor SQNR between fp32 and int8, lowest first."""
    code = main(["quantize", str(fp32_bundle), "--to", "int8-static", "--out", str(tmp_path / "dbg"), "--validation", VALIDATION,
                 "--calibration", "sdss:train:512", "--debug"])
    out = capsys.readouterr().out
    assert code in (0, 1) and "lowest per-tensor SQNR (dB):" in out
    values = [float(line.split()[0]) for line in out.split("lowest per-tensor SQNR (dB):")[1].strip().splitlines()
              if line.strip() and line.split()[0].lstrip("-").replace(".", "", 1).isdigit()]
    assert values and values == sorted(values)


def _qdq_linear(op: str, bias: str) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """A one-layer QDQ model (``Gemm`` with transB, or ``MatMul``) with per-channel int8 weights; and W_q, its scales."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 32)).astype(np.float32)  # (N, K)
    scale = (np.abs(w).max(axis=1) / 127).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    inits = [numpy_helper.from_array(q if op == "Gemm" else np.ascontiguousarray(q.T), "w_quantized"),
             numpy_helper.from_array(scale, "w_scale"), numpy_helper.from_array(np.zeros(64, np.int8), "w_zp"),
             numpy_helper.from_array(np.float32(0.05), "x_scale"), numpy_helper.from_array(np.uint8(0), "x_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"]),
             helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"]),
             helper.make_node("DequantizeLinear", ["w_quantized", "w_scale", "w_zp"], ["w_dq"], axis=0 if op == "Gemm" else 1)]
    if op == "Gemm":
        inputs = ["x_dq", "w_dq"]
        if bias == "int32":  # as the QDQ quantizer stores a bias: int32 at scale x_scale · w_scale
            b_scale = (np.float32(0.05) * scale).astype(np.float32)
            inits += [numpy_helper.from_array(np.arange(64, dtype=np.int32) * 50, "b_quantized"),
                      numpy_helper.from_array(b_scale, "b_scale"), numpy_helper.from_array(np.zeros(64, np.int32), "b_zp")]
            nodes.append(helper.make_node("DequantizeLinear", ["b_quantized", "b_scale", "b_zp"], ["b"], axis=0))
            inputs.append("b")
        elif bias == "float":
            inits.append(numpy_helper.from_array(np.linspace(-1, 1, 64).astype(np.float32), "b"))
            inputs.append("b")
        nodes.append(helper.make_node("Gemm", inputs, ["y"], name="layer", transB=1))
    else:
        nodes.append(helper.make_node("MatMul", ["x_dq", "w_dq"], ["y"], name="layer"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), q, scale


@pytest.mark.parametrize("op, bias", [("Gemm", "float"), ("Gemm", "int32"), ("Gemm", "none"), ("MatMul", "none")])
def test_an_unfusable_qdq_layer_becomes_an_integer_matmul_computing_what_the_qdq_form_specifies(op, bias):
    import onnxruntime as ort

    model, q, scale = _qdq_linear(op, bias)
    rewritten, done = as_integer_matmuls(model, ["layer"])
    onnx.checker.check_model(rewritten)
    assert done == ["layer"]
    ops = [n.op_type for n in rewritten.graph.node]
    assert "MatMulInteger" in ops and "DequantizeLinear" not in ops and "Gemm" not in ops
    assert runtime_dequantized_weights(rewritten) == set()  # nothing expanded to float per call
    assert {i.name: i.data_type for i in rewritten.graph.initializer}["layer_w_int8"] == onnx.TensorProto.INT8
    # Activations 0 … 128 in u8: within what AVX2's u8×s8 pairwise sums hold without saturating.
    x = np.random.default_rng(2).uniform(0, 6.4, (16, 32)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    expected, got = run(model), run(rewritten)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_a_layer_outside_the_handled_form_is_left_as_it_was():
    model, _, _ = _qdq_linear("Gemm", "float")
    for init in model.graph.initializer:
        if init.name == "w_zp":  # asymmetric weights: not rewritten
            init.CopyFrom(onnx.numpy_helper.from_array(np.ones(64, np.int8), "w_zp"))
    rewritten, done = as_integer_matmuls(model, ["layer"])
    assert done == [] and [n.op_type for n in rewritten.graph.node] == [n.op_type for n in model.graph.node]


def test_float_convs_keeps_every_convolution_float_from_the_first_attempt(fp32_bundle, tmp_path, capsys):
    out = tmp_path / "float-convs"
    code = main(["quantize", str(fp32_bundle), "--to", "int8-static", "--float-convs", "--out", str(out),
                 "--validation", VALIDATION, "--calibration", "sdss:train:512"])
    bundle = open_bundle(out)
    q = bundle.manifest["quantization"]
    convs = {n.name for n in onnx.load_from_string(open_bundle(fp32_bundle).model_bytes).graph.node if n.op_type == "Conv"}
    assert convs and set(q["attempts"][0]["kept_float"]) == convs and convs <= set(q["kept_float"])
    graph = onnx.load_from_string(bundle.model_bytes).graph
    produced_by = {o: n.op_type for n in graph.node for o in n.output}
    for node in graph.node:
        if node.op_type == "Conv":  # float inputs and weights: nothing dequantized in front of it
            assert all(produced_by.get(i) != "DequantizeLinear" for i in node.input), node.name
    assert code == (0 if bundle.manifest["gate"]["passed"] else 1)
    # 7-bit weights: no u8×s8 pair can saturate 16 bits on AVX2 (2 × 255 × 64 < 32,768)
    weights = [onnx.numpy_helper.to_array(i) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) >= 2]
    assert weights and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64
