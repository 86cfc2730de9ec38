"""bench/machine.py: which int8 instructions a result's machine had."""

from bench.machine import int8_instructions

X86_VNNI = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16 avx512_vnni
"""
X86_AVX2 = "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd crc32 atomics asimddp i8mm\n"


def test_vnni_is_named_and_plain_avx2_gives_none() -> None:
    assert int8_instructions(X86_VNNI) == ["avx512_vnni"]
    assert int8_instructions(X86_AVX2) == []


def test_arms_dot_product_and_matrix_features_are_named() -> None:
    assert int8_instructions(ARM) == ["asimddp", "i8mm"]


def test_no_cpuinfo_names_nothing() -> None:
    assert int8_instructions("") == []
