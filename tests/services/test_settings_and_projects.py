"""App settings file and projects: typed, atomic, lenient with damaged files, clear about wrong folders."""

from __future__ import annotations

import json

import pytest

from anomalyapp.core.config import AppConfig
from anomalyapp.core.errors import DataError
from anomalyapp.services import project as projects
from anomalyapp.services.records import RecordsService
from anomalyapp.services.settings import load_settings, save_settings, settings_file


def test_settings_round_trip_and_damaged_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ANOMALYAPP_CONFIG_DIR", str(tmp_path))
    assert load_settings() == AppConfig()
    save_settings(AppConfig(device="cpu", overlay_opacity=0.3))
    assert load_settings().device == "cpu" and load_settings().overlay_opacity == 0.3
    settings_file().write_text("{broken", encoding="utf-8")
    assert load_settings() == AppConfig()
    settings_file().write_text(json.dumps({"device": "tpu"}), encoding="utf-8")
    assert load_settings().device == "auto"


def test_project_create_open_and_recent(tmp_path, monkeypatch):
    monkeypatch.setenv("ANOMALYAPP_CONFIG_DIR", str(tmp_path / "config"))
    project = projects.create_project(tmp_path / "p", "Housing", tmp_path / "good", single_user="boss")
    with RecordsService(project.root) as records:
        records.set_threshold(records.auth.auto_login(), 0.6, reason="test", project=project)
    reopened = projects.open_project(tmp_path / "p")
    assert reopened.name == "Housing" and reopened.threshold == 0.6 and reopened.model_path is None
    assert projects.recent_projects()[0] == (tmp_path / "p").resolve()
    with pytest.raises(DataError, match="already holds a project"):
        projects.create_project(tmp_path / "p")
    with pytest.raises(DataError, match="not an anomalyapp project"):
        projects.open_project(tmp_path)
    (tmp_path / "p" / "project.json").write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match="damaged"):
        projects.open_project(tmp_path / "p")


def test_the_data_root_of_a_good_folder_is_the_mvtec_root_or_the_folder_above(tmp_path):
    (tmp_path / "bottle" / "train" / "good").mkdir(parents=True)
    assert projects.data_root_of(tmp_path / "bottle" / "train" / "good") == tmp_path / "bottle"
    assert projects.data_root_of(tmp_path / "bottle") == tmp_path / "bottle"  # training accepts the root too
    # Not the MVTec layout: the folder that holds the good images' folder.
    assert projects.data_root_of(tmp_path / "line3" / "ok_parts") == tmp_path / "line3"
