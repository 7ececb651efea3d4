import base64
import secrets

import pytest

from ximilar_portal.lib.crypto import (
    CryptoError,
    DecryptionError,
    KeyRing,
    KeyRingError,
    generate_key_spec,
    last4,
)

TOKEN = "canary" + secrets.token_hex(17)
BINDING = "credential:team:42"


def b64_key(size=32, urlsafe=False):
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(secrets.token_bytes(size)).decode()


def spec(*key_ids):
    return ",".join(generate_key_spec(key_id) for key_id in key_ids)


def flip_char(value, index):
    replacement = "A" if value[index] != "A" else "B"
    return value[:index] + replacement + value[index + 1 :]


def test_it_round_trips():
    ring = KeyRing.parse(spec("k1"))
    value = ring.encrypt(TOKEN, bound_to=BINDING)
    assert value.startswith("enc:aesgcm:k1:")
    assert TOKEN not in value
    assert ring.decrypt(value, bound_to=BINDING) == TOKEN


def test_it_round_trips_unicode_and_empty_text():
    ring = KeyRing.parse(spec("k1"))
    for text in ("", "žluťoučký kůň 🐴"):
        assert ring.decrypt(ring.encrypt(text, bound_to=BINDING), bound_to=BINDING) == text


def test_it_uses_a_fresh_nonce_every_time():
    ring = KeyRing.parse(spec("k1"))
    assert ring.encrypt(TOKEN, bound_to=BINDING) != ring.encrypt(TOKEN, bound_to=BINDING)


def test_it_decrypts_with_each_key_id():
    old, new = generate_key_spec("old"), generate_key_spec("new")
    old_value = KeyRing.parse(old).encrypt(TOKEN, bound_to=BINDING)
    new_value = KeyRing.parse(new).encrypt(TOKEN, bound_to=BINDING)
    ring = KeyRing.parse(f"{new},{old}")
    assert ring.primary_id == "new"
    assert ring.key_ids == ["new", "old"]
    assert ring.key_id_of(old_value) == "old"
    assert ring.decrypt(old_value, bound_to=BINDING) == TOKEN
    assert ring.decrypt(new_value, bound_to=BINDING) == TOKEN


def test_it_accepts_standard_and_urlsafe_base64_without_padding():
    ring = KeyRing.parse(f" a:{b64_key()} , b:{b64_key(urlsafe=True).rstrip('=')} ,")
    assert ring.key_ids == ["a", "b"]


def test_it_refuses_another_binding():
    ring = KeyRing.parse(spec("k1"))
    value = ring.encrypt(TOKEN, bound_to="credential:team:42")
    with pytest.raises(DecryptionError):
        ring.decrypt(value, bound_to="credential:team:43")


def test_it_refuses_an_empty_binding():
    ring = KeyRing.parse(spec("k1"))
    with pytest.raises(CryptoError):
        ring.encrypt(TOKEN, bound_to="")


@pytest.mark.parametrize("index", [len("enc:aesgcm:k1:") + 2, 30, -3])
def test_it_refuses_a_tampered_value(index):
    ring = KeyRing.parse(spec("k1"))
    value = ring.encrypt(TOKEN, bound_to=BINDING)
    with pytest.raises(DecryptionError) as error:
        ring.decrypt(flip_char(value, index), bound_to=BINDING)
    assert TOKEN not in str(error.value)


def test_it_refuses_an_unknown_key_id():
    value = KeyRing.parse(spec("gone")).encrypt(TOKEN, bound_to=BINDING)
    with pytest.raises(DecryptionError, match="gone"):
        KeyRing.parse(spec("k1")).decrypt(value, bound_to=BINDING)


def test_it_refuses_the_same_key_id_with_another_key():
    value = KeyRing.parse(spec("k1")).encrypt(TOKEN, bound_to=BINDING)
    with pytest.raises(DecryptionError):
        KeyRing.parse(spec("k1")).decrypt(value, bound_to=BINDING)


@pytest.mark.parametrize(
    "value",
    [
        TOKEN,  # a plaintext token stored by mistake is never handed back
        "",
        "enc:aesgcm:k1",
        "enc:fernet:k1:abcd",
        "enc:aesgcm:k1:AAAA",
        "enc:aesgcm:k1:not base64!",
        "enc:aesgcm:k1:" + base64.urlsafe_b64encode(bytes(40)).decode() + ":extra",
        "enc:aesgcm:bad id:" + base64.urlsafe_b64encode(bytes(40)).decode(),
    ],
)
def test_it_refuses_malformed_values_without_echoing_them(value):
    ring = KeyRing.parse(spec("k1"))
    with pytest.raises(DecryptionError) as error:
        ring.decrypt(value, bound_to=BINDING)
    assert TOKEN not in str(error.value)
    if value:
        assert value not in str(error.value)


