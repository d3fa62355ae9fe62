"""Sealing of ring payloads: only the pinned receiver opens them, only the pinned sender makes them,
and any change, replay across rounds, misdirection or substitution is refused with SealError."""

from __future__ import annotations

import base64
import os
import random
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedsynth.consortium import (
    ExistingKeyFileError,
    SealError,
    create_ring_key,
    load_ring_private,
    load_ring_public,
    open_sealed,
    ring_public_from_text,
    ring_public_text,
    seal,
)
from fedsynth.errors import FedsynthError

CONTEXT = b"round=3"
#: Header layout: version 1, sender 4, receiver 4, ephemeral key 32, context length 4, context.
HEADER = 1 + 4 + 4 + 32 + 4 + len(CONTEXT)
NONCE = 12
TAG = 16


@pytest.fixture(scope="module")
def keys() -> dict[int, X25519PrivateKey]:
    """Three hospitals' ring keys, by hospital id."""
    return {i: X25519PrivateKey.generate() for i in range(3)}


def _seal(keys, payload: bytes, *, sender: int = 0, receiver: int = 1, context: bytes = CONTEXT) -> bytes:
    return seal(
        payload,
        sender_id=sender,
        sender_key=keys[sender],
        receiver_id=receiver,
        receiver_public=keys[receiver].public_key(),
        context=context,
    )


def _open(keys, blob: bytes, *, sender: int = 0, receiver: int = 1, context: bytes = CONTEXT, **swap) -> bytes:
    return open_sealed(
        blob,
        receiver_id=receiver,
        receiver_key=swap.get("receiver_key", keys[receiver]),
        sender_id=sender,
        sender_public=swap.get("sender_public", keys[sender].public_key()),
        context=context,
    )


@pytest.mark.parametrize("size", [0, 37, 1 << 20])
def test_round_trip(keys, size: int) -> None:
    payload = os.urandom(size)
    blob = _seal(keys, payload)
    assert len(blob) == HEADER + NONCE + size + TAG
    assert _open(keys, blob) == payload
    if size:
        assert payload not in blob  # the relay sees ciphertext only


def _bit_flip_positions(length: int) -> list[int]:
    """Positions in every field of the header, in the nonce and in the ciphertext and its tag,
    plus a seeded random sample over the whole blob."""
    header = [0, 1, 4, 5, 8, 9, 24, 40, 41, 44, 45, HEADER - 1]
    nonce = [HEADER, HEADER + 5, HEADER + NONCE - 1]
    body = HEADER + NONCE
    ciphertext = [body, body + 20, length - TAG - 1, length - TAG, length - 1]
    sample = random.Random(7).sample(range(length), 12)
    return sorted(set(header + nonce + ciphertext + sample))


def test_flipping_any_single_bit_is_detected(keys) -> None:
    payload = os.urandom(64)
    blob = _seal(keys, payload)
    positions = _bit_flip_positions(len(blob))
    assert min(positions) == 0 and max(positions) == len(blob) - 1
    assert any(HEADER <= p < HEADER + NONCE for p in positions)  # nonce covered
    assert any(HEADER + NONCE <= p < len(blob) - TAG for p in positions)  # ciphertext covered
    assert any(p >= len(blob) - TAG for p in positions)  # tag covered
    for position in positions:
        for bit in (0, 3, 7):
            tampered = bytearray(blob)
            tampered[position] ^= 1 << bit
            with pytest.raises(SealError):
                _open(keys, bytes(tampered))
    assert _open(keys, blob) == payload  # the untouched blob still opens


def test_truncated_or_extended_blobs_are_refused(keys) -> None:
    blob = _seal(keys, b"weights")
    for bad in (b"", blob[:10], blob[:HEADER], blob[: HEADER + NONCE + TAG - 1], blob[:-1], blob + b"\x00"):
        with pytest.raises(SealError):
            _open(keys, bad)


def test_a_blob_for_receiver_2_does_not_open_at_receiver_1(keys) -> None:
    blob = _seal(keys, b"model for hospital 2", receiver=2)
    assert _open(keys, blob, receiver=2) == b"model for hospital 2"
    with pytest.raises(SealError, match="for receiver 2"):
        _open(keys, blob, receiver=1)
    with pytest.raises(SealError, match="authentication failed"):  # right header, wrong key
        _open(keys, blob, receiver=2, receiver_key=keys[1])


def test_a_blob_cannot_be_passed_off_as_from_another_sender(keys) -> None:
    blob = _seal(keys, b"model from hospital 0")
    with pytest.raises(SealError, match="from sender 0, expected sender 2"):
        _open(keys, blob, sender=2)
    with pytest.raises(SealError, match="authentication failed"):
        _open(keys, blob, sender_public=keys[2].public_key())


