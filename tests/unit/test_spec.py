"""Spec validation: every mistake is one clear line naming the valid choices."""

import pytest

from embedperf.spec import SpecError, Timing, build, load_suite, model_choice


def choice():
    return model_choice("sentence-transformers/all-MiniLM-L6-v2", "package")


def test_defaults_choose_the_package_source_for_minilm_and_twin_otherwise():
    assert model_choice("all-MiniLM-L6-v2", None).source == "package"
    assert model_choice("google/embeddinggemma-300m", None).source == "twin"


@pytest.mark.parametrize("kwargs, message", [
    ({"runtimes": "torch,bogus"}, "unknown runtime 'bogus'; choose from: torch"),
    ({"batch": "1,x"}, "batch must be positive integers"),
    ({"batch": "0"}, "batch must be positive integers"),
    ({"seq": "600"}, "seq 600 is longer than sentence-transformers/all-MiniLM-L6-v2 allows (512 positions)"),
    ({"seq": "2"}, "leaves no room"),
    ({"precision": "fp8"}, "unknown precision 'fp8'; choose from: fp32, fp16, bf16"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"fault": "crash"}, "--fault is only for the null runners"),
])
def test_bad_specs_are_refused_with_the_choices(kwargs, message):
    args = {"runtimes": "torch", "batch": "1", "seq": "16", **kwargs}
    fault = args.pop("fault", None)
    with pytest.raises(SpecError, match=None) as err:
        build([choice()], args["runtimes"], args["batch"], args["seq"], args.get("device", "cpu"),
              args.get("precision", "fp32"), fault=fault)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_model_and_source_errors():
    with pytest.raises(SpecError, match="unknown model 'gpt2'; choose from: sentence-transformers/all-MiniLM-L6-v2"):
        model_choice("gpt2", None)
    with pytest.raises(SpecError, match="unknown source 'ftp'; choose from: hub, local, package, twin, tiny"):
        model_choice("bge-m3", "ftp")
    with pytest.raises(SpecError, match="source 'package' cannot provide BAAI/bge-m3"):
        model_choice("bge-m3", "package")
    with pytest.raises(SpecError, match="--source local needs --path"):
        model_choice("bge-m3", "local")
    with pytest.raises(SpecError, match="must be one of: 512, 256, 128"):
        model_choice("google/embeddinggemma-300m", "twin", truncate_dim=300)


def test_all_expands_to_every_real_runtime_and_dedups():
    spec = build([choice()], "torch,all", "8,1,8", "16")
    assert spec.runtimes[0] == "torch" and "null" not in spec.runtimes and len(spec.runtimes) == 6
    assert spec.batch == [1, 8]


def test_timing_must_be_consistent():
    with pytest.raises(SpecError, match="max_calls >= min_calls"):
        build([choice()], "torch", "1", "16", timing=Timing(min_calls=10, max_calls=5))


def test_suite_files(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("model: google/embeddinggemma-300m\nsource: tiny\nruntimes: [torch, null]\nbatch: [1, 2]\n"
                    "seq: [24]\ntiming: {warmup: 1}\n")
    (spec,) = load_suite(good)
    assert spec.models[0].source == "tiny" and spec.batch == [1, 2] and spec.timing.warmup == 1
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("model: bge-m3\nruntimez: [torch]\nbatch: 1\nseq: 16\n")
    with pytest.raises(SpecError, match="unknown key\\(s\\) runtimez; valid keys:"):
        load_suite(bad_key)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_suite(broken)
    with pytest.raises(SpecError, match="does not exist"):
        load_suite(tmp_path / "missing.yaml")


def test_the_quick_suite_is_valid():
    from conftest import REPO

    (spec,) = load_suite(REPO / "suites" / "quick.yaml")
    assert spec.models[0].name == "sentence-transformers/all-MiniLM-L6-v2" and spec.models[0].source == "package"
    assert spec.batch == [1, 8] and spec.seq == [16, 128]
