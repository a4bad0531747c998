"""Model folders: an edit of the manifest is refused, not obeyed; fields are checked; killed or failed saves
leave the previous model under its name."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anomalyapp.core.errors import ModelFileError
from anomalyapp.engine.bundle import load_model, read_manifest, save_model


def _copy(model: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(model, target)
    return target


def _manifest(model: Path) -> dict:
    return json.loads((model / "manifest.json").read_text(encoding="utf-8"))


def _write_manifest(model: Path, manifest: dict) -> None:
    (model / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def _as_legacy(model: Path, version: int) -> dict:
    """Rewrite the manifest as a format-1 or -2 save wrote it: no integrity digest."""
    manifest = _manifest(model)
    del manifest["integrity"]
    manifest["format_version"] = version
    if version == 1:
        del manifest["config"]["keep_aspect"]
    _write_manifest(model, manifest)
    return manifest


def _score(detector) -> float:
    image = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    return detector.predict(image).raw_score


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------ edits are refused
@pytest.mark.parametrize("model_fixture", ["patchcore_model", "autoencoder_model"])
def test_a_one_character_edit_of_the_threshold_is_refused(model_fixture, request, tmp_path):
    model = _copy(request.getfixturevalue(model_fixture), tmp_path)
    text = (model / "manifest.json").read_text(encoding="utf-8")
    start = text.index('"image_threshold": ') + len('"image_threshold": ')
    end = text.index(",", start)
    # One digit becomes an exponent marker, as in the issue (the threshold grew by many powers of ten).
    edited = text[: end - 3] + "e" + text[end - 2 :]
    assert json.loads(edited)["calibration"]["image_threshold"] > 1e10
    (model / "manifest.json").write_text(edited, encoding="utf-8")
    with pytest.raises(ModelFileError, match="has been edited: manifest.json does not match its integrity digest"):
        load_model(model)


def test_reformatting_the_manifest_without_changing_a_value_still_loads(patchcore_model, tmp_path):
    model = _copy(patchcore_model, tmp_path)
    manifest = _manifest(model)
    (model / "manifest.json").write_text(json.dumps(dict(reversed(manifest.items())), indent=7), encoding="utf-8")
    detector, _ = load_model(model)
    assert detector.calibration.image_threshold == manifest["calibration"]["image_threshold"]


def test_empty_file_list_no_longer_switches_the_checks_off(patchcore_model, tmp_path):
    model = _copy(patchcore_model, tmp_path)
    index = model / "index.faiss"
    damaged = bytearray(index.read_bytes())
    damaged[-100] ^= 0xFF
    index.write_bytes(bytes(damaged))
    manifest = _manifest(model)
    manifest["files"] = {}
    _write_manifest(model, manifest)
    with pytest.raises(ModelFileError, match="has been edited"):
        load_model(model)
    _as_legacy(model, 2)  # a format-2 model has no digest: the fixed file list still demands index.faiss's hash
    with pytest.raises(ModelFileError, match=r"manifest field files\.index\.faiss must be a sha256"):
        load_model(model)


def test_lowering_the_format_to_drop_the_digest_is_refused(patchcore_model, tmp_path):
    model = _copy(patchcore_model, tmp_path)
    manifest = _manifest(model)
    manifest["format_version"] = 2
    _write_manifest(model, manifest)
    with pytest.raises(ModelFileError, match="has been edited: manifest.json says format 2"):
        load_model(model)
    del manifest["integrity"]
    manifest["format_version"] = 3
    _write_manifest(model, manifest)
    with pytest.raises(ModelFileError, match="has been edited: manifest.json has no integrity digest"):
        load_model(model)


def test_file_names_outside_the_folder_are_refused(patchcore_model, tmp_path):
    model = _copy(patchcore_model, tmp_path / "models")
    outside = tmp_path / "secret.txt"
    outside.write_text("not a model file")
    manifest = _as_legacy(model, 2)
    manifest["files"]["../../secret.txt"] = "0" * 64
    _write_manifest(model, manifest)
    with pytest.raises(ModelFileError) as error:
        load_model(model)
    assert "names '../../secret.txt', which is not a file of a patchcore model" in _one_line(error)


# ------------------------------------------------------------------------------------------ fields are checked
BAD_FIELDS = [
    (("files",), ["index.faiss"], "manifest field files must be an object"),
    (("config", "image_size"), "huge", "config.image_size must be a whole number from 32 to 2048"),
    (("config", "image_size"), 0, "config.image_size must be a whole number"),
    (("config", "image_size"), 10**9, "config.image_size must be a whole number"),
    (("config", "coreset_ratio"), 0, "config.coreset_ratio must be a finite number above 0"),
    (("config", "coreset_ratio"), 1.5, "config.coreset_ratio must be"),
    (("config", "layers"), ["layer9"], "config.layers must be a list of distinct layer names"),
    (("config", "keep_aspect"), "yes", "config.keep_aspect must be true or false"),
    (("config", "backbone"), "vgg", "config.backbone must be one of efficientnet_lite0"),
    (("config", "index"), "magic", "config.index must be one of auto"),
    (("calibration", "image_threshold"), -1.0, "calibration.image_threshold must be a finite number above 0"),
    (("calibration", "image_threshold"), float("inf"), "calibration.image_threshold must be"),
    (("calibration", "pixel_threshold"), "0.5", "calibration.pixel_threshold must be"),
    (("calibration", "good_scores"), None, "calibration.good_scores must be a list"),
    (("state", "bank_size"), "many", "state.bank_size must be a whole number"),
    (("state", "coverage_radius"), None, "state.coverage_radius must be a finite number"),
    (("backbone", "weights_sha256"), "abc", "backbone.weights_sha256 must be a sha256"),
    (("backbone",), [], "manifest field backbone must be an object"),
    (("training_set",), "x", "manifest field training_set must be an object"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_FIELDS, ids=[".".join(f[0]) + f"={f[1]!r}" for f in BAD_FIELDS])
def test_a_bad_field_is_one_line_naming_it(patchcore_model, tmp_path, field, value, message):
    model = _copy(patchcore_model, tmp_path)
    manifest = _as_legacy(model, 2)  # without a digest, so the field checks themselves are reached
    section = manifest
    for key in field[:-1]:
        section = section[key]
    section[field[-1]] = value
    _write_manifest(model, manifest)
    with pytest.raises(ModelFileError) as error:
        load_model(model)
    assert message in _one_line(error)


def test_autoencoder_fields_are_checked(autoencoder_model, tmp_path):
    model = _copy(autoencoder_model, tmp_path)
    manifest = _as_legacy(model, 2)
    manifest["config"]["score_top_k"] = 0
    _write_manifest(model, manifest)
    with pytest.raises(ModelFileError, match="config.score_top_k must be a whole number of at least 1"):
        load_model(model)
    manifest["config"]["score_top_k"] = 10
    manifest["config"]["score_top_share"] = 1.5
    _write_manifest(model, manifest)
    with pytest.raises(ModelFileError, match="config.score_top_share must be null or a finite number above 0"):
        load_model(model)
    manifest["config"]["score_top_share"] = None
    manifest["config"]["hard_share"] = 2
    _write_manifest(model, manifest)
    with pytest.raises(ModelFileError, match="config.hard_share must be null or a finite number above 0"):
        load_model(model)
    manifest["config"]["hard_share"] = None
    manifest["state"]["latent_dim"] = -3
    _write_manifest(model, manifest)
    with pytest.raises(ModelFileError, match="state.latent_dim must be"):
        load_model(model)


@pytest.mark.parametrize("model_fixture", ["patchcore_model", "autoencoder_model"])
@pytest.mark.parametrize("version", [1, 2])
def test_legacy_models_load_as_before_with_their_threshold(model_fixture, version, request, tmp_path):
    source = request.getfixturevalue(model_fixture)
    model = _copy(source, tmp_path)
    manifest = _as_legacy(model, version)
    detector, _ = load_model(model)
    assert detector.calibration.image_threshold == manifest["calibration"]["image_threshold"]
    assert detector.config.keep_aspect is (version == 2)
    if version == 2:
        assert _score(detector) == pytest.approx(_score(load_model(source)[0]), rel=1e-6)


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="file modes do not stop reading on Windows")
def test_unreadable_model_file_is_reported(patchcore_model):
    import tempfile

    # Root reads any file, so the load runs with the effective user "nobody" (the real user stays root).
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        model = _copy(patchcore_model, Path(folder))
        os.chmod(model / "index.faiss", 0)
        with pytest.raises(ModelFileError) as error, _as_another_user():
            read_manifest(model)
    assert _one_line(error) == f"cannot read model file {model / 'index.faiss'}: permission denied"


@contextlib.contextmanager
def _as_another_user():
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.mark.parametrize("model_fixture", ["patchcore_model", "autoencoder_model"])
def test_every_saved_file_has_the_umask_mode(model_fixture, request):
    umask = os.umask(0)
    os.umask(umask)
    model = request.getfixturevalue(model_fixture)
    modes = {path.name: path.stat().st_mode & 0o777 for path in model.iterdir()}
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)


# ------------------------------------------------------------------------------------------ killed and failed saves
SAVE_AND_PAUSE = """
import os, sys, time
from anomalyapp.engine.bundle import load_model, save_model

