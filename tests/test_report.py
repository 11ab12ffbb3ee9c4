"""`arenapref report`: the HTML page is rendered in headless Chromium (as a person would open it) and every figure
must load; texts from the data are escaped; the calibration section says where its temperature comes from."""

from __future__ import annotations

import json
import shutil
import tempfile

import numpy as np
import pandas as pd
import pytest

from arenapref.evaluation.report import write_report
from conftest import run_cli

FIGURES = {"reliability.png", "confusion.png", "loss_by_length.png", "loss_by_turns.png", "position_bias.png"}
HOSTILE = "<script>document.title='pwned'</script><b>bold?</b> & more"


def chromium():
    """Headless Debian Chromium through its ChromeDriver (installed by `make test`)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert browser and driver, "Chromium not found: `make test` installs Debian packages chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}", "--window-size=1200,2400"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, small_csv, rank_model):
    rows = pd.read_csv(small_csv, dtype=str, keep_default_na=False).head(40)
    turns = json.loads(rows.loc[0, "response_a"])
    rows.loc[0, "response_a"] = json.dumps([HOSTILE] + turns[1:])  # first turn: shown before the 400-char cut
    data = tmp_path_factory.mktemp("report_data") / "rows.csv"
    rows.to_csv(data, index=False)
    out = tmp_path_factory.mktemp("report") / "site"
    proc = run_cli("report", "--model", rank_model, "--data", data, "--output", out, "--worst", 40)
    assert "index.html" in proc.stdout
    return out


def test_report_renders_in_chromium_with_every_figure_loaded(report_dir, tmp_path):
    assert FIGURES <= {p.name for p in report_dir.iterdir()}
    driver = chromium()
    try:
        driver.get((report_dir / "index.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        boards = {f"leaderboard/{p.name}" for p in (report_dir / "leaderboard").glob("*.png")}
        assert {src for src, _, _ in images} == FIGURES | boards
        assert all(complete and width > 0 for _, complete, width in images), images
        assert driver.execute_script("return document.scripts.length") == 0  # the hostile text stayed text
        assert driver.title.startswith("arenapref report")
        body = driver.find_element("tag name", "body").text
        for heading in ("Metrics", "Calibration and errors", "Position bias", "Worst-predicted rows"):
            assert heading in body
        assert HOSTILE in body  # shown literally in the worst-rows table
        driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_report_numbers_match_the_model(report_dir, rank_model):
    page = (report_dir / "index.html").read_text()
    meta = json.loads((rank_model / "arenapref.json").read_text())
    temperature = meta.get("calibration", {}).get("temperature", 1.0)
    if temperature == 1.0:
        assert "fitted on this same data" in page
    else:
        assert f"T = {temperature:.3f}" in page
    assert "40 labelled rows" in page
    # The rank model is a Davidson model of two side scores: swapping A and B swaps P(A) and P(B) exactly,
    # so its position-bias agreement is 100%.
    assert "agrees on <b>100.0%</b>" in page


class SwapSensitiveBackend:
    """A stand-in model that prefers side A (position bias) and is overconfident."""

    def predict_logits(self, frame, progress=None):
        diff = np.array([len(" ".join(a)) - len(" ".join(b)) for a, b in zip(frame["response_a"], frame["response_b"])])
        return np.stack([np.tanh(diff / 200) * 3 + 0.8, -np.tanh(diff / 200) * 3, np.zeros(len(diff))], 1), None


def test_report_with_a_stored_temperature_and_position_bias(tmp_path, small_csv):
    from arenapref.api import Judge
    from arenapref.data.tables import load_frame

    frame = load_frame(small_csv, require_labels=True)
    judge = Judge(SwapSensitiveBackend(), {"model_type": "stub", "calibration": {"temperature": 2.5}})
    path = write_report(judge, frame, tmp_path / "out", model_name="stub", data_name="small.csv", worst=5)
    page = path.read_text()
    assert "stores a calibration temperature T = 2.500" in page
    assert page.count("<tr><td>") >= 5 + 3  # metrics rows and the five worst rows
    agreement = float(page.split("agrees on <b>")[1].split("%")[0])
    assert agreement < 100.0  # the +0.8 logit for side A flips some rows when swapped
    assert FIGURES <= {p.name for p in (tmp_path / "out").iterdir()}


def test_report_without_a_stored_temperature_previews_one_fitted_on_the_data(tmp_path, small_csv):
    from arenapref.api import Judge
    from arenapref.data.tables import load_frame
    from arenapref.evaluation.calibration import fit_temperature

    frame = load_frame(small_csv, require_labels=True)
    judge = Judge(SwapSensitiveBackend(), {"model_type": "stub"})
    page = write_report(judge, frame, tmp_path / "out", worst=5).read_text()
    shown = float(page.split("fitted on this same data (T = ")[1].split(")")[0])
    expected = fit_temperature(np.log(judge.predict_proba(frame)), frame["label"].to_numpy())
    assert shown == pytest.approx(expected, abs=1e-3) and expected > 1.0  # the stub is overconfident


def _campaign(tmp_path):
    """A small campaign.json as bench/active.py writes it (curves made up; the summary computed as the bench does)."""
    from arenapref.labeling.campaign import summarize_campaigns

    curves = {"random": ([1.09, 1.08, 1.07], [1.09, 1.07, 1.06]), "committee": ([1.09, 1.06, 1.05], [1.09, 1.07, 1.06]),
              "<b>odd</b>": ([1.09, 1.09, 1.08], [1.09, 1.08, 1.08])}
    runs = {name: [[{"labels": n, "log_loss": y, "accuracy": 0.45} for n, y in zip((50, 100, 150), seed)]
                   for seed in seeds] for name, seeds in curves.items()}
    campaign = {"kind": "arenapref-active-campaign", "version": 1, "family": "gbdt", "pool_rows": 698,
                "heldout_rows": 301, "seed_size": 50, "batch_size": 50, "budget": 150, **summarize_campaigns(runs)}
    directory = tmp_path / "campaign"
    directory.mkdir()
    (directory / "campaign.json").write_text(json.dumps(campaign))
    return directory, campaign


def test_report_draws_a_campaign_learning_curves(tmp_path):
    directory, campaign = _campaign(tmp_path)
    out = tmp_path / "site"
    proc = run_cli("report", "--campaign", directory, "--output", out)
    assert "index.html" in proc.stdout
    assert (out / "learning_curves.png").stat().st_size > 5000
    assert {p.name for p in out.iterdir()} == {"index.html", "learning_curves.png"}  # no model: no model figures
    page = (out / "index.html").read_text()
    assert "<h2>Choosing battles to label</h2>" in page and 'src="learning_curves.png"' in page
    assert "&lt;b&gt;odd&lt;/b&gt;" in page and "<b>odd</b>" not in page  # strategy names are escaped
    saved = campaign["labels_saved_vs_random"]["committee"]
    assert saved > 0 and f"{saved:+g}" in page and "not reached" in page
    assert f"{campaign['target_log_loss']:.4f}" in page


def test_report_campaign_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, fragment in ((("--campaign", tmp_path / "empty"), "campaign.json"),
                           ((), "nothing to report"),
                           (("--model", tmp_path / "empty"), "--model and --data")):
        proc = run_cli("report", "--output", tmp_path / "out", *args, check=False)
        err = proc.stderr.strip()
        assert proc.returncode == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert fragment in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "campaign.json").write_text(json.dumps({"kind": "something else"}))
    proc = run_cli("report", "--output", tmp_path / "out", "--campaign", tmp_path / "bad", check=False)
    assert proc.returncode == 2 and "not a campaign" in proc.stderr and not (tmp_path / "out").exists()


def test_report_rates_the_battles_from_votes_and_from_the_judge(tmp_path, small_csv):
    from arenapref.api import Judge
    from arenapref.data.tables import load_frame
    from arenapref.ratings.leaderboard import common_models_mask, rate
    from arenapref.ratings.report import boards_section

    frame = load_frame(small_csv, require_labels=True)
    judge = Judge(SwapSensitiveBackend(), {"model_type": "stub"})
    page = write_report(judge, frame, tmp_path / "out", worst=5, more=boards_section).read_text()
    assert "<h2>Leaderboards</h2>" in page and "Spearman" in page
    assert {"leaderboard.png", "win_fraction.png", "battle_count.png", "win_fraction_judge.png"} <= {
        p.name for p in (tmp_path / "out" / "leaderboard").iterdir()}
    battles = frame[["model_a", "model_b"]].astype(str).assign(winner=frame["label"].to_numpy())
    keep = (battles["model_a"] != battles["model_b"]).to_numpy() & common_models_mask(battles, 5)
    table = rate(battles[keep].reset_index(drop=True), battles["winner"].to_numpy()[keep], ci="sandwich").table
    top = table.iloc[0]
    assert f"<td>{top['model']}</td><td>{top['rating']:.0f} ({top['ci_low']:.0f}" in page