def test_a_blob_from_another_round_is_refused(keys) -> None:
    blob = _seal(keys, b"round 3 model", context=b"round=3")
    assert _open(keys, blob, context=b"round=3") == b"round 3 model"
    with pytest.raises(SealError, match="another context"):
        _open(keys, blob, context=b"round=4")


def test_a_third_hospital_cannot_impersonate_sender_0(keys) -> None:
    # Hospital 2 holds a valid ring key and writes sender id 0 into the header.
    forged = seal(
        b"poisoned model",
        sender_id=0,
        sender_key=keys[2],
        receiver_id=1,
        receiver_public=keys[1].public_key(),
        context=CONTEXT,
    )
    with pytest.raises(SealError, match="authentication failed"):
        _open(keys, forged, sender=0)
    # Control: the same blob opens under hospital 2's key, so the static-static secret made the difference.
    assert _open(keys, forged, sender=0, sender_public=keys[2].public_key()) == b"poisoned model"


def test_two_seals_of_the_same_payload_differ(keys) -> None:
    first, second = _seal(keys, b"same payload"), _seal(keys, b"same payload")
    assert first != second
    ephemeral = slice(9, 41)
    nonce = slice(HEADER, HEADER + NONCE)
    assert first[ephemeral] != second[ephemeral]
    assert first[nonce] != second[nonce]
    assert _open(keys, first) == _open(keys, second) == b"same payload"


def test_seal_errors_carry_no_key_material(keys) -> None:
    blob = _seal(keys, b"x")
    secrets = [ring_public_text(k.public_key()) for k in keys.values()]
    secrets += [
        base64.b64encode(
            k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        ).decode()
        for k in keys.values()
    ]
    messages = []
    for attempt in (
        lambda: _open(keys, blob, sender_public=keys[2].public_key()),
        lambda: _open(keys, blob, receiver=2),
        lambda: _open(keys, blob[:-1]),
        lambda: _open(keys, blob, context=b"round=9"),
    ):
        with pytest.raises(SealError) as caught:
            attempt()
        messages.append(str(caught.value))
    assert all(m and not any(s in m for s in secrets) for m in messages)
    assert issubclass(SealError, FedsynthError)


def test_ids_out_of_range_are_refused(keys) -> None:
    for bad in (-1, 2**32, True):
        with pytest.raises(SealError, match="sender id"):
            seal(
                b"", sender_id=bad, sender_key=keys[0], receiver_id=1, receiver_public=keys[1].public_key(), context=b""
            )


# --- ring key files and pinned public text ------------------------------------------------------


def test_ring_key_files(tmp_path: Path, keys) -> None:
    ring = create_ring_key(tmp_path / "site")
    assert stat.S_IMODE(ring.private_path.stat().st_mode) == 0o600
    private = load_ring_private(ring.private_path)
    assert ring_public_text(private.public_key()) == ring.public_path.read_text().strip() == ring.public_text
    assert len(base64.b64decode(ring.public_text)) == 32
    pinned = load_ring_public(ring.public_path)
    blob = seal(b"hello", sender_id=0, sender_key=keys[0], receiver_id=1, receiver_public=pinned, context=b"c")
    assert (
        open_sealed(
            blob, receiver_id=1, receiver_key=private, sender_id=0, sender_public=keys[0].public_key(), context=b"c"
        )
        == b"hello"
    )
    before = ring.private_path.read_bytes()
    with pytest.raises(ExistingKeyFileError, match=str(ring.private_path)):
        create_ring_key(tmp_path / "site")
    assert ring.private_path.read_bytes() == before


def test_ring_public_from_text_accepts_the_pinned_form_with_whitespace(keys) -> None:
    text = ring_public_text(keys[1].public_key())
    parsed = ring_public_from_text(f"  {text}\n")
    assert ring_public_text(parsed) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("not base64 at all!", "not base64"),
        (base64.b64encode(bytes(31)).decode(), "decodes to 31 bytes, expected 32"),
        (base64.b64encode(bytes(range(1, 34))).decode(), "decodes to 33 bytes, expected 32"),
        ("00" * 32, "decodes to 48 bytes"),  # hex is not the pinned form
        (base64.b64encode(bytes(32)).decode(), "low-order point"),
    ],
)
def test_ring_public_from_text_rejects_malformed_text(text: str, message: str) -> None:
    with pytest.raises(FedsynthError, match=message):
        ring_public_from_text(text)


def test_load_ring_public_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "ring.pub"
    bad.write_text("garbage\n")
    with pytest.raises(FedsynthError, match="ring.pub"):
        load_ring_public(bad)
