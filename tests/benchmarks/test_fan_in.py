import json

from benchmarks.__main__ import main


def test_fan_in_smoke_times_every_method_on_both_parts(tmp_path):
    assert main(["fan-in", "--smoke", "--repeats", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    methods = {(r["part"], r["method"]) for r in result["rows"]}
    assert methods == {
        ("layers", "dense"),
        ("layers", "csr"),
        ("layers", "ell"),
        ("models", "dense"),
        ("models", "compiled_any"),
        ("models", "compiled_constant"),
    }
    assert {r["rows"] for r in result["rows"] if r["part"] == "layers"} == {1, 16}
    for r in result["rows"]:
        assert r["median_us"] > 0 and r["speedup_vs_dense"] > 0
    assert result["machine"]["cpu"]
    assert "| part | case | density | rows |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "time_vs_rows.png").stat().st_size > 0