def test_key_id_of_refuses_malformed_values():
    with pytest.raises(DecryptionError):
        KeyRing.parse(spec("k1")).key_id_of("plaintext")


def test_it_rotates_to_a_new_primary():
    old = generate_key_spec("old")
    value = KeyRing.parse(old).encrypt(TOKEN, bound_to=BINDING)
    ring = KeyRing.parse(f"{generate_key_spec('new')},{old}")
    assert ring.needs_rotation(value)
    rotated = ring.rotate(value, bound_to=BINDING)
    assert ring.key_id_of(rotated) == "new"
    assert not ring.needs_rotation(rotated)
    assert ring.decrypt(rotated, bound_to=BINDING) == TOKEN


def test_rotating_twice_is_a_no_op():
    old = generate_key_spec("old")
    value = KeyRing.parse(old).encrypt(TOKEN, bound_to=BINDING)
    ring = KeyRing.parse(f"{generate_key_spec('new')},{old}")
    once = ring.rotate(value, bound_to=BINDING)
    assert ring.rotate(once, bound_to=BINDING) == once


def test_rotated_values_decrypt_after_the_old_key_is_removed():
    old, new = generate_key_spec("old"), generate_key_spec("new")
    value = KeyRing.parse(old).encrypt(TOKEN, bound_to=BINDING)
    rotated = KeyRing.parse(f"{new},{old}").rotate(value, bound_to=BINDING)
    only_new = KeyRing.parse(new)
    assert only_new.decrypt(rotated, bound_to=BINDING) == TOKEN
    with pytest.raises(DecryptionError):
        only_new.decrypt(value, bound_to=BINDING)


def test_rotation_fails_closed_on_a_broken_primary_value():
    ring = KeyRing.parse(spec("k1"))
    value = ring.encrypt(TOKEN, bound_to=BINDING)
    with pytest.raises(DecryptionError):
        ring.rotate(value, bound_to="credential:team:43")


SECRET_KEY_TEXT = b64_key()


@pytest.mark.parametrize(
    ("bad_spec", "problem"),
    [
        ("", "empty"),
        (" , ", "empty"),
        (f"a:{SECRET_KEY_TEXT},a:{b64_key()}", "repeated"),
        (f"a:{b64_key()},b:{SECRET_KEY_TEXT}", None),  # fine: the control case
        (f"a:{base64.b64encode(secrets.token_bytes(16)).decode()}", "16 bytes"),
        (f"a:{SECRET_KEY_TEXT[:-2]}!!", "base64"),
        (f"a:{SECRET_KEY_TEXT}x", "base64"),
        (SECRET_KEY_TEXT, "no ':'"),
        (f"bad id:{SECRET_KEY_TEXT}", "key id"),
        (f"{'x' * 33}:{SECRET_KEY_TEXT}", "key id"),
        (f":{SECRET_KEY_TEXT}", "key id"),
    ],
)
def test_it_refuses_malformed_specs_without_showing_the_key(bad_spec, problem):
    if problem is None:
        KeyRing.parse(bad_spec)
        return
    with pytest.raises(KeyRingError, match=problem) as error:
        KeyRing.parse(bad_spec)
    assert SECRET_KEY_TEXT not in str(error.value)
    assert SECRET_KEY_TEXT[:8] not in str(error.value)


def test_repr_shows_no_key_material():
    key_text = b64_key()
    ring = KeyRing.parse(f"k1:{key_text}")
    raw = base64.b64decode(key_text)
    for shown in (repr(ring), str(ring), f"{ring}", repr(vars(ring))):
        assert key_text not in shown
        assert key_text[:8] not in shown
        assert repr(raw) not in shown
    assert "k1" in repr(ring)


def test_generate_key_spec_makes_a_usable_key():
    entry = generate_key_spec("2026-05")
    key_id, _, key_text = entry.partition(":")
    assert key_id == "2026-05"
    assert len(base64.b64decode(key_text)) == 32
    assert KeyRing.parse(entry).primary_id == "2026-05"
    assert generate_key_spec("a") != generate_key_spec("a")
    with pytest.raises(KeyRingError):
        generate_key_spec("no spaces")


def test_last4():
    assert last4("  abcdefghijkl1234 ") == "1234"
    assert last4(TOKEN) == TOKEN[-4:]
    assert last4("short") == ""
    assert last4("") == ""
