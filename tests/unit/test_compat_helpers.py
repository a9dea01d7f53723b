"""The compatibility tests' filter of torch's own warnings drops those and nothing else."""

from __future__ import annotations

from tests.compat._helpers import without_torch_warnings

NUMPY_WARNING = (
    "/venv/lib/python3.11/site-packages/torch/_subclasses/functional_tensor.py:368: "
    "UserWarning: Failed to initialize NumPy: No module named 'numpy' (Triggered internally "
    "at /__w/pytorch/pytorch/torch/csrc/utils/tensor_numpy.cpp:84.)\n"
    '  cpu = _conversion_method_template(device=torch.device("cpu"))\n'
)


def test_an_unprefixed_warning_and_its_source_line_go() -> None:
    assert without_torch_warnings(f"a\n{NUMPY_WARNING}b\n  indented\n") == "a\nb\n  indented\n"


def test_a_prefixed_warning_goes_even_split_by_another_rank() -> None:
    header, source = NUMPY_WARNING.splitlines()
    text = f"[default0]:{header}\n[default1]:x\n[default0]:{source}\n[default0]:  kept\n"
    assert without_torch_warnings(text) == "[default1]:x\n[default0]:  kept\n"


def test_other_warnings_stay() -> None:
    text = "/home/me/train.py:3: UserWarning: mine\n  warnings.warn('mine')\n"
    assert without_torch_warnings(text) == text
