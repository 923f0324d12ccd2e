"""Lambda handler, local fan-out and deployment package, against moto's S3 server over HTTP.

S3 is moto's ThreadedMotoServer on 127.0.0.1, reached by the real boto3 client (no in-process
patching). The packaged handler is imported from the unzipped zip by a Python started with
``-S``: no site-packages, so no project install, no torch and no astropy.
"""

import csv
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from bundle_helpers import tiny_bundle  # noqa: E402
from cai_edge.scale_out.aws import handler as lambda_handler  # noqa: E402
from cai_edge.scale_out.aws import storage  # noqa: E402
from cai_edge.cli import main  # noqa: E402
from cai_edge.errors import CaiEdgeError  # noqa: E402
from cai_edge.export.bundle_writer import zip_bundle  # noqa: E402

BUCKET = "survey"
N_GOOD = 11
ROWS = 7


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def bundle_zip(tmp_path_factory):
    return zip_bundle(tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny-fp32"))


@pytest.fixture
def aws_env(s3_endpoint, bundle_zip, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
    monkeypatch.setenv("CAI_EDGE_BUNDLE", str(bundle_zip))
    storage._client.cache_clear()
    lambda_handler._runtime = None
    yield s3_endpoint
    storage._client.cache_clear()
    lambda_handler._runtime = None


def _npz_bytes(k: int) -> bytes:
    rng = np.random.default_rng(k)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        images=rng.normal(0, 0.05, (ROWS, 5, 32, 32)).astype(np.float32),
        magnitudes=np.tile(np.array([19, 17.6, 16.8, 16.4, 16.1], np.float32), (ROWS, 1)),
        ids=np.array([f"p{k:02d}-{i}" for i in range(ROWS)]),
        z_spec=rng.uniform(0.02, 0.3, ROWS).astype(np.float32),
    )
    return buffer.getvalue()


@pytest.fixture
def partitions(aws_env, request):
    client = boto3.client("s3")
    run = request.node.name.replace("[", "-").replace("]", "")[:40]
    client.create_bucket(Bucket=BUCKET) if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]] else None
    for k in range(N_GOOD):
        client.put_object(Bucket=BUCKET, Key=f"{run}/parts/p-{k:04d}.npz", Body=_npz_bytes(k))
    client.put_object(Bucket=BUCKET, Key=f"{run}/parts/p-0099.npz", Body=b"this is not an npz file")
    return f"s3://{BUCKET}/{run}/parts/", f"s3://{BUCKET}/{run}/results/"


def _csv_rows(uri: str) -> list[dict]:
    lines = storage.get_bytes(uri).decode().splitlines(keepends=True)
    return list(csv.DictReader(line for line in lines if not line.startswith("#")))


def test_fanout_gives_one_row_per_galaxy_isolates_the_poison_partition_and_resumes(partitions, capsys):
    inputs, outputs = partitions
    code = main(["fanout", "--local", inputs, outputs, "--workers", "2", "--endpoint-url", os.environ["AWS_ENDPOINT_URL"]])
    assert code == 1  # the poison partition fails; the run reports it
    summary = json.loads(storage.get_bytes(outputs + "summary/summary.json"))
    assert summary["partitions"] == N_GOOD + 1 and summary["partitions_ok"] == N_GOOD
    assert [f["partition"] for f in summary["partitions_failed"]] == [inputs + "p-0099.npz"]
    assert summary["galaxies"] == N_GOOD * ROWS and summary["partitions_missing"] == []
    assert summary["cost_usd"] > 0 and summary["usd_per_million_galaxies"] > 0
    rows = _csv_rows(outputs + "summary/predictions.csv")
    galaxy_ids = [r["id"] for r in rows if r["status"] == "ok"]
    assert sorted(galaxy_ids) == sorted(f"p{k:02d}-{i}" for k in range(N_GOOD) for i in range(ROWS))
    poison = [r for r in rows if r["status"] != "ok"]
    assert len(poison) == 1 and "p-0099" in poison[0]["source"] and poison[0]["status"] == "unreadable"
    # merged by cai-edge merge's code: its sidecar records the one bundle, the summary the merge's counts
    sidecar = json.loads(storage.get_bytes(outputs + "summary/predictions.csv-metadata.json"))
    assert sidecar["cai_edge"]["bundle_sha256"] == summary["bundles"][0] and len(summary["bundles"]) == 1
    assert summary["merge"] == {"rows_in": N_GOOD * ROWS + 1, "rows_out": N_GOOD * ROWS + 1, "superseded": 0, "duplicate_ids": 0}
    capsys.readouterr()

    # a second run skips every finished partition and retries only the poison one
    assert main(["fanout", "--local", inputs, outputs, "--workers", "2"]) == 1
    second = json.loads(capsys.readouterr().out)
    assert second["invocations"] == {"ok": 0, "skipped": N_GOOD, "failed": 1}
    assert len(_csv_rows(outputs + "summary/predictions.csv")) == N_GOOD * ROWS + 1


