"""What an analyst sees, in a real browser: dagster-webserver on loopback, headless Chromium
driven by Playwright.

The drops are loaded the way a user without the daemon does it: `retention-assets run` on the
webserver's own instance (DAGSTER_HOME), twice for earlier snapshots, so the UI knows every
drop file as a partition of its source. The analyst then clicks "Materialize all" on the
`analytics` job's page (the global graph's button cannot run the partitioned sources and the
unpartitioned analytics in one run), and reads the rfm, retention and clv pages, a source's
partitions (one per drop file) and `loaded_files`.

Screenshots go to artifacts/screenshots/ in the repo root (CI keeps them as artifacts):
01_asset_graph.png, 02_rfm_segment_profile.png, 03_rfm_segment_plot.png,
04_retention_plot.png, 05_clv_tables.png, 06_clv_plot.png, 07_attendance_partitions.png,
08_loaded_files.png, 09_catalog.png, 10_cohort_heatmap.png, 11_segment_migration.png,
12_moved_into_at_risk.png, 13_clv_forecast.png, 14_p_alive.png, 15_report.png.

Only the webserver runs, with runs launched straight from it (DefaultRunCoordinator): without a
daemon the csv_drops sensor never ticks, so the button's run is the only one it starts. Chromium
comes from Debian (`apt-get install chromium`); Playwright only drives it and never downloads a
browser. Without /usr/bin/chromium the test is skipped, unless RETENTION_REQUIRE_BROWSER=1.
"""

import csv
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

from retention_assets.cli import main
from retention_assets.storage.database import connect
from retention_assets.storage.tables import read_table

REPO_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
WEBSERVER = Path(sys.executable).parent / "dagster-webserver"
SAMPLE_DATA = REPO_ROOT / "data"
LOCATION = "retention_assets.definitions"  # the code location `-m retention_assets.definitions`
# The sample's attendance.csv split as monthly exports would arrive: its September and October
# check-ins as drops of their own (same rows, so the same figures).
ATTENDANCE_DROPS = ["attendance_2026-09.csv", "attendance_2026-10.csv"]
ATTENDANCE_FILES = ["attendance.csv", *ATTENDANCE_DROPS]
VIEWPORT = {"width": 1600, "height": 1000}  # a laptop screen: wide tables must still fit
START_TIMEOUT = 90  # seconds for the webserver and its code server to come up (about 15 s)
RUN_TIMEOUT = 180  # seconds for the analytics on the sample data (about 10 s)
UI_TIMEOUT_MS = 30_000
EARLIER_SNAPSHOTS = ["2026-08-31", "2026-09-30"]  # the sample data's latest event: 2026-10-31

INSTANCE_YAML = """\
run_coordinator:  # launch runs from the webserver itself: no daemon, so no sensor ticks
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
nux:  # the "Join the Dagster community" pop-up would cover the screenshots
  enabled: false
"""

pytestmark = pytest.mark.timeout(600)


