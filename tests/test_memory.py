"""Memory budgets, chunk sizes and out-of-memory handling (``magec.memory``), in prepare and through the CLI."""

from __future__ import annotations

import pytest
import torch

import magec.memory as memory
from fakes import ToneDescriber
from magec.cli.main import main
from magec.errors import MagecError
from magec.generators.dcgan import DCGANFace
from magec.generators.stylegan2 import StyleGAN2Config
from magec.prepare import AUTO_BATCH_CAP, sample_and_describe

GiB = 2**30


def test_chunk_size_from_budget_cap_and_override():
    c = memory.chunk_size(GiB, "cpu", budget=10 * GiB)
    assert (c.size, c.auto) == (10, True) and str(c).startswith("chunks of 10 (auto, ")
    assert memory.chunk_size(GiB, "cpu", budget=10 * GiB, cap=4).size == 4
    assert memory.chunk_size(3 * GiB, "cpu", budget=GiB).size == 1  # never below one image
    manual = memory.chunk_size(GiB, "cpu", budget=GiB, override=7)
    assert (manual.size, manual.auto, str(manual)) == (7, False, "chunks of 7 (--batch-size)")
    with pytest.raises(MagecError, match="--batch-size 0"):
        memory.chunk_size(GiB, "cpu", override=0)


def test_cpu_budget_is_a_capped_share_of_available_ram(monkeypatch):
    monkeypatch.setattr(memory, "available_ram", lambda: 64 * GiB)
    assert memory.memory_budget("cpu").bytes == memory.CPU_CAP_BYTES  # half of 64 GiB, capped
    assert memory.memory_budget("cpu", share=1.0).bytes == 64 * GiB
    monkeypatch.setattr(memory, "available_ram", lambda: 2 * GiB)
    assert memory.memory_budget("cpu").bytes == GiB
    monkeypatch.setattr(memory, "available_ram", lambda: None)
    assert memory.memory_budget("cpu").bytes == memory.FALLBACK_BYTES


def test_available_ram_reads_the_machine():
    ram = memory.available_ram()
    assert ram is None or 2**26 < ram < 2**50


def test_per_image_costs_grow_with_resolution_and_channels():
    big = StyleGAN2Config(resolution=1024)
    # config-f at 1024: 32 maps at 1024 px are the widest activation (128 MiB), not 512 maps at 32 px
    gen = type("G", (), {"config": big, "resolution": 1024})()
    assert memory.widest_activation_bytes(gen) == 4 * 32 * 1024 * 1024
    small = type("G", (), {"config": StyleGAN2Config(resolution=256), "resolution": 256})()
    assert memory.synthesis_bytes(gen) == 4 * memory.synthesis_bytes(small)  # maps halve as the side doubles
    assert memory.inversion_bytes(gen) > memory.synthesis_bytes(gen)
    assert memory.widest_activation_bytes(type("D", (), {"resolution": 64})()) == 4 * 64 * 64 * 64


def _oom_above(limit: int, kind: str = "cuda"):
    def fail(n: int) -> None:
        if n > limit:
            if kind == "cuda":
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 31.25 GiB")
            if kind == "runtime":
                raise RuntimeError("CUDA error: out of memory")
            raise MemoryError()

    return fail


@pytest.mark.parametrize("kind", ["cuda", "runtime", "memory"])
def test_map_chunks_halves_on_out_of_memory_and_keeps_the_order(kind):
    calls = []
    fail = _oom_above(3, kind)

    def fn(start: int, stop: int) -> list[int]:
        calls.append(stop - start)
        fail(stop - start)
        return list(range(start, stop))

    parts = memory.map_chunks(fn, 20, 16, resolution=1024)
    assert [i for p in parts for i in p] == list(range(20))
    assert calls[:3] == [16, 8, 4] and max(calls[3:]) <= 2  # halved until it fits, then kept


def test_map_chunks_gives_one_line_when_one_image_does_not_fit():
    def fn(start: int, stop: int) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    with pytest.raises(MagecError) as info:
        memory.map_chunks(fn, 5, 4, device="cpu", resolution=1024)
    assert str(info.value) == "out of memory at batch 1 of 1024-px images on cpu: lower --batch-size"