def test_partition_event_metrics_and_idempotency(partitions):
    inputs, outputs = partitions
    result = lambda_handler.handler({"input": inputs + "p-0003.npz", "output": outputs})
    assert result["status"] == "ok" and result["n"] == ROWS
    metrics = json.loads(storage.get_bytes(outputs + "p-0003.json"))
    for key in ("n", "init_ms", "s3_get_ms", "decode_ms", "infer_ms", "s3_put_ms", "galaxies_per_s", "peak_rss_mb", "bundle_sha256", "cost_usd"):
        assert metrics[key] is not None, key
    assert metrics["cold_start"] is True and metrics["threads"] == min(2, len(os.sched_getaffinity(0)))
    assert metrics["memory_mb"] == 3008 and metrics["cost_usd"] > 0
    rows = _csv_rows(outputs + "p-0003.csv")
    assert [r["id"] for r in rows] == [f"p03-{i}" for i in range(ROWS)] and all(r["z_pred"] for r in rows)
    again = lambda_handler.handler({"input": inputs + "p-0003.npz", "output": outputs})
    assert again["status"] == "skipped"


def test_map_batch_keeps_good_results_when_one_item_is_bad(partitions):
    inputs, outputs = partitions
    event = {"Items": [{"input": inputs + "p-0001.npz"}, {"input": inputs + "p-0099.npz"}, {"Key": inputs.split("/", 3)[3] + "p-0002.npz"}],
             "BatchInput": {"output": outputs, "bucket": BUCKET}}
    result = lambda_handler.handler(event)
    assert [r["status"] for r in result["results"]] == ["ok", "failed", "ok"] and result["failed"] == 1
    assert "p-0099" in result["results"][1]["error"]
    assert storage.exists(outputs + "p-0002.csv")


def test_inline_batch_and_bad_events(aws_env):
    import base64

    def b64(arr):
        buffer = io.BytesIO()
        np.save(buffer, arr)
        return base64.b64encode(buffer.getvalue()).decode()

    images = np.zeros((3, 5, 32, 32), np.float32)
    images[1, 0, 10, 10] = np.nan
    mags = np.tile(np.array([19, 17.6, 16.8, 16.4, 16.1], np.float32), (3, 1))
    result = lambda_handler.handler({"images_npy": b64(images), "magnitudes_npy": b64(mags), "ids": ["a", "b", "c"]})
    assert result["ids"] == ["a", "b", "c"] and result["status"] == ["ok", "nonfinite_pixels", "ok"]
    assert result["z_pred"][0] == pytest.approx(0.001 * mags[0].sum(), abs=1e-5) and result["z_pred"][1] is None
    with pytest.raises(ValueError, match="unknown event"):
        lambda_handler.handler({"hello": 1})
    with pytest.raises(ValueError, match="needs 'output'"):
        lambda_handler.handler({"input": "s3://x/y.npz"})


