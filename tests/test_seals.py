"""Seals: digests anyone can recompute, and signatures only a key's owner can make."""

import json
import os

import pytest

from aedr.seals import (
    SealError,
    check_seal,
    check_trusted,
    create_keys,
    load_public_key,
    load_signing_key,
    seal,
)
from aedr.workflows import verify_file


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    create_keys(folder / "lab")
    create_keys(folder / "other")
    return {name: (load_signing_key(folder / f"{name}.key"), load_public_key(folder / f"{name}.pub"))
            for name in ("lab", "other")}  # fmt: skip


def test_a_key_pair_is_private_and_never_overwritten(tmp_path):
    private, public = create_keys(tmp_path / "k")
    assert os.stat(private).st_mode & 0o777 == 0o600
    assert public.read_text().startswith("aedr-ed25519 ")
    with pytest.raises(SealError, match="never overwritten"):
        create_keys(tmp_path / "k")
    (tmp_path / "bad.key").write_text("not a key")
    with pytest.raises(SealError, match="not a private key file"):
        load_signing_key(tmp_path / "bad.key")
    (tmp_path / "bad.pub").write_text("ssh-ed25519 AAAA")
    with pytest.raises(SealError, match="not an aedr public key"):
        load_public_key(tmp_path / "bad.pub")


def test_a_signed_record_holds_until_edited_and_trust_names_the_key(keys):
    lab_key, lab_public = keys["lab"]
    other_public = keys["other"][1]
    record = seal({"id": "a", "verdict": "taesd"}, lab_key)
    assert check_seal(record, "r") == lab_public
    check_trusted(lab_public, [lab_public], "r")
    with pytest.raises(SealError, match=f"signed by key {lab_public.key_id}, which is not trusted"):
        check_trusted(lab_public, [other_public], "r")
    edited = {**record, "verdict": "sdxl"}
    with pytest.raises(SealError, match="do not match its digest"):
        check_seal(edited, "r")
    resealed = seal(edited)  # the digest recomputed, as anyone can
    forged = {**resealed, "seal": {**resealed["seal"], "signature": record["seal"]["signature"]}}
    with pytest.raises(SealError, match="signature does not match"):
        check_seal(forged, "r")
    assert check_seal(resealed, "r") is None  # unsigned: only the digest holds
    with pytest.raises(SealError, match="is not signed"):
        check_trusted(None, [lab_public], "r")


def test_verify_reads_calibrations_and_record_lists(keys, tmp_path):
    lab_key, lab_public = keys["lab"]
    records = [seal({"id": str(i), "filename": f"{i}.png"}, lab_key) for i in range(2)]
    records.append({**records[1], "filename": "swapped.png"})
    (tmp_path / "records.json").write_text(json.dumps(records))
    checks = verify_file(tmp_path / "records.json", [lab_public])
    assert [c.ok for c in checks] == [True, True, False]
    assert "signed by key " + lab_public.key_id in checks[0].detail
    (tmp_path / "junk.json").write_text("{")
    assert not verify_file(tmp_path / "junk.json")[0].ok


def test_a_signed_calibration_edited_and_resealed_is_refused_on_load(keys, tmp_path):
    """Library level: ``Calibration.load`` checks a signature present, trusted keys or not."""
    from conftest import loss_record

    from aedr.decide.calibration import Calibration, CalibrationError, calibrate
    from aedr.seals import digest_of

    records = [loss_record(0.015 + 0.001 * i, 0.01, 0.3) for i in range(10)]
    calibration = calibrate(records, "taesd", 0.05, "aedr")
    calibration.sign(keys["lab"][0])
    calibration.save(tmp_path / "signed.json")
    assert Calibration.load(tmp_path / "signed.json").signer() == keys["lab"][1]
    document = json.loads((tmp_path / "signed.json").read_text())
    document["threshold"] = 1e9
    content = {k: v for k, v in document.items() if k not in ("digest", "signature")}
    document["digest"] = digest_of(content)
    (tmp_path / "edited.json").write_text(json.dumps(document))
    with pytest.raises(CalibrationError, match="signature does not match its contents"):
        Calibration.load(tmp_path / "edited.json")
