"""Projects: one product per project, with its good images, models, captures and settings.

A project is a folder holding ``project.json``; models live in ``models/`` (each training writes a new
folder, so a cancelled or failed training never touches the model in use), camera captures in
``captures/``. The list of recent projects is kept in the app's config folder.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from anomalyapp.core import paths
from anomalyapp.core.errors import DataError
from anomalyapp.core.files import write_text_atomically

PROJECT_FILE = "project.json"
PROJECT_VERSION = 1
RECENT_LIMIT = 10


@dataclass
class TrainingSettings:
    detector: str = "patchcore"
    backbone: str = "efficientnet_lite0"
    image_size: int = 224
    coreset_ratio: float = 0.1
    epochs: int = 40
    device: str = "auto"


@dataclass
class Project:
    root: Path
    name: str
    good_folder: str | None = None
    current_model: str | None = None  # folder name under models/
    threshold: float = 0.5  # normalised; 0.5 is the calibrated threshold
    uncertain_low: float | None = None
    training: TrainingSettings = field(default_factory=TrainingSettings)
    created: str = ""

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def captures_dir(self) -> Path:
        return self.root / "captures"

    @property
    def model_path(self) -> Path | None:
        if not self.current_model:
            return None
        path = self.models_dir / self.current_model
        return path if path.is_dir() else None

    def new_model_path(self) -> Path:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}-{self.training.detector}"
        candidate, counter = self.models_dir / base, 1
        while candidate.exists():
            counter += 1
            candidate = self.models_dir / f"{base}-{counter}"
        return candidate

    def to_dict(self) -> dict:
        data = asdict(self)
        data["root"] = None  # the folder is where the file is, not what it says
        data["version"] = PROJECT_VERSION
        return data

    def save(self) -> None:
        write_text_atomically(self.root / PROJECT_FILE, json.dumps(self.to_dict(), indent=2))
        remember_recent(self.root)


def create_project(root: str | os.PathLike, name: str | None = None, good_folder: str | os.PathLike | None = None) -> Project:
    root = Path(root)
    if (root / PROJECT_FILE).exists():
        raise DataError(f"{root} already holds a project; open it instead")
    project = Project(
        root=root,
        name=name or root.name,
        good_folder=str(good_folder) if good_folder else None,
        created=_dt.datetime.now().isoformat(timespec="seconds"),
    )
    project.save()
    return project


def open_project(root: str | os.PathLike) -> Project:
    root = Path(root)
    file = root / PROJECT_FILE
    if not file.is_file():
        raise DataError(f"{root} is not an anomalyapp project ({PROJECT_FILE} is missing)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        if data.get("version", 0) > PROJECT_VERSION:
            raise DataError(f"project {root} was saved by a newer anomalyapp")
        training = TrainingSettings(**data.pop("training", {}))
        data.pop("version", None)
        data.pop("root", None)
        project = Project(root=root, training=training, **data)
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
        raise DataError(f"project file {file} is damaged: {exc}") from None
    remember_recent(root)
    return project


def _recent_file() -> Path:
    return paths.config_dir() / "recent_projects.json"


def recent_projects() -> list[Path]:
    try:
        entries = json.loads(_recent_file().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    return [Path(p) for p in entries if (Path(p) / PROJECT_FILE).is_file()]


def remember_recent(root: Path) -> None:
    entries = [str(Path(root).resolve())] + [str(p) for p in recent_projects() if p.resolve() != Path(root).resolve()]
    try:
        write_text_atomically(_recent_file(), json.dumps(entries[:RECENT_LIMIT], indent=2))
    except DataError:
        pass  # a read-only config folder must not stop the user's work


def set_up_single_user(project: Project, name: str = "station") -> None:
    """Give a project without accounts one supervisor in single-user mode (demo, self-test, scripts).

    The password is random and not shown: such a station starts logged in; a person who wants logins
    creates their own supervisor account (Users…) and switches single-user mode off.
    """
    import secrets

    from anomalyapp.services.records import RecordsService

    with RecordsService(project.root) as records:
        if records.auth.needs_first_user():
            user = records.auth.create_first_supervisor(name, f"Aa1-{secrets.token_urlsafe(16)}")
            records.auth.set_single_user_mode(user, True)


def demo_project(root: str | os.PathLike | None = None) -> Project:
    """The demo line as a project: generated good images, ready to train."""
    from anomalyapp.data.demo import generate_demo

    root = Path(root) if root else paths.data_dir() / "demo-project"
    data = generate_demo(root / "data" / "demo_line", seed=0)
    if (root / PROJECT_FILE).exists():
        project = open_project(root)
    else:
        project = create_project(root, "Demo line (washers)", data / "train" / "good")
    set_up_single_user(project, "demo")
    return project