def _require_browser() -> None:
    missing = [
        what
        for what, present in (
            (str(CHROMIUM), CHROMIUM.exists()),
            ("the playwright package", importlib.util.find_spec("playwright") is not None),
            (str(WEBSERVER), WEBSERVER.exists()),
        )
        if not present
    ]
    if not missing:
        return
    reason = f"browser test needs {', '.join(missing)} (Chromium: apt-get install chromium)"
    if os.environ.get("RETENTION_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Webserver:
    url: str
    log: Path

    def graphql(self, query: str) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def runs(self) -> list[dict]:
        """Every run, newest first."""
        data = self.graphql("{ runsOrError { ... on Runs { results { runId status jobName } } } }")
        return data["runsOrError"]["results"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _restore_signals() -> None:
    # Started from a backgrounded shell, SIGINT arrives ignored and stays ignored across exec:
    # the webserver would then not stop on SIGINT/SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the whole process group (webserver, code server, run workers), then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_until_loaded(server: Webserver, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    query = """{ workspaceOrError { ... on Workspace { locationEntries {
        name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dagster-webserver exited:\n{server.tail()}"
        try:
            entries = server.graphql(query)["workspaceOrError"]["locationEntries"]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            entries = []
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            errors = [e["locationOrLoadError"].get("message") for e in entries]
            assert errors == [None], f"code location failed to load: {errors}\n{server.tail()}"
            return
        time.sleep(0.5)
    pytest.fail(f"dagster-webserver not ready after {START_TIMEOUT} s:\n{server.tail()}")


@pytest.fixture(autouse=True)
def _browser_available() -> None:
    """Checked before any other fixture of the test starts a process or fills a database."""
    _require_browser()


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    name = f"browser_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg2.connect(database_url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = shutil.copytree(SAMPLE_DATA, tmp_path / "data")
    with (data / "attendance.csv").open(newline="") as f:
        header, *rows = csv.reader(f)
    by_file: dict[str, list[list[str]]] = {name: [] for name in ATTENDANCE_FILES}
    for row in rows:  # check_in is the third column: YYYY-MM-DD hh:mm:ss
        drop = f"attendance_{row[2][:7]}.csv"
        by_file[drop if drop in by_file else "attendance.csv"].append(row)
    for name, file_rows in by_file.items():
        assert file_rows, name
        with (data / name).open("w", newline="") as f:
            csv.writer(f).writerows([header, *file_rows])
    then = time.time() - 60  # exported a while ago: no waiting for files still being written
    for path in data.iterdir():
        os.utime(path, (then, then))
    return data


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """DAGSTER_HOME of the webserver, and of the command line runs before it."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    return home


@pytest.fixture
def earlier_snapshots(
    database_url: str,
    schema: str,
    data_dir: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> list[str]:
    """Snapshots stored before the analyst's run (as monthly runs would have left them), so the
    retention plot has a history to draw. `retention-assets run`, in this process, on the UI's
    instance: the first loads every drop (one run per source, registering the files as
    partitions), the second finds nothing new and runs only the analytics."""
    monkeypatch.chdir(data_dir.parent)  # no stray .env
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("RETENTION_DB_SCHEMA", schema)
    for as_of in EARLIER_SNAPSHOTS:
        assert main(["run", "--data-dir", str(data_dir), "--as-of", as_of]) == 0
    return EARLIER_SNAPSHOTS


@pytest.fixture
def webserver(
    database_url: str, schema: str, data_dir: Path, home: Path, tmp_path: Path
) -> Iterator[Webserver]:
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DATABASE_URL": database_url,
        "RETENTION_DB_SCHEMA": schema,
        "RETENTION_DATA_DIR": str(data_dir),
        "RETENTION_SENSOR_INTERVAL": "3600",
    }
    server = Webserver(url=f"http://127.0.0.1:{port}", log=tmp_path / "webserver.log")
    with server.log.open("wb") as log:
        proc = subprocess.Popen(
            [str(WEBSERVER), "-h", "127.0.0.1", "-p", str(port)]
            + ["-m", "retention_assets.definitions"],
            cwd=tmp_path,  # away from the repo's .env, which the Dagster CLIs would load
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_restore_signals,
        )
    try:
        _wait_until_loaded(server, proc)
        yield server
    finally:
        _stop(proc)


def _wait_for_new_run(server: Webserver, before: int) -> dict:
    """The run started after the first `before`, once finished."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        runs = server.runs()
        if len(runs) > before and runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return runs[0]
        time.sleep(1)
    pytest.fail(f"no finished run after {RUN_TIMEOUT} s: {server.runs()}\n{server.tail()}")


def _metadata_row(page, label: str):
    """The row of the asset page's Metadata table whose key is `label`."""
    return page.locator("tr", has=page.get_by_text(label, exact=True)).last


def _open_markdown_image(page, label: str):
    """Open the [Show Markdown] dialog of metadata entry `label`; return its inlined PNG."""
    row = _metadata_row(page, label)
    row.scroll_into_view_if_needed()
    row.get_by_text("[Show Markdown]").click()
    image = page.get_by_role("dialog").locator('img[src^="data:image/png;base64,"]')
    image.wait_for(state="visible")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    return image


def _screenshot(page, name: str) -> None:
    # Finished transitions only: a dialog caught fading in is half transparent.
    page.screenshot(path=SCREENSHOTS / name, animations="disabled")


def _assert_fits(table) -> None:
    """The whole table is inside the window: no column cut off on the right."""
    box = table.bounding_box()
    assert box["x"] + box["width"] <= VIEWPORT["width"], box


def _font_size(locator) -> float:
    return float(locator.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))


def _close_dialog(page) -> None:
    page.get_by_role("dialog").get_by_role("button", name="Close").click()
    page.get_by_role("dialog").wait_for(state="detached")


def test_analyst_runs_the_analytics_from_the_ui_and_reads_segments_partitions_and_retention(
    earlier_snapshots: list[str],
    webserver: Webserver,
    database_url: str,
    schema: str,
    data_dir: Path,
):
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    earlier = webserver.runs()  # the command line's: a load per source, then two analytics
    assert sorted(r["jobName"] for r in earlier) == sorted(
        ["analytics"] * len(earlier_snapshots)
        + ["load_attendance", "load_customers", "load_packages", "load_transactions"]
    )
    assert {r["status"] for r in earlier} == {"SUCCESS"}

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)  # assertions wait as long (busy machine)

            # The analytics job's page: "Materialize all" runs loaded_files and downstream.
            page.goto(f"{webserver.url}/locations/{LOCATION}/jobs/analytics")
            page.get_by_role("button", name="Materialize all").click()
            run = _wait_for_new_run(webserver, len(earlier))
            assert run["status"] == "SUCCESS", f"{run}\n{webserver.tail()}"
            assert run["jobName"] == "analytics"
            assert len(webserver.runs()) == len(earlier) + 1  # nothing from the sensor

            # The global asset graph, both groups unfolded.
            page.goto(f"{webserver.url}/asset-groups")
            page.get_by_role("button", name="Materialize all").wait_for()  # "...", a dialog
            unfold = page.locator('[aria-label="unfold_more"]')
            unfold.first.wait_for()
            for remaining in reversed(range(unfold.count())):
                unfold.first.click()
                expect(unfold).to_have_count(remaining)
            page.get_by_role("button", name="Hide navigation").click()
            page.reload()  # re-fits the unfolded graph (kept in local storage) to the window
            for asset in ("customers", "loaded_files", "rfm_features", "rfm", "clv", "retention"):
                page.get_by_text(asset, exact=True).first.wait_for()
            expect(page.get_by_text(re.compile(r"^Loading"))).to_have_count(0)
            expect(page.get_by_text("Never materialized")).to_have_count(0)
            _screenshot(page, "01_asset_graph.png")

            with closing(connect(database_url)) as conn:
                rfm = read_table(conn, schema, "rfm")
                retention = read_table(conn, schema, "retention")
                stored_cohorts = read_table(conn, schema, "cohort_retention")
                migration = read_table(conn, schema, "segment_migration")
                with conn.cursor() as cur:
                    cur.execute(f'SELECT source, file, rows_read FROM "{schema}".loaded_files')
                    loaded = {(source, file): rows for source, file, rows in cur.fetchall()}
            sizes = rfm["segment"].value_counts()
            into_at_risk = migration.loc[
                (migration["to_segment"] == "At Risk")
                & ~migration["from_segment"].isin(["At Risk", "(new)"])
            ]
            moved_in = int(into_at_risk["customers"].sum())

            # rfm: the segment profile table, then the segment plot.
            page.goto(f"{webserver.url}/assets/rfm")
            profile = _metadata_row(page, "segment_profile")
            profile.scroll_into_view_if_needed()
            cells = profile.locator("table tbody tr").evaluate_all(
                "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
            )
            shown = {row[0]: int(row[1]) for row in cells}
            assert shown == sizes.to_dict()
            headers = profile.locator("table thead th").all_inner_texts()
            assert headers[:3] == ["segment", "customers", "share"]
            _assert_fits(profile.locator("table"))
            _screenshot(page, "02_rfm_segment_profile.png")

            plot = _open_markdown_image(page, "segment_plot")
            assert plot.bounding_box()["width"] > 400
            _screenshot(page, "03_rfm_segment_plot.png")
            _close_dialog(page)

            # retention: the latest rate as a number, and the history plot.
            page.goto(f"{webserver.url}/assets/retention")
            latest = retention.sort_values("as_of").iloc[-1]
            rate = _metadata_row(page, "retention_rate").locator("td").last.inner_text()
            assert rate == f"{latest['retention_rate']:.2f}".rstrip("0").rstrip(".")  # rounded
            snapshots = _metadata_row(page, "snapshots").locator("td").last.inner_text()
            assert int(snapshots) == len(retention) == len(earlier_snapshots) + 1
            _open_markdown_image(page, "retention_plot")
            _screenshot(page, "04_retention_plot.png")
            _close_dialog(page)

            # clv: top customers table and the distribution plot.
            page.goto(f"{webserver.url}/assets/clv")
            top = _metadata_row(page, "top_customers")
            expect(top.locator("table tbody tr")).to_have_count(10)
            by_type = _metadata_row(page, "clv_by_type")
            by_type.scroll_into_view_if_needed()
            _assert_fits(by_type.locator("table"))
            _screenshot(page, "05_clv_tables.png")
            _open_markdown_image(page, "clv_plot")
            _screenshot(page, "06_clv_plot.png")
            _close_dialog(page)

            # attendance: one partition per drop file, all materialized; the latest drop open.
            page.goto(f"{webserver.url}/assets/attendance?view=partitions")
            expect(page.get_by_text(f"Materialized ({len(ATTENDANCE_FILES)})")).to_be_visible()
            expect(page.get_by_text("Failed (0)")).to_be_visible()
            expect(page.get_by_text("Missing (0)")).to_be_visible()
            for name in ATTENDANCE_FILES:
                expect(page.get_by_text(name, exact=True).first).to_be_visible()
            page.get_by_text(ATTENDANCE_DROPS[-1], exact=True).first.click()
            expect(page).to_have_url(re.compile(r"partition=attendance_2026-10\.csv"))
            # Its latest materialization: the run of the load_attendance job.
            expect(page.get_by_role("link", name="load_attendance")).to_be_visible()
            _screenshot(page, "07_attendance_partitions.png")

            # loaded_files: the manifest, one row per file with its rows read and rejected.
            page.goto(f"{webserver.url}/assets/loaded_files")
            files = _metadata_row(page, "files")
            files.scroll_into_view_if_needed()
            rows = files.locator("table tbody tr").evaluate_all(
                "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
            )
            shown = {(row[0], row[1]): int(row[2]) for row in rows}
            assert shown == loaded
            assert {file for _, file in shown} == {
                "customers.csv",
                "packages.csv",
                "transactions.csv",
                *ATTENDANCE_FILES,
            }
            _screenshot(page, "08_loaded_files.png")

            # The catalog: descriptions read as plain sentences, no Markdown markup.
            page.goto(f"{webserver.url}/assets")
            page.get_by_text("cohort_retention", exact=True).first.wait_for()
            expect(page.get_by_text("Are newer members staying longer?").first).to_be_visible()
            expect(page.get_by_text(re.compile(r"\*\*"))).to_have_count(0)
            _screenshot(page, "09_catalog.png")

            # cohort_retention: the heatmap, one row per signup month.
            page.goto(f"{webserver.url}/assets/cohort_retention")
            cohorts = _metadata_row(page, "cohorts").locator("td").last.inner_text()
            assert int(cohorts) == stored_cohorts["cohort_month"].nunique()
            _open_markdown_image(page, "cohort_heatmap")
            _screenshot(page, "10_cohort_heatmap.png")
            _close_dialog(page)

            # segment_migration: against the snapshot before, and who moved into At Risk.
            page.goto(f"{webserver.url}/assets/segment_migration")
            previous = _metadata_row(page, "previous_as_of").locator("td").last.inner_text()
            assert previous == earlier_snapshots[-1]
            _open_markdown_image(page, "migration_matrix")
            _screenshot(page, "11_segment_migration.png")
            _close_dialog(page)
            movers = _metadata_row(page, "moved_into_at_risk")
            movers.scroll_into_view_if_needed()
            expect(movers.locator("table tbody tr")).to_have_count(min(20, moved_in))
            _assert_fits(movers.locator("table"))
            _screenshot(page, "12_moved_into_at_risk.png")

            # clv_forecast: the page (its top customers), then the P(alive) histogram.
            page.goto(f"{webserver.url}/assets/clv_forecast")
            top = _metadata_row(page, "top_customers")
            expect(top.locator("table tbody tr")).to_have_count(10)
            _assert_fits(top.locator("table"))
            _screenshot(page, "13_clv_forecast.png")
            _open_markdown_image(page, "p_alive_plot")
            _screenshot(page, "14_p_alive.png")
            _close_dialog(page)

            # The HTML report of the same tables, as someone outside Dagster opens it.
            report_dir = data_dir.parent / "report"
            assert main(["report", "--out", str(report_dir)]) == 0  # earlier_snapshots' env
            page.goto((report_dir / "index.html").as_uri())
            for heading in ("Segment migration", "Cohort retention", "Probabilistic CLV"):
                expect(page.get_by_role("heading", name=re.compile(heading))).to_be_visible()
            expect(
                page.get_by_role("heading", name=re.compile("Moved into At Risk"))
            ).to_be_visible()
            for alt in ("cohort retention heatmap", "segment migration matrix"):
                image = page.get_by_alt_text(alt)
                image.scroll_into_view_if_needed()
                page.wait_for_function(
                    "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
                )
            section = page.get_by_role("heading", name="Retention", exact=True)
            headline = page.locator("p.headline")
            assert _font_size(section) > _font_size(headline)  # a heading, then its figure
            _screenshot(page, "15_report.png")
        finally:
            browser.close()

    assert sorted(p.name for p in SCREENSHOTS.glob("*.png")) == [
        "01_asset_graph.png",
        "02_rfm_segment_profile.png",
        "03_rfm_segment_plot.png",
        "04_retention_plot.png",
        "05_clv_tables.png",
        "06_clv_plot.png",
        "07_attendance_partitions.png",
        "08_loaded_files.png",
        "09_catalog.png",
        "10_cohort_heatmap.png",
        "11_segment_migration.png",
        "12_moved_into_at_risk.png",
        "13_clv_forecast.png",
        "14_p_alive.png",
        "15_report.png",
    ]
