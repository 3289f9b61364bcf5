import json
import pickle

import numpy as np

from benchmarks import gpu_check


def test_dry_run_without_cuda_runs_every_step_and_writes_results(tmp_path):
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["dry_run"] is True
    assert result["equivalence"]["status"] == "passed"
    assert [s["case"] for s in result["sync"]][:2] == ["dag", "discrete"]
    assert set(result["speed"]) == {"float32", "bfloat16"}
    for precision, sp in result["speed"].items():
        speed = json.loads((tmp_path / sp["folder"] / "results.json").read_text())
        assert speed["precision"] == precision and speed["rows"]
        assert any(t["baseline"] == "paper_dense" for t in sp["targets"])
    (row,) = result["throughput"]
    assert row["model"] == "tiny_static" and row["images_per_s"] > 0
    assert "torchvision" in json.dumps(result["data_path"])
    sparsified = result["sparsified"]
    assert {r["network"] for r in sparsified["compiled"]} == {"resnet_cifar", "transformer"}
    assert all(r["speedup_vs_dense"] > 0 for r in sparsified["compiled"])
    assert (tmp_path / sparsified["folder"] / "results.md").exists()
    text = (tmp_path / "results.md").read_text()
    assert "CPU dry run" in text and "throughput tiny_static" in text
    assert "sparsified resnet_cifar, 10% of weights, batch 1" in text


def test_a_check_split_over_calls_keeps_every_step(tmp_path):
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path), "--steps", "sparsified"]) == 0
    first = json.loads((tmp_path / "results.json").read_text())
    assert "sparsified" in first and "speed" not in first and "cuda_tests" not in first
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path), "--steps", "data"]) == 0
    both = json.loads((tmp_path / "results.json").read_text())
    assert both["sparsified"] == first["sparsified"] and "torchvision" in json.dumps(both)
    text = (tmp_path / "results.md").read_text()
    assert "sparsified resnet_cifar" in text and "CIFAR-10 data path" in text
    assert "CUDA tests" not in text


def test_written_cifar_folder_has_the_python_cifar10_layout(tmp_path):
    folder = gpu_check.write_cifar_folder(tmp_path, per_batch=5)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["batches.meta", *[f"data_batch_{i}" for i in range(1, 6)], "test_batch"]
    entry = pickle.loads((folder / "data_batch_3").read_bytes())
    assert entry["data"].shape == (5, 3072) and entry["data"].dtype == np.uint8
    assert all(0 <= y < 10 for y in entry["labels"]) and len(entry["labels"]) == 5
    assert len(pickle.loads((folder / "batches.meta").read_bytes())["label_names"]) == 10
