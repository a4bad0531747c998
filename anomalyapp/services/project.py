"""Projects: one product per project, with its good images, models, captures and settings.

A project is a folder holding ``project.json``; models live in ``models/`` (each training writes a new
folder, so a cancelled or failed training never touches the model in use), camera captures in
``captures/``. The list of recent projects is kept in the app's config folder.

The decision rule in use (threshold, uncertain band) belongs to the project's records
(``RecordsService.decision_rule``), where only a supervisor changes it, with an audit entry; ``Project`` keeps
a read-only copy for display. A project is created with its records and, for a single-user station, its one
supervisor in one transaction, before ``project.json`` makes the folder a project: a crash at any point
leaves either no project (create it again) or one that opens logged in.
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
from anomalyapp.core.line import LineSettings
from anomalyapp.core.verdicts import NORMALISED_THRESHOLD

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
    false_reject_rate: float = 0.01  # the share of new good parts the threshold may judge NG
    # The region of interest drawn in the window (rectangles as shares of the image; empty: the whole image) and
    # the smallest defect that matters in px (0: not said, no tiles): what the model sees (engine.framing).
    roi: tuple = ()
    smallest_defect: float = 0.0
    stage_weighting: str = ""  # one of core.config.STAGE_WEIGHTINGS; "": the detector's default
    stages: str = ""  # the backbone stages, comma-separated ("layer3,layer4"); "": the detector's default


TEST_PAUSE_ENV = "ANOMALYAPP_TEST_PAUSE_AT"  # tests only: "<point>:<marker file>" pauses there (kill -9 tests)


def _test_pause(point: str) -> None:
    """Tests only: stop at ``point`` (after writing the marker file) so a test can kill the process there."""
    wanted = os.environ.get(TEST_PAUSE_ENV, "")
    if wanted.partition(":")[0] == point:
        import time

        Path(wanted.partition(":")[2]).write_text(point)
        time.sleep(3600)


@dataclass
class Project:
    root: Path
    name: str
    good_folder: str | None = None
    current_model: str | None = None  # folder name under models/
    training: TrainingSettings = field(default_factory=TrainingSettings)
    created: str = ""
    # A copy of the line settings in force (the records hold them: services.line_link.save_line_settings).
    line: LineSettings = field(default_factory=LineSettings)
    # A copy of the decision rule in use (normalised; the calibrated threshold is NORMALISED_THRESHOLD), kept
    # for display and for projects older than the records' rule. Read-only: RecordsService.set_threshold.
    _threshold: float = field(default=NORMALISED_THRESHOLD, repr=False)
    _uncertain_low: float | None = field(default=None, repr=False)

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def uncertain_low(self) -> float | None:
        return self._uncertain_low

    def keep_decision_rule(self, threshold: float, uncertain_low: float | None) -> None:
        """Keep the copy in step with the rule the records hold (called by the records service)."""
        self._threshold, self._uncertain_low = float(threshold), uncertain_low
        self.save()

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
        data["threshold"], data["uncertain_low"] = data.pop("_threshold"), data.pop("_uncertain_low")
        data["root"] = None  # the folder is where the file is, not what it says
        data["line"] = self.line.to_dict()
        data["version"] = PROJECT_VERSION
        return data

    def save(self) -> None:
        write_text_atomically(self.root / PROJECT_FILE, json.dumps(self.to_dict(), indent=2))
        remember_recent(self.root)


def create_project(root: str | os.PathLike, name: str | None = None, good_folder: str | os.PathLike | None = None,
                   *, single_user: str | None = None, actor=None, hasher=None) -> Project:
    """A new project in ``root``.

    ``single_user``: also give it one supervisor of that name with a random password nobody is shown, in
    single-user mode (the station opens logged in as them); without it, the project asks for its first
    supervisor when opened. ``actor``: the person logged in at the station, when there is one; creating a
    project makes someone its supervisor, so an operator may not (``PermissionDenied``).
    """
    from anomalyapp.services import auth

    if actor is not None:
        auth.require(actor, auth.CREATE_PROJECT)
    root = Path(root)
    if (root / PROJECT_FILE).exists():
        raise DataError(f"{root} already holds a project; open it instead")
    project = Project(
        root=root,
        name=name or root.name,
        good_folder=str(good_folder) if good_folder else None,
        created=_dt.datetime.now().isoformat(timespec="seconds"),
    )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create project folder {root}: {error.strerror or error}") from None
    if single_user is not None:
        set_up_single_user(project, single_user, hasher=hasher)
    _test_pause("before_project_file")
    project.save()  # last: until this file exists the folder is not a project
    return project


def check_new_project_folder(root: str | os.PathLike) -> Path:
    """The folder a new project would be created in, refused (``DataError``) when it already holds a project
    or other files: a project folder is the project's alone, and a mistyped name must not turn a folder full
    of other things into one."""
    root = Path(root)
    if (root / PROJECT_FILE).exists():
        raise DataError(f"{root} already holds a project; open it instead")
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} is a file, not a folder")
    try:
        occupied = root.is_dir() and any(root.iterdir())
    except OSError as error:
        raise DataError(f"cannot read folder {root}: {error.strerror or error}") from None
    if occupied:
        raise DataError(f"{root} is not empty: choose a new or empty folder for the project")
    return root


@dataclass(frozen=True)
class GoodImagesPreview:
    """What a training on ``folder`` would learn from: the number of good images and a few of them."""

    folder: Path
    count: int
    sample: list[Path]


def preview_good_images(folder: str | os.PathLike, sample: int = 6) -> GoodImagesPreview:
    """The good images a training would use (the same discovery as training: MVTec ``train/good`` or the
    folder's own images); ``DataError`` names the folder and why it has none."""
    from anomalyapp.data.datasets import discover_dataset

    good = discover_dataset(folder).train_good
    step = max(1, len(good) // sample)
    return GoodImagesPreview(Path(folder), len(good), good[::step][:sample])


def first_good_image(folder: str | os.PathLike):
    """The first readable good image a training would use, as RGB pixels: the picture the region is drawn on."""
    from anomalyapp.core.errors import DataError, ImageReadError
    from anomalyapp.data.images import load_image

    for path in preview_good_images(folder).sample:
        try:
            return load_image(path).to_rgb()
        except ImageReadError:
            continue
    raise DataError(f"none of the good images in {folder} could be read")


def data_root_of(good_folder: str | os.PathLike) -> Path:
    """The folder a user most likely looks in next for a project that learns from ``good_folder``: the data
    set's root in the MVTec layout (``good_folder`` is the root itself or its ``train/good``; test/ sits
    there), else the folder that holds the good images' folder."""
    from anomalyapp.data.datasets import GOOD

    folder = Path(good_folder)
    if (folder / "train" / GOOD).is_dir():
        return folder
    if folder.name == GOOD and folder.parent.name == "train":
        return folder.parent.parent
    return folder.parent


def project_root_of(path: str | os.PathLike) -> Path | None:
    """The project folder that holds ``path`` (itself or a parent with ``project.json``), or None."""
    path = Path(path).resolve()
    for folder in (path, *path.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    return None


def open_model_change(model_folder: str | os.PathLike, actor, permission: str):
    """Before writing a model folder: when it lies in a project, the project's open records after checking
    that ``actor`` may ``permission`` there (``PermissionDenied`` otherwise); None outside any project.

    A project's models go directly in its ``models/`` folder, where its model versions point.
    """
    from anomalyapp.services.records import RecordsService

    root = project_root_of(Path(model_folder).parent)
    if root is None:
        return None
    if Path(model_folder).resolve().parent != (root / "models").resolve():
        raise DataError(f"a model of project {root} goes in its models folder ({root / 'models'}), "
                        f"not {model_folder}")
    records = RecordsService(root)
    try:
        records.auth.require(actor, permission)
    except BaseException:
        records.close()
        raise
    return records


def use_model_version(records, folder: Path, change: str, actor, correction: bool = False):
    """Record a new model folder of the project as a version in use (audited) and point project.json at it."""
    parent = records.current_version()
    parent_id = parent.id if parent else None
    if correction:
        version = records.add_correction(folder.name, parent_id, change, actor)
    else:
        version = records.add_version(folder.name, parent_id, change, actor, threshold=NORMALISED_THRESHOLD,
                                      uncertain_low=calibrated_band(folder))
    project = open_project(records.root)
    project.current_model = folder.name
    threshold, uncertain_low = records.decision_rule()
    project.keep_decision_rule(threshold, uncertain_low)  # saves
    return version


def calibrated_band(model_folder: Path) -> float | None:
    """The Review band's lower end (normalised) that the model's calibration proposes, or None (older models,
    too little evidence: the band in use then stays as it is)."""
    from anomalyapp.engine.bundle import read_manifest
    from anomalyapp.engine.calibration import Calibration

    band = Calibration.from_dict(read_manifest(model_folder)["calibration"]).uncertain_low_normalised
    return band if band is not None and 0 <= band < NORMALISED_THRESHOLD else None


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
        try:
            data["line"] = LineSettings.from_dict(data.pop("line", None))
        except DataError as exc:
            raise DataError(f"project file {file}: {exc}") from None
        data.pop("version", None)
        data.pop("root", None)
        data["_threshold"] = data.pop("threshold", NORMALISED_THRESHOLD)
        data["_uncertain_low"] = data.pop("uncertain_low", None)
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


def set_up_single_user(project: Project, name: str = "station", hasher=None) -> None:
    """Give a project without accounts one supervisor in single-user mode (demo, self-test, scripts).

    The password is random and not shown: such a station starts logged in. To have logins, that supervisor
    sets their own password (Users…) and then switches single-user mode off, which asks for it. The account
    and the mode are one transaction: never an account nobody can log in as, without the mode.
    """
    import secrets

    from anomalyapp.services.records import RecordsService

    with RecordsService(project.root, hasher=hasher) as records, records.store.transaction():
        if records.auth.needs_first_user():
            user = records.auth.create_first_supervisor(name, f"Aa1-{secrets.token_urlsafe(16)}")
            _test_pause("between_supervisor_and_single_user")
            records.auth.set_single_user_mode(user, True)


def demo_project(root: str | os.PathLike | None = None) -> Project:
    """The demo line as a project: generated good images, ready to train."""
    from anomalyapp.data.demo import generate_demo

    root = Path(root) if root else paths.data_dir() / "demo-project"
    data = generate_demo(root / "data" / "demo_line", seed=0)
    if (root / PROJECT_FILE).exists():
        project = open_project(root)
    else:
        project = create_project(root, "Demo line (washers)", data / "train" / "good", single_user="demo")
    set_up_single_user(project, "demo")  # an older demo folder without accounts
    return project