def _lambda_runtime_dir(dest: Path) -> Path:
    """What the Lambda Python runtime provides besides the zip: boto3 and its dependencies."""
    for name in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"):
        spec = importlib.util.find_spec(name)
        if spec.submodule_search_locations:
            shutil.copytree(next(iter(spec.submodule_search_locations)), dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(spec.origin, dest / Path(spec.origin).name)
    return dest


def test_package_builds_and_its_handler_runs_from_the_zip_alone(partitions, bundle_zip, tmp_path, capsys):
    inputs, outputs = partitions
    out = tmp_path / "dist" / "cai-edge-lambda.zip"
    here = f"{sys.version_info.major}.{sys.version_info.minor}"  # the handler runs below with this interpreter
    assert main(["lambda", "package", "--bundle", str(bundle_zip), "--python-version", here, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MiB zipped" in printed and "MiB unzipped" in printed
    names = zipfile.ZipFile(out).namelist()
    assert "bundle.zip" in names and "cai_edge/scale_out/aws/handler.py" in names
    assert not any(n.startswith(("torch/", "astropy/", "boto3/", "botocore/")) for n in names)
    assert not any("/tests/" in n or n.endswith(".pyc") for n in names)
    unzipped = tmp_path / "task"
    zipfile.ZipFile(out).extractall(unzipped)
    assert sum(p.stat().st_size for p in unzipped.rglob("*") if p.is_file()) < 250 * 2**20
    runtime = _lambda_runtime_dir(tmp_path / "runtime")
    code = (
        "import json, sys\n"
        "from cai_edge.scale_out.aws.handler import handler\n"
        f"r = handler({{'input': {inputs + 'p-0004.npz'!r}, 'output': {outputs + 'from-zip/'!r}}})\n"
        "import cai_edge\n"
        "print(json.dumps({'result': r, 'cai_edge': cai_edge.__file__, 'mods': sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'astropy', 'tqdm'))}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update({"PYTHONPATH": f"{unzipped}{os.pathsep}{runtime}", "CAI_EDGE_BUNDLE": str(unzipped / "bundle.zip")})
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["result"]["status"] == "ok" and report["result"]["n"] == ROWS
    assert report["cai_edge"].startswith(str(unzipped)) and report["mods"] == []


def test_arm64_package_builds_with_its_size_checked(bundle_zip, tmp_path, capsys):
    out = tmp_path / "arm.zip"
    assert main(["lambda", "package", "--bundle", str(bundle_zip), "--arch", "arm64", "--out", str(out)]) == 0
    assert "arm64" in capsys.readouterr().out
    names = zipfile.ZipFile(out).namelist()
    assert any("aarch64" in n for n in names if n.endswith(".so")) or any("aarch64" in n for n in names)


def test_cloudformation_template_passes_cfn_lint():
    pytest.importorskip("cfnlint")
    template = Path(__file__).resolve().parents[1] / "deploy" / "template.yaml"
    run_cli = "import sys; from cfnlint.runner import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", run_cli, str(template)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _forged_npz_bytes() -> bytes:
    """An NPZ whose images header declares (10^7,5,32,32) float32 over 1 KB of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**7, 5, 32, 32)})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("images.npy", header.getvalue() + b"\0" * 1024)
        archive.writestr("magnitudes.npy", b"")
    return buffer.getvalue()


def test_same_partition_names_in_two_folders_do_not_collide_and_forged_ones_fail_on_record(aws_env):
    client = boto3.client("s3")
    client.create_bucket(Bucket="collide")
    for run in ("run-a", "run-b"):
        client.put_object(Bucket="collide", Key=f"parts/{run}/p-0002.npz", Body=_npz_bytes(2 if run == "run-a" else 3))
    client.put_object(Bucket="collide", Key="parts/run-b/forged.npz", Body=_forged_npz_bytes())
    outputs = "s3://collide/res/run1"  # no trailing slash
    client.put_object(Bucket="collide", Key="res/run10/stray.json", Body=b'{"partition": "x", "output": "y", "status": "ok"}')
    init = lambda_handler.initialize({"input": "s3://collide/parts", "output": outputs})
    items = json.loads(storage.get_bytes(init["items_uri"]))
    assert sorted(i["name"] for i in items) == ["run-a/p-0002", "run-b/forged", "run-b/p-0002"]
    results = lambda_handler.handler({"Items": items, "BatchInput": {"output": outputs}})["results"]
    assert [r["status"] for r in results] == ["ok", "failed", "ok"]
    a = _csv_rows(outputs + "/run-a/p-0002.csv")
    b = _csv_rows(outputs + "/run-b/p-0002.csv")
    assert [r["id"] for r in a] == [f"p02-{i}" for i in range(ROWS)] and [r["id"] for r in b] == [f"p03-{i}" for i in range(ROWS)]
    again = lambda_handler.handler({"Items": items, "BatchInput": {"output": outputs}})["results"]
    assert [r["status"] for r in again] == ["skipped", "failed", "skipped"]
    summary = lambda_handler.summarize({"output": outputs})
    assert summary["partitions_ok"] == 2 and summary["partitions_missing"] == []
    assert [f["partition"] for f in summary["partitions_failed"]] == ["s3://collide/parts/run-b/forged.npz"]
    assert "declares" in summary["partitions_failed"][0]["error"]
    assert summary["galaxies"] == 2 * ROWS  # nothing from res/run10/


def test_map_items_from_an_s3_listing_are_named_by_their_key_under_the_input_prefix(aws_env):
    client = boto3.client("s3")
    client.create_bucket(Bucket="listing")
    for run in ("a", "b"):
        client.put_object(Bucket="listing", Key=f"in/{run}/p.npz", Body=_npz_bytes(5))
    event = {"Items": [{"Key": "in/a/p.npz"}, {"Key": "in/b/p.npz"}],
             "BatchInput": {"output": "s3://listing/out/", "bucket": "listing", "input": "s3://listing/in/"}}
    assert [r["status"] for r in lambda_handler.handler(event)["results"]] == ["ok", "ok"]
    assert storage.exists("s3://listing/out/a/p.csv") and storage.exists("s3://listing/out/b/p.csv")


@pytest.mark.parametrize("event", [
    {"input": "/etc/hostname", "output": "s3://survey/x/"},
    {"input": "s3://survey/parts/p.npz", "output": "{tmp}/somewhere/"},
    {"input": "file:///etc/hostname", "output": "s3://survey/x/"},
    {"Items": [{"input": "/etc/passwd"}], "BatchInput": {"output": "s3://survey/x/"}},
])
def test_events_may_not_name_local_paths_in_a_lambda(aws_env, event, tmp_path, monkeypatch):
    monkeypatch.delenv("CAI_EDGE_ALLOW_LOCAL_PATHS", raising=False)
    event = json.loads(json.dumps(event).replace("{tmp}", str(tmp_path)))
    if "Items" in event:
        result = lambda_handler.handler(event)
        assert result["failed"] == 1 and "s3:// URI" in result["results"][0]["error"]
    else:
        with pytest.raises(storage.StorageError, match="s3:// URI"):
            lambda_handler.handler(event)
    assert not (tmp_path / "somewhere").exists()
    for fn in (lambda_handler.initialize, lambda_handler.summarize):
        with pytest.raises(storage.StorageError, match="s3:// URI"):
            fn({"input": str(tmp_path), "output": str(tmp_path)})


def test_package_default_python_is_the_templates_runtime():
    import yaml  # cfn-lint brings PyYAML

    from cai_edge.scale_out.aws.package import LAMBDA_PYTHON

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # CloudFormation tags
    template = yaml.load((Path(__file__).resolve().parents[1] / "deploy" / "template.yaml").read_text(), Loader=Loader)
    runtime = template["Parameters"]["PythonRuntime"]
    assert runtime["Default"] == f"python{LAMBDA_PYTHON}" and runtime["Default"] in runtime["AllowedValues"]


@pytest.mark.parametrize("make", ["missing", "fits-only"])
def test_fanout_with_nothing_to_do_is_an_error(tmp_path, capsys, make):
    source = tmp_path / "in"
    if make == "fits-only":
        source.mkdir()
        (source / "a.fits").write_bytes(b"SIMPLE  =                    T")
    assert main(["fanout", "--local", str(source), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no NPZ partitions" in err and "cai-edge partition" in err and "Traceback" not in err


# --- safety round (#21): items 16, 17, 19 ------------------------------------------------------------------------

def test_summarize_never_copies_a_path_outside_the_run(partitions, tmp_path):
    """Item 17: a metrics JSON under the output prefix naming a local file (or another bucket's key) is a failed
    partition on the record; the file's bytes never reach summary/predictions.csv."""
    inputs, outputs = partitions
    secret = tmp_path / "environ"
    secret.write_text("AWS_SECRET_ACCESS_KEY=hunter2\n")
    lambda_handler.handler({"input": inputs + "p-0001.npz", "output": outputs})
    for name, where in (("planted", str(secret)), ("elsewhere", "s3://survey/other-run/p.csv"), ("dotdot", outputs + "../x.csv")):
        metrics = {"partition": f"s3://survey/{name}.npz", "output": where, "status": "ok", "n": 1, "n_ok": 1, "n_failed": 0, "duration_ms": 1}
        storage.put_bytes(outputs + f"{name}.json", json.dumps(metrics).encode())
    summary = lambda_handler.summarize({"output": outputs})
    table = storage.get_bytes(outputs + "summary/predictions.csv").decode()
    assert "hunter2" not in table and len(_csv_rows(outputs + "summary/predictions.csv")) == ROWS
    reasons = {f["partition"]: f["error"] for f in summary["partitions_failed"]}
    assert {"s3://survey/planted.npz", "s3://survey/elsewhere.npz", "s3://survey/dotdot.npz"} <= set(reasons)
    assert all("outside the run's prefix" in reasons[f"s3://survey/{n}.npz"] for n in ("planted", "elsewhere", "dotdot"))


def test_summarize_survives_malformed_metrics_and_item_lists(partitions):
    """Item 16: metrics without n, and a malformed _items.json, are records in the summary, not exceptions."""
    inputs, outputs = partitions
    lambda_handler.handler({"input": inputs + "p-0001.npz", "output": outputs})
    storage.put_bytes(outputs + "broken.json", json.dumps({"partition": "s3://survey/broken.npz", "output": outputs + "broken.csv",
                                                           "status": "ok"}).encode())
    storage.put_bytes(outputs + "_items.json", b'{"not": "a list"}')
    summary = lambda_handler.summarize({"output": outputs})
    assert summary["partitions_ok"] == 1 and summary["galaxies"] == ROWS
    assert [f["partition"] for f in summary["partitions_failed"]] == ["s3://survey/broken.npz"]
    assert "'n'" in summary["partitions_failed"][0]["error"] and "_items.json: not a JSON list" in summary["problems"][0]


@pytest.mark.parametrize("event,field", [
    ({"images_npy": "0-d", "magnitudes_npy": "0-d"}, "images_npy"),
    ({"Items": "abc", "BatchInput": {"output": "s3://survey/x/"}}, "Items"),
    ({"input": 5, "output": "s3://survey/x/"}, "input"),
    ({"input": "s3://survey/x.npz", "output": "s3://survey/x/", "name": 7}, "name"),
    ({"images_npy": "x", "magnitudes_npy": "y", "ids": "abc"}, "images_npy"),
    ([1, 2], "JSON object"),
])
def test_malformed_events_are_clear_errors_naming_the_field(aws_env, event, field):
    """Item 16: a 0-d inline array, Items as text, a number for input → EventError naming the field, no raw Python error."""
    import base64

    if event == {"images_npy": "0-d", "magnitudes_npy": "0-d"}:
        buffer = io.BytesIO()
        np.save(buffer, np.float32(1.0))
        event = {"images_npy": base64.b64encode(buffer.getvalue()).decode(), "magnitudes_npy": base64.b64encode(buffer.getvalue()).decode()}
    with pytest.raises(CaiEdgeError) as raised:
        lambda_handler.handler(event)
    assert field in str(raised.value)
    assert not any(t in str(raised.value) for t in ("AttributeError", "TypeError", "KeyError", "unsized"))


def test_items_that_are_not_partitions_fail_alone(partitions):
    inputs, outputs = partitions
    result = lambda_handler.handler({"Items": [5, {"Key": 3}, {"input": inputs + "p-0002.npz"}], "BatchInput": {"output": outputs}})
    assert [r["status"] for r in result["results"]] == ["failed", "failed", "ok"]
    assert all("Map item" in r["error"] for r in result["results"][:2])


def test_initialize_skips_odd_keys_on_the_record_and_runs_the_rest(aws_env):
    """Item 19: keys with `..`, `//`, `summary/…` or `_items.npz` are skipped and reported; the others are items."""
    client = boto3.client("s3")
    client.create_bucket(Bucket="oddkeys")
    good = ["in/a.npz", "in/run/b.npz"]
    odd = ["in/../c.npz", "in//d.npz", "in/summary/e.npz", "in/_items.npz"]
    for key in good + odd:
        client.put_object(Bucket="oddkeys", Key=key, Body=_npz_bytes(1))
    init = lambda_handler.initialize({"input": "s3://oddkeys/in/", "output": "s3://oddkeys/out/"})
    assert init["count"] == 2 and len(init["skipped"]) == 4
    items = json.loads(storage.get_bytes(init["items_uri"]))
    assert sorted(i["name"] for i in items) == ["a", "run/b"]
    for item in items:
        assert lambda_handler.handler(item)["status"] == "ok"
    summary = lambda_handler.summarize({"output": "s3://oddkeys/out/"})
    assert summary["partitions_ok"] == 2 and len(summary["partitions_skipped"]) == 4
    assert all(s["reason"] for s in summary["partitions_skipped"])