def test_map_chunks_leaves_other_errors_alone():
    def fn(start: int, stop: int) -> None:
        raise RuntimeError("shapes do not match")

    with pytest.raises(RuntimeError, match="shapes"):
        memory.map_chunks(fn, 5, 4)


def test_check_fits_refuses_an_obviously_too_large_batch():
    budget = memory.Budget(10 * GiB, "cuda:0", "10.0 GiB free on cuda:0")
    memory.check_fits(8, GiB, "cpu", 1024, budget=budget)
    with pytest.raises(MagecError) as info:
        memory.check_fits(16, GiB, "cpu", 1024, budget=budget)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("--batch-size 16: 16 1024-px images need at least 16.0 GiB")
    assert str(info.value).endswith("lower --batch-size")


@pytest.mark.slow
def test_prepare_results_do_not_depend_on_the_chunks(monkeypatch):
    torch.manual_seed(0)
    gen, describer = DCGANFace.from_checkpoint(), ToneDescriber()
    explicit = sample_and_describe(gen, describer, 60, seed=3, batch_size=AUTO_BATCH_CAP, pca_limit=40, progress=False)
    monkeypatch.setattr(memory, "CPU_CAP_BYTES", 7 * memory.synthesis_bytes(gen))  # auto: chunks of 7
    assert memory.chunk_size(memory.synthesis_bytes(gen), "cpu").size == 7
    auto = sample_and_describe(gen, describer, 60, seed=3, batch_size=None, pca_limit=40, progress=False)
    for a, b in zip(explicit, auto):  # the same images and descriptors up to float rounding across batch sizes
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_prepare_splits_on_out_of_memory_with_the_same_results(monkeypatch):
    gen, describer = DCGANFace.from_checkpoint(), ToneDescriber()
    expected = sample_and_describe(gen, describer, 30, seed=1, batch_size=30, progress=False)
    original = DCGANFace.synthesize
    sizes = []

    def synthesize(self, latents, *args, **kwargs):
        sizes.append(len(latents))
        if len(latents) > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 31.25 GiB")
        return original(self, latents, *args, **kwargs)

    monkeypatch.setattr(DCGANFace, "synthesize", synthesize)
    got = sample_and_describe(gen, describer, 30, seed=1, batch_size=30, progress=False)
    assert sizes[:4] == [30, 15, 7, 3] and all(s <= 4 for s in sizes[3:])
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-6)  # float rounding across chunk sizes
    torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-6)


PREPARE = ["prepare", "--describer", "dlib-age-gender", "--samples", "50", "--no-styleflow", "--fixed-box-labels"]
PREPARE += ["--no-encoder", "--slider-samples", "0"]  # the sliders are not what these tests are about


