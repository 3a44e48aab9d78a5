"""`make device-check` runs where no GPU is, at toy sizes (`--device cpu --quick`): every section
runs its code and passes, so that the script is ready when a GPU is at hand."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.py"


@pytest.mark.slow
def test_the_device_check_runs_every_section_on_the_cpu_and_writes_its_json_and_table(tmp_path, cifar_jpg_root):
    out = tmp_path / "device_check.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out),
         "--cifar-root", str(cifar_jpg_root), "--work", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    sections = results["sections"]
    assert list(sections) == ["cuda_tests", "stage3", "deepest_under_16gib", "fp16_adjoint", "random_replay", "fit",
                              "imagenet_decode"]  # fmt: skip
    assert all(section["ok"] for section in sections.values())
    assert "skipped" in sections["cuda_tests"]["summary"]  # collected and skipped here: no CUDA device
    stage3 = {(row["depth"], row["gradient"], row["scheme"]): row for row in sections["stage3"]["rows"]}
    deepest = max(depth for depth, _, _ in stage3)
    assert stage3[deepest, "adjoint", "euler"]["peak_bytes"] < stage3[deepest, "backprop", "euler"]["peak_bytes"]
    reach = {(row["gradient"], row["scheme"]): row["deepest"] for row in sections["deepest_under_16gib"]["rows"]}
    assert reach["adjoint", "euler"] > reach["backprop", "euler"]
    assert sections["random_replay"]["largest_difference"] == 0.0
    assert sections["fit"]["steps"] == 3 and 0 <= sections["fit"]["data_wait_share"] < 1
    assert all(rate > 0 for rate in sections["imagenet_decode"]["images_per_second"].values())
    assert "device check on CPU (quick)" in done.stdout and "fp16_adjoint           ok" in done.stdout


@pytest.mark.parametrize(
    ("error", "counted"),
    [
        (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), True),
        (RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR, CUDA out of memory"), True),
        (RuntimeError("Expected all tensors to be on the same device"), False),
    ],
)
def test_an_allocation_failure_of_cublas_or_cudnn_counts_as_out_of_memory_other_errors_stop_the_check(
    monkeypatch, error, counted
):
    """cuBLAS and cuDNN report a full GPU as RuntimeErrors, not torch.OutOfMemoryError: the search for the
    deepest stack that fits counts them as "does not fit"; any other error is a bug and is raised."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import device_check
    finally:
        sys.path.remove(str(SCRIPT.parent))

    def fails(*args, **kwargs):
        raise error

    monkeypatch.setattr(device_check, "stage3", fails)
    sizes = device_check.Sizes(quick=True)
    if counted:
        assert device_check.measure_step(sizes, 2, "adjoint", "euler", "cpu") == {"oom": True}
    else:
        with pytest.raises(RuntimeError, match="same device"):
            device_check.measure_step(sizes, 2, "adjoint", "euler", "cpu")
