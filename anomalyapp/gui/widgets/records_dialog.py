"""Records: search the inspection history, export CSV/PDF reports, threshold from labels, model versions.

Thin: every query, export and change goes through the records service the window passes in. Searches and
exports (queries, thumbnails, the PDF) run in background jobs (``gui.workers``) while the dialog shows a busy
bar; a newer search supersedes one still running, whose result is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from anomalyapp.core.cancel import check
from anomalyapp.core.errors import AppError
from anomalyapp.core.image_names import shown_name
from anomalyapp.core.verdicts import rule_text, stated_rule
from anomalyapp.gui.workers import start_job
from anomalyapp.services import reports
from anomalyapp.services.records import InspectionQuery, InspectionRecord, LabelRecord, Summary

SHOWN_ROWS = 500
# "Rule": the threshold and Review band the part was judged with (a Review verdict is explained only by the band).
RECORD_COLUMNS = ("Time", "File", "Score", "Verdict", "Label", "Note", "Rule", "Model", "Source")
# "Rule": what the version was last judged with (the threshold and Review band a rollback brings back).
VERSION_COLUMNS = ["Version", "Parent", "Change", "Rule", "Who", "When"]


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _share(rate) -> str:
    """A share of parts, written as the target it is compared with is ("at most 1.0 %")."""
    return "n/a" if rate is None else f"{100 * rate:.1f} %"


@dataclass(frozen=True, eq=False)
class SearchResult:
    """What one search found: the rows shown (at most ``SHOWN_ROWS``), their current labels, all matches."""

    rows: list[InspectionRecord]
    labels: dict[int, LabelRecord]
    total: int
    summary: Summary


def search_records(records, query: InspectionQuery) -> SearchResult:
    """The queries behind the Inspections tab; run in a background job."""
    rows = records.query(query)
    labels = records.store.current_labels([r.id for r in rows if r.label])
    return SearchResult(rows, labels, records.count(query), records.summary(replace_limit(query)))


class RecordsDialog(QDialog):
    threshold_applied = Signal(float)
    version_restored = Signal(object)  # ModelVersion
    searched = Signal(int)  # a search's rows are in the table (how many)
    exported = Signal(str)  # an export's file is written (its path)

    def __init__(self, records, access, parent=None, *, label_scorer=None, target_false_reject_rate=None):
        """``label_scorer(cancel)``: a generator returning every labelled part scored by the model in use
        (``services.label_scores.LabelledScores``), run in the background; the threshold proposal then uses
        all of them and meets ``target_false_reject_rate`` on the labelled good parts."""
        super().__init__(parent)
        self.setObjectName("records_dialog")
        self.setWindowTitle("Records")
        self.records, self.access = records, access
        self.label_scorer, self.target_false_reject_rate = label_scorer, target_false_reject_rate
        self.labelled_scores = None  # LabelledScores once the background scoring is done
        self.label_job = None
        self._search_job = None
        self._search_generation = 0  # only the newest search's result is shown
        self._busy_jobs: set = set()  # searches and exports under way
        tabs = QTabWidget()
        tabs.addTab(self._search_tab(), "Inspections")
        tabs.addTab(self._threshold_tab(), "Threshold from labels")
        tabs.addTab(self._versions_tab(), "Model versions")
        tabs.addTab(self._audit_tab(), "Audit log")
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        self.resize(1100, 650)
        self.search()
        self.refresh_threshold()
        self.refresh_versions()

    # --------------------------------------------------------------------------------- search
    def _search_tab(self) -> QWidget:
        self.use_dates = QCheckBox("From")
        self.date_from = QDateEdit(QDate.currentDate().addDays(-30))
        self.date_to = QDateEdit(QDate.currentDate())
        for edit in (self.date_from, self.date_to):
            edit.setCalendarPopup(True)
        self.verdict = QComboBox()
        self.verdict.setObjectName("records_verdict")
        self.verdict.addItems(["any", "OK", "NG", "Review"])
        self.label = QComboBox()
        self.label.setObjectName("records_label")
        self.label.addItems(["any", "OK", "NG", "unlabelled"])
        self.score_min = QDoubleSpinBox()
        self.score_max = QDoubleSpinBox()
        for spin, value in ((self.score_min, 0.0), (self.score_max, 100.0)):
            spin.setRange(0.0, 100.0)
            spin.setDecimals(3)
            spin.setValue(value)
        self.version = QComboBox()
        self.version.setObjectName("records_version")
        self.name = QLineEdit()
        self.name.setObjectName("records_name")
        self.name.setPlaceholderText("file name contains")
        # Room for the placeholder and a typed name; the filter row otherwise squeezes it to "fi...".
        self.name.setMinimumWidth(self.name.fontMetrics().horizontalAdvance("file name contains") + 40)
        search = QPushButton("Search")
        search.setObjectName("records_search")
        search.clicked.connect(self.search)
        self.name.returnPressed.connect(self.search)
        filters = QHBoxLayout()
        for widget in (self.use_dates, self.date_from, QLabel("to"), self.date_to, QLabel("verdict"), self.verdict,
                       QLabel("label"), self.label, QLabel("score"), self.score_min, QLabel("–"), self.score_max,
                       QLabel("model"), self.version, self.name, search):
            filters.addWidget(widget)
        self.table = QTableWidget(0, len(RECORD_COLUMNS))
        self.table.setObjectName("records_table")
        self.table.setHorizontalHeaderLabels(list(RECORD_COLUMNS))
        # The note takes the spare width (it is the longest text); the others fit their contents.
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.horizontalHeader().setSectionResizeMode(RECORD_COLUMNS.index("Note"),
                                                           QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.count_label = QLabel("")
        self.count_label.setObjectName("records_count")
        self.busy_bar = QProgressBar()
        self.busy_bar.setObjectName("records_busy")
        self.busy_bar.setRange(0, 0)  # no measure of how far a query is: a moving bar says it is running
        self.busy_bar.setMaximumWidth(120)
        self.busy_bar.setTextVisible(False)
        self.busy_bar.hide()
        self.export_buttons: list[QPushButton] = []
        buttons = QHBoxLayout()
        for text, slot, name in (("Export CSV…", self.export_csv, "export_csv_button"),
                                 ("Export labels CSV…", self.export_labels, "export_labels_button"),
                                 ("PDF report…", self.export_pdf, "export_pdf_button"),
                                 ("Daily report…", self.export_daily, "daily_report_button"),
                                 ("Monthly report…", self.export_monthly, "monthly_report_button")):
            button = QPushButton(text)
            button.setObjectName(name)
            button.clicked.connect(slot)
            buttons.addWidget(button)
            self.export_buttons.append(button)
        buttons.addStretch(1)
        buttons.addWidget(self.busy_bar)
        buttons.addWidget(self.count_label)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        return page

    def query(self, limit: int | None = SHOWN_ROWS) -> InspectionQuery:
        def day(edit: QDateEdit) -> date:
            return edit.date().toPython()

        label = self.label.currentText()
        return InspectionQuery(
            date_from=day(self.date_from) if self.use_dates.isChecked() else None,
            date_to=day(self.date_to) if self.use_dates.isChecked() else None,
            verdict=None if self.verdict.currentText() == "any" else self.verdict.currentText(),
            label=None if label == "any" else label,
            score_min=self.score_min.value() if self.score_min.value() > 0 else None,
            score_max=self.score_max.value() if self.score_max.value() < 100 else None,
            model_version_id=self.version.currentData(),
            name_contains=self.name.text().strip() or None,
            limit=limit,
        )

    def search(self) -> None:
        """Run the filters in the background; a search still running is superseded (its result dropped)."""
        query, records = self.query(), self.records
        if self._search_job is not None:
            self._search_job.cancel()
        self._search_generation += 1
        generation = self._search_generation

        def run(token):
            yield
            check(token)  # superseded before it started
            return search_records(records, query)

        self.count_label.setText("searching…")
        self._search_job = self._start("Searching the records", run,
                                       succeeded=lambda result: self._show_search(generation, result),
                                       failed=lambda message: self._search_failed(generation, message))

    def _show_search(self, generation: int, result: SearchResult) -> None:
        if generation != self._search_generation:
            return  # a newer search is on its way
        rows, labels, total = result.rows, result.labels, result.total
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(rows))
        for r, record in enumerate(rows):
            label = labels.get(record.id)
            values = (
                record.inspected_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if record.inspected_at else "",
                shown_name(record.image_path), f"{record.score:.3f}", record.verdict, record.label or "",
                label.note if label else "", rule_text(record.threshold, record.uncertain_low),
                str(record.model_version_id or ""),
                record.source,
            )
            for c, value in enumerate(values):
                item = QTableWidgetItem(value)
                if c == 1:
                    item.setToolTip(record.image_path)
                elif c == 5 and value:
                    item.setToolTip(value)
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self.count_label.setText(
            f"{total} inspections ({'first ' + str(len(rows)) + ' shown' if total > len(rows) else 'all shown'}); "
            f"NG rate {result.summary.ng_rate:.1%}"
        )
        self.searched.emit(len(rows))

    def _search_failed(self, generation: int, message: str) -> None:
        if generation == self._search_generation:
            self.count_label.setText("")
            QMessageBox.warning(self, "Search", message)

    # ----------------------------------------------------------------------------- background jobs
    def _start(self, name: str, make_generator, **slots):
        """A background job with the dialog busy until it ends (signals connected before it starts)."""
        job = start_job(name, make_generator, self, **slots)
        self._busy_jobs.add(job)
        job.ended.connect(lambda: self._job_ended(job))
        self._show_busy()
        return job

    def _job_ended(self, job) -> None:
        self._busy_jobs.discard(job)
        self._show_busy()

    def is_busy(self) -> bool:
        return bool(self._busy_jobs)

    def _show_busy(self) -> None:
        busy = self.is_busy()
        self.busy_bar.setVisible(busy)
        if busy:
            self.setCursor(Qt.CursorShape.BusyCursor)
        else:
            self.unsetCursor()

    def _save_path(self, title: str, suffix: str) -> str | None:
        # Opens in the project's folder, not in the program's working directory.
        start = str(Path(self.records.root) / f"report{suffix}")
        path, _ = QFileDialog.getSaveFileName(self, title, start, f"*{suffix}")
        return path or None

    def _export(self, title: str, path: str, write) -> None:
        """Run ``write() -> message`` in the background; the export buttons wait until it is done."""
        def run(token):
            yield
            return write()

        def written(message: str) -> None:
            self._enable_exports(True)
            self.count_label.setText(message)
            self.exported.emit(path)

        self._enable_exports(False)
        self.count_label.setText(f"writing {Path(path).name}…")
        job = self._start(title, run, succeeded=written, failed=lambda message: self._export_failed(title, message))
        job.ended.connect(lambda: self._enable_exports(True))

    def _enable_exports(self, enabled: bool) -> None:
        for button in self.export_buttons:
            button.setEnabled(enabled)

    def _export_failed(self, title: str, message: str) -> None:
        self._enable_exports(True)
        self.count_label.setText("")
        QMessageBox.warning(self, title, message)

    def export_csv(self, path: str | None = None) -> None:
        path = path or self._save_path("Export inspections", ".csv")
        if path:
            records, query = self.records, self.query(None)
            self._export("Export", path, lambda: f"{reports.export_inspections(records, query, path)} rows written to {path}")

    def export_labels(self, path: str | None = None) -> None:
        path = path or self._save_path("Export labels", ".csv")
        if path:
            records, query = self.records, self.query(None)
            self._export("Export", path, lambda: f"{reports.labels_export(records, query, path)} labels written to {path}")

    @staticmethod
    def _pdf(build_report, path: str) -> str:
        """Gather the report and draw it (both in the background job: queries, thumbnails, heat maps, PDF)."""
        from anomalyapp.render.pdf_report import write_pdf

        write_pdf(build_report(), path)
        return f"report written to {path}"

    def export_pdf(self, path: str | None = None) -> None:
        path = path or self._save_path("PDF report", ".pdf")
        if path:
            records, query = self.records, self.query(None)
            self._export("Report", path, lambda: self._pdf(lambda: reports.build_report(records, query), path))

    def export_daily(self, path: str | None = None) -> None:
        path = path or self._save_path("Daily report", ".pdf")
        if path:
            records, day = self.records, self.date_to.date().toPython()
            self._export("Report", path, lambda: self._pdf(lambda: reports.daily_summary(records, day), path))

    def export_monthly(self, path: str | None = None) -> None:
        path = path or self._save_path("Monthly report", ".pdf")
        if path:
            records, day = self.records, self.date_to.date().toPython()
            self._export("Report", path,
                         lambda: self._pdf(lambda: reports.monthly_summary(records, day.year, day.month), path))

    # ------------------------------------------------------------------------ threshold from labels
    def _threshold_tab(self) -> QWidget:
        self.threshold_text = QLabel("")
        self.threshold_text.setObjectName("labels_threshold_text")
        self.threshold_text.setTextFormat(Qt.TextFormat.RichText)
        self.threshold_text.setWordWrap(True)
        self.apply_button = QPushButton("Apply the proposed threshold")
        self.apply_button.setObjectName("apply_threshold_button")
        self.apply_button.clicked.connect(self.apply_proposal)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(self.threshold_text)
        layout.addWidget(self.apply_button)
        layout.addStretch(1)
        return page

    def refresh_threshold(self, current: float | None = None) -> None:
        """The proposal from the labels; every labelled part is scored again by the model in use first,
        in the background, when the window gave a scorer (until then the stored scores are shown)."""
        self._current_threshold = current
        if self.label_scorer is not None and self.labelled_scores is None:
            if self.label_job is None or not self.label_job.running:
                self.label_job = start_job("Scoring the labelled parts", self.label_scorer, self,
                                           succeeded=self._labels_scored, failed=self._labels_failed)
        self._show_proposal(current)

    def _labels_scored(self, labelled) -> None:
        self.labelled_scores = labelled
        self._show_proposal(self._current_threshold)

    def _labels_failed(self, message: str) -> None:
        QMessageBox.warning(self, "Threshold from labels", message)

    def _show_proposal(self, current: float | None) -> None:
        labelled = self.labelled_scores
        self._proposal = self.records.threshold_from_labels(
            current, labelled=labelled.pairs if labelled is not None else None,
            target_false_reject_rate=self.target_false_reject_rate)
        p = self._proposal
        scope = (labelled.describe() if labelled is not None else
                 "stored scores of the model in use" + (" (scoring every labelled part…)" if self.label_scorer else ""))
        text = (f"<p>Confirmed labels: {p.labelled} ({p.labelled_ng} NG), {scope}. {p.message}</p>"
                f"<p>At the current threshold {p.current_threshold:.3f}: precision {_fmt(p.precision)}, "
                f"recall {_fmt(p.recall)}, F1 {_fmt(p.f1)}"
                + (f", good parts judged NG {_share(p.false_reject_rate)}" if p.false_reject_rate is not None else "")
                + ".</p>")
        if p.proposed_threshold is not None and p.target_false_reject_rate is not None:
            text += (f"<p><b>Proposed threshold {p.proposed_threshold:.3f}</b> (at most "
                     f"{_share(p.target_false_reject_rate)} of the labelled good parts NG): good parts judged NG "
                     f"{_share(p.proposed_false_reject_rate)}, recall {_fmt(p.proposed_recall)}, precision "
                     f"{_fmt(p.proposed_precision)}. Compared with the current threshold, "
                     f"{p.describe_changes()}.</p>")
        elif p.proposed_threshold is not None:
            text += (f"<p><b>F1-optimal threshold {p.proposed_threshold:.3f}</b>: precision {_fmt(p.proposed_precision)}, "
                     f"recall {_fmt(p.proposed_recall)}, F1 {_fmt(p.proposed_f1)}.</p>")
        self.threshold_text.setText(text)
        allowed = self.access.can("apply_threshold")
        # A proposal that is the threshold in use, as rules are stated, would apply nothing but a new version.
        in_use = p.proposed_threshold is not None and stated_rule(p.proposed_threshold, None) == stated_rule(
            p.current_threshold, None)
        self.apply_button.setEnabled(p.proposed_threshold is not None and allowed and not in_use)
        self.apply_button.setToolTip("only a supervisor applies a threshold" if not allowed else
                                     "the proposal is the threshold in use" if in_use else "")

    def apply_proposal(self) -> None:
        if self._proposal.proposed_threshold is None:
            return
        try:
            version = self.records.apply_threshold(self._proposal.proposed_threshold, self.access.user)
        except AppError as error:
            QMessageBox.warning(self, "Threshold", str(error))
            return
        self.threshold_applied.emit(version.threshold)
        self.refresh_versions()
        self.refresh_threshold(version.threshold)

    # ------------------------------------------------------------------------------- versions
    def _versions_tab(self) -> QWidget:
        self.versions_table = QTableWidget(0, 6)
        self.versions_table.setObjectName("versions_table")
        self.versions_table.setHorizontalHeaderLabels(VERSION_COLUMNS)
        # The change (a correction's names every image it taught) takes the width left and is cut at its end, the
        # whole of it in the cell's tooltip; the short columns keep their width, each on one line.
        header = self.versions_table.horizontalHeader()
        header.setStretchLastSection(False)
        for column, name in enumerate(VERSION_COLUMNS):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch if name == "Change"
                                        else QHeaderView.ResizeMode.ResizeToContents)
        self.versions_table.verticalHeader().hide()  # row numbers beside the version numbers read as a second id
        self.versions_table.setWordWrap(False)
        self.versions_table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.versions_table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.versions_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.rollback_button = QPushButton("Roll back to the selected version")
        self.rollback_button.setObjectName("rollback_button")
        self.rollback_button.clicked.connect(self.rollback_selected)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(self.versions_table)
        layout.addWidget(self.rollback_button)
        return page

    def refresh_versions(self) -> None:
        versions = self.records.versions()
        current = self.records.current_version()
        users = {u.id: u.name for u in self.records.auth.users()}
        rules = self.records.rules_shown(versions)
        self.versions_table.setRowCount(len(versions))
        for r, version in enumerate(versions):
            marker = " (in use)" if current is not None and version.id == current.id else ""
            values = (f"{version.id}{marker}", str(version.parent_id or ""), f"{version.change} — {version.folder}",
                      rule_text(*rules[version.id]), users.get(version.user_id, ""),
                      version.created_at.astimezone().strftime("%Y-%m-%d %H:%M"))
            for c, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setData(Qt.ItemDataRole.UserRole, version.id)
                if VERSION_COLUMNS[c] == "Change":
                    item.setToolTip(value)
                self.versions_table.setItem(r, c, item)
        self.version.clear()
        self.version.addItem("any", None)
        for version in versions:
            self.version.addItem(f"{version.id}: {version.change}", version.id)
        allowed = self.access.can("rollback")
        self.rollback_button.setEnabled(allowed)
        self.rollback_button.setToolTip("Its model, and the rule (threshold and Review band) it was last judged with"
                                        if allowed else "only a supervisor rolls the model back")

    def rollback_selected(self) -> None:
        items = self.versions_table.selectedItems()
        if not items:
            return
        try:
            version = self.records.rollback(items[0].data(Qt.ItemDataRole.UserRole), self.access.user)
        except AppError as error:
            QMessageBox.warning(self, "Roll back", str(error))
            return
        self.version_restored.emit(version)
        self.refresh_versions()

    # --------------------------------------------------------------------------------- audit
    def _audit_tab(self) -> QWidget:
        self.audit_table = QTableWidget(0, 5)
        self.audit_table.setObjectName("audit_table")
        self.audit_table.setHorizontalHeaderLabels(["When", "Who", "Action", "Subject", "Old → new"])
        self.audit_table.horizontalHeader().setStretchLastSection(True)
        self.audit_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh_audit)
        # The table shows the newest 500 entries; the export holds the whole log, oldest first.
        self.audit_export_button = QPushButton("Export CSV…")
        self.audit_export_button.setObjectName("audit_export_button")
        self.audit_export_button.setToolTip("The whole audit log as CSV: who changed what and when")
        self.audit_export_button.clicked.connect(lambda: self.export_audit())
        self.audit_message = QLabel("")
        self.audit_message.setObjectName("audit_message")
        buttons = QHBoxLayout()
        buttons.addWidget(refresh)
        buttons.addWidget(self.audit_export_button)
        buttons.addWidget(self.audit_message, 1)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(self.audit_table)
        layout.addLayout(buttons)
        self.refresh_audit()
        return page

    def export_audit(self, path: str | None = None) -> None:
        path = path or self._save_path("Export audit log", ".csv")
        if not path:
            return
        records = self.records

        def run(token):
            yield
            return f"{reports.audit_export(records, path)} audit entries written to {path}"

        def written(message: str) -> None:
            self.audit_message.setText(message)
            self.exported.emit(path)

        self.audit_export_button.setEnabled(False)
        self.audit_message.setText(f"writing {Path(path).name}…")
        job = self._start("Export audit log", run, succeeded=written,
                          failed=lambda message: (self.audit_message.setText(""),
                                                  QMessageBox.warning(self, "Export audit log", message)))
        job.ended.connect(lambda: self.audit_export_button.setEnabled(True))

    def refresh_audit(self) -> None:
        lines = reports.audit_lines(self.records, last=500)[::-1]  # newest first, as the export has them oldest first
        self.audit_table.setRowCount(len(lines))
        for r, (_id, at, user, action, subject, about, old, new) in enumerate(lines):
            values = (reports.shown_time(at), user, action, about or subject, f"{old} → {new}" if old or new else "")
            for c, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setToolTip(value)
                self.audit_table.setItem(r, c, item)
        self.audit_table.resizeColumnsToContents()


def replace_limit(query: InspectionQuery) -> InspectionQuery:
    from dataclasses import replace

    return replace(query, limit=None, offset=0)