@pytest.mark.slow
def test_cli_prepare_retries_then_reports_one_line(monkeypatch, tmp_path, capsys):
    original = DCGANFace.synthesize
    sizes = []

    def tight(self, latents, *args, **kwargs):  # a device that holds 8 images at once
        sizes.append(len(latents))
        if len(latents) > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 31.25 GiB")
        return original(self, latents, *args, **kwargs)

    monkeypatch.setattr(DCGANFace, "synthesize", tight)
    assert main([*PREPARE, "--out", str(tmp_path / "pack"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "sample + describe: chunks of 50 (auto," in err and "retrying in chunks of 25" in err
    assert sizes[:3] == [50, 25, 12] and (tmp_path / "pack" / "manifest.json").is_file()

    def never(self, latents, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 31.25 GiB")

    monkeypatch.setattr(DCGANFace, "synthesize", never)
    assert main([*PREPARE, "--out", str(tmp_path / "pack2"), "--device", "cpu", "--batch-size", "4"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == "magec: error: out of memory at batch 1 of 64-px images on cpu: lower --batch-size"
    assert "Traceback" not in "\n".join(lines) and not (tmp_path / "pack2" / "manifest.json").exists()


@pytest.mark.parametrize(
    "exc, line",
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 31.25 GiB"), "out of GPU memory"),
        (RuntimeError("CUDA error: out of memory"), "out of GPU memory"),
        (
            RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
            "out of memory",
        ),
        (MemoryError(), "out of memory"),
    ],
)
def test_cli_turns_any_out_of_memory_into_one_line(monkeypatch, tmp_path, capsys, exc, line):
    import magec.prepare

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(magec.prepare, "prepare_pack", boom)
    assert main([*PREPARE, "--out", str(tmp_path / "pack"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"magec: error: {line}: lower --batch-size (or use a smaller image or model)"
    assert "bug" not in err[-1]


def test_an_inversion_batch_that_runs_out_of_memory_is_not_split_but_named(tone_pipeline, tmp_path, monkeypatch):
    """Inversion results depend on the batch, so an out-of-memory fails the batch with the option to lower."""
    import magec.inversion.optimizer as optimizer
    from magec.inversion.config import method_config
    from magec.inversion.folder import FolderJob, FramingOptions, Item, invert_batch
    from magec.io.images import save_png

    gen = tone_pipeline.generator
    items = []
    with torch.no_grad():
        for k, image in enumerate(gen.synthesize(gen.sample_latents(2, seed=5))):
            items.append(Item(f"g{k}", str(save_png(image, tmp_path / f"g{k}.png"))))

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 22.60 GiB")

    monkeypatch.setattr(optimizer, "invert", oom)
    job = FolderJob(str(tmp_path / "out"), "no-magec", method_config("no-magec", 0.02), 0, FramingOptions(), {}, {})
    outcome = invert_batch(tone_pipeline, job, items)
    assert outcome.done == []
    assert outcome.failed == {
        f"g{k}": "out of memory at batch 2 of 64-px images on cpu: lower --batch-size" for k in range(2)
    }


def test_an_inversion_batch_that_cannot_fit_is_refused_up_front(monkeypatch):
    gen = type("G", (), {"config": StyleGAN2Config(resolution=1024), "resolution": 1024})()
    monkeypatch.setattr(memory, "available_ram", lambda: 16 * GiB)
    memory.check_inversion_batch(gen, 8, "cpu")  # 8 x 0.75 GiB at the leanest step: may fit in 16 GiB
    with pytest.raises(MagecError) as info:
        memory.check_inversion_batch(gen, 64, "cpu")
    assert str(info.value) == (
        "--batch-size 64: 64 1024-px images need at least 48.0 GiB on cpu, which has 16.0 GiB RAM available: "
        "lower --batch-size"
    )


def _stylegan2(resolution: int):
    return type(
        "G", (), {"config": StyleGAN2Config(resolution=resolution), "resolution": resolution, "device": "cpu"}
    )()


def test_train_encoder_sizes_its_batch_from_memory_and_resolution(dcgan, monkeypatch):
    """Issue 19: 32 pairs of 1024-px images per step do not fit a small machine; the embedded 64-px default keeps 32."""
    from magec.encoders.training import EncoderTrainingConfig, pair_bytes, training_batch

    monkeypatch.setattr(memory, "available_ram", lambda: 8 * GiB)  # a small machine: a 4 GiB budget on the CPU
    assert training_batch(dcgan).size == EncoderTrainingConfig.batch_size == 32
    sizes = {r: training_batch(_stylegan2(r)) for r in (256, 512, 1024)}
    assert all(c.auto and "8.0 GiB RAM available" in str(c) for c in sizes.values())  # what it chose, and why
    assert 32 > sizes[256].size > sizes[512].size >= sizes[1024].size == 1
    for r, chosen in sizes.items():  # as many pairs as the budget holds
        assert chosen.size * pair_bytes(_stylegan2(r)) <= 4 * GiB < (chosen.size + 1) * pair_bytes(_stylegan2(r))
    manual = training_batch(_stylegan2(1024), override=32)  # --batch-size overrides
    assert manual.size == 32 and not manual.auto
