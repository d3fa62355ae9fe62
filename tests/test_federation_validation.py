"""Server-side validation of a hospital's returned arrays."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from fedsynth.federation.validation import reference_of, validate_update

BIG = 10**9


def model() -> OrderedDict:
    return OrderedDict(
        [
            ("enc.weight", np.ones((4, 3), dtype=np.float32)),
            ("enc.bias", np.zeros(4, dtype=np.float32)),
            ("gen.weight", np.ones((2, 2), dtype=np.float32)),
            ("steps", np.array(7, dtype=np.int64)),
        ]
    )


def test_reference_of_records_shape_and_dtype_and_can_be_restricted() -> None:
    ref = reference_of(model())
    assert list(ref) == ["enc.weight", "enc.bias", "gen.weight", "steps"]
    assert ref["enc.weight"] == ((4, 3), np.dtype(np.float32))
    assert ref["steps"] == ((), np.dtype(np.int64))
    assert list(reference_of(model(), names=["gen.weight"])) == ["gen.weight"]
    with pytest.raises(KeyError, match="nope"):
        reference_of(model(), names=["nope"])


def test_a_well_formed_update_is_accepted() -> None:
    assert validate_update(model(), reference_of(model()), hospital_id=2, max_bytes=BIG) is None


def test_no_arrays() -> None:
    assert validate_update(None, reference_of(model()), 5, BIG) == "hospital 5: sent no arrays"


def test_nan_is_rejected_naming_hospital_and_array() -> None:
    update = model()
    update["enc.bias"][1] = np.nan
    reason = validate_update(update, reference_of(model()), hospital_id=3, max_bytes=BIG)
    assert reason is not None and "\n" not in reason
    assert "hospital 3" in reason and "'enc.bias'" in reason and "1 NaN" in reason


def test_inf_is_rejected() -> None:
    update = model()
    update["gen.weight"][0, 0] = -np.inf
    reason = validate_update(update, reference_of(model()), 1, BIG)
    assert reason is not None and "hospital 1" in reason and "'gen.weight'" in reason and "1 Inf" in reason


def test_missing_and_unexpected_names() -> None:
    ref = reference_of(model())
    update = model()
    del update["enc.bias"]
    reason = validate_update(update, ref, 4, BIG)
    assert reason is not None and "hospital 4" in reason and "missing" in reason and "'enc.bias'" in reason
    update = model()
    update["backdoor"] = np.zeros(1, dtype=np.float32)
    reason = validate_update(update, ref, 4, BIG)
    assert reason is not None and "unexpected" in reason and "'backdoor'" in reason
    # a hospital returning the whole model when the phase trains only the generator
    reason = validate_update(model(), reference_of(model(), names=["gen.weight"]), 4, BIG)
    assert reason is not None and "unexpected" in reason and "'enc.weight'" in reason


def test_wrong_shape_and_wrong_dtype() -> None:
    ref = reference_of(model())
    update = model()
    update["enc.weight"] = np.ones((3, 4), dtype=np.float32)
    reason = validate_update(update, ref, 0, BIG)
    assert reason is not None and "hospital 0" in reason and "'enc.weight'" in reason and "(3, 4)" in reason
    update = model()
    update["enc.weight"] = np.ones((4, 3), dtype=np.float64)
    reason = validate_update(update, ref, 0, BIG)
    assert reason is not None and "'enc.weight'" in reason and "float64" in reason and "float32" in reason
    update = model()
    update["enc.bias"] = [0.0] * 4
    reason = validate_update(update, ref, 0, BIG)
    assert reason is not None and "'enc.bias'" in reason and "not a numpy array" in reason


def test_oversize_is_rejected() -> None:
    ref = reference_of(model())
    total = sum(a.nbytes for a in model().values())
    assert validate_update(model(), ref, 6, max_bytes=total) is None
    reason = validate_update(model(), ref, 6, max_bytes=total - 1)
    assert reason is not None and "hospital 6" in reason and f"{total} bytes" in reason and "'enc.weight'" in reason


def test_norm_bound_absolute_and_relative_to_the_sent_model() -> None:
    ref = reference_of(model())
    # the float arrays hold 12 + 0 + 4 ones: norm 4 (the int array is not counted)
    assert validate_update(model(), ref, 1, BIG, norm_bound=4.0) is None
    reason = validate_update(model(), ref, 1, BIG, norm_bound=3.9)
    assert reason is not None and "hospital 1" in reason and "norm 4" in reason and "'enc.weight'" in reason

    sent = model()
    scaled = model()
    scaled["gen.weight"] = sent["gen.weight"] + 50.0  # a scaled model-replacement step
    assert validate_update(model(), ref, 1, BIG, norm_bound=1.0, relative_to=sent) is None
    reason = validate_update(scaled, ref, 1, BIG, norm_bound=1.0, relative_to=sent)
    assert reason is not None and "change" in reason and "norm 100" in reason and "'gen.weight'" in reason