detector, manifest = load_model(sys.argv[1])
rename = os.replace

def pausing_rename(source, destination):
    if ".saving-" in os.fspath(source):  # the old model is aside, the new one not yet in place
        print("between renames", flush=True)
        time.sleep(600)
    rename(source, destination)

os.replace = pausing_rename
save_model(detector, sys.argv[2], backbone=manifest["backbone"], training_set=manifest["training_set"])
"""


@pytest.mark.parametrize("next_use", ["load", "save"])
def test_a_save_killed_between_its_renames_is_repaired_by_the_next_use(patchcore_model, tmp_path, next_use):
    models = tmp_path / "models"
    target = _copy(patchcore_model, models, "line-1")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    process = subprocess.Popen([sys.executable, "-c", SAVE_AND_PAUSE, str(patchcore_model), str(target)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "between renames"
    finally:
        process.kill()  # SIGKILL: no cleanup runs
        process.wait()
    assert not target.exists()
    assert len(list(models.iterdir())) == 2
    assert len(list(models.glob(".line-1.replaced-*"))) == 1 and len(list(models.glob(".line-1.saving-*"))) == 1

    if next_use == "load":
        detector, _ = load_model(target)
        assert {p.name: p.read_bytes() for p in target.iterdir()} == before  # the old model, restored as it was
    else:
        detector, manifest = load_model(patchcore_model)
        save_model(detector, target, backbone=manifest["backbone"], training_set=manifest["training_set"])
        detector, _ = load_model(target)
    assert [p.name for p in models.iterdir()] == ["line-1"]
    assert _score(detector) == pytest.approx(_score(load_model(patchcore_model)[0]), rel=1e-6)


def test_the_newest_complete_aside_folder_is_restored(patchcore_model, tmp_path):
    models = tmp_path / "models"
    older = _copy(patchcore_model, models, ".m.replaced-older")
    newer = _copy(patchcore_model, models, ".m.replaced-newer")
    os.utime(older / "manifest.json", (1_000_000, 1_000_000))
    (newer / "index.faiss").write_bytes((newer / "index.faiss").read_bytes()[:100])  # newest, but damaged
    (models / ".m.saving-0000").mkdir()
    (models / ".m.saving-0000" / "index.faiss").write_bytes(b"half written")
    load_model(models / "m")
    assert [p.name for p in models.iterdir()] == ["m"]
    assert (models / "m" / "index.faiss").read_bytes() == (patchcore_model / "index.faiss").read_bytes()


@contextlib.contextmanager
def _small_disk(folder: Path, kib: int):
    folder.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)],
                                 capture_output=True, text=True)
    except OSError as exc:
        pytest.skip(f"no mount command here: {exc}")
    if mounted.returncode != 0:
        pytest.skip(f"a small tmpfs cannot be mounted here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.parametrize(("model_fixture", "data_file"),
                         [("patchcore_model", "index.faiss"), ("autoencoder_model", "tensors.safetensors")])
def test_a_full_disk_while_saving_is_one_line_and_keeps_the_previous_model(model_fixture, data_file, request, tmp_path):
    source = request.getfixturevalue(model_fixture)
    used_kib = sum(-(-p.stat().st_size // 4096) * 4 for p in source.iterdir())
    with _small_disk(tmp_path / "disk", used_kib + 64) as disk:  # room for the old model, not for a second one
        target = _copy(source, disk, "model")
        before = {p.name: p.read_bytes() for p in target.iterdir()}
        detector, manifest = load_model(source)
        with pytest.raises(ModelFileError) as error:
            save_model(detector, target, backbone=manifest["backbone"], training_set=manifest["training_set"])
        assert _one_line(error) == f"cannot save model to {target}: writing {data_file} failed: No space left on device"
        assert {p.name: p.read_bytes() for p in target.iterdir()} == before
        assert [p.name for p in disk.iterdir()] == ["model"]


def test_writer_errors_of_faiss_and_safetensors_become_one_line(patchcore_model, autoencoder_model, tmp_path,
                                                                  monkeypatch):
    from safetensors import SafetensorError

    import anomalyapp.engine.bundle as bundle
    from anomalyapp.engine.memory_bank import MemoryBank

    def faiss_full(self, path):
        raise RuntimeError("Error in void faiss::write_index(const Index*, IOWriter*, int) at index_write.cpp:499: "
                           "Error: 'ret == (size * 4)' failed: write error in x: 65491 != 512000 (No space left on device)")

    def safetensors_full(tensors):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(MemoryBank, "save", faiss_full)
    monkeypatch.setattr(bundle, "serialise_tensors", safetensors_full)
    for source, data_file in ((patchcore_model, "index.faiss"), (autoencoder_model, "tensors.safetensors")):
        target = _copy(source, tmp_path, source.name)
        detector, manifest = load_model(source)
        with pytest.raises(ModelFileError) as error:
            save_model(detector, target, backbone=manifest["backbone"], training_set=manifest["training_set"])
        assert _one_line(error).endswith(f"writing {data_file} failed: {os.strerror(28)}")
        assert read_manifest(target) == _manifest(source)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([patchcore_model.name, autoencoder_model.name])
