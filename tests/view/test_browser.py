"""Every page of ``forkpath view`` in a real browser (headless Chromium) on real runs: it loads
with no console error, the tree expands, a token's hover shows its alternatives, compare lists
the differing tasks first, a hostile candidate shows as text. Each page leaves a screenshot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from forkpath.batch import read_records

from ._runs import FORKS_ANSWER, FORKS_AT, XSS, LiveServer

pytestmark = pytest.mark.slow


def visit(browser: Any, url: str) -> list[dict[str, Any]]:
    """Load ``url``; return the console errors it logged."""
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(url)
    WebDriverWait(browser, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def shot(browser: Any, folder: Path, name: str) -> None:
    height = browser.execute_script("return Math.min(document.body.scrollHeight + 20, 3000)")
    browser.set_window_size(1400, max(700, height))
    browser.save_screenshot(str(folder / f"{name}.png"))
    browser.set_window_size(1400, 1000)


def texts(browser: Any, css: str) -> list[str]:
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, css)]


def test_runs_page_lists_every_run_with_its_numbers(
    browser: Any, server: LiveServer, runs_dir: Path, screenshots: Path
) -> None:
    assert visit(browser, server.url + "/") == []
    rows = {r.get_attribute("data-run"): r for r in browser.find_elements(By.CSS_SELECTOR, "#runs-body tr")}
    assert set(rows) == {"fake-a", "fake-b", "smollm2", "mcts", "routing", "speculative", "forks"}
    cells = rows["fake-a"].find_elements(By.TAG_NAME, "td")
    records = read_records(runs_dir / "fake-a")
    passed = sum(1 for r in records if r.passed)
    dataset = json.loads((runs_dir / "fake-a" / "run.json").read_text())["dataset"]
    assert dataset.endswith("tasks.jsonl")
    assert [c.text for c in cells[2:8]] == [
        "batch",
        "fake-a",
        dataset,
        "finished",
        "6 / 6",
        f"{100 * passed / 6:.1f} %",
    ]
    assert cells[8].text == str(sum(r.tokens for r in records))
    assert rows["mcts"].find_elements(By.TAG_NAME, "td")[3].text == "mcts-fake"
    assert rows["smollm2"].find_elements(By.TAG_NAME, "td")[4].text == "gsm8k"
    shot(browser, screenshots, "runs")


def test_run_page_shows_tasks_filters_graph_and_plots(
    browser: Any, server: LiveServer, screenshots: Path
) -> None:
    assert visit(browser, server.url + "/runs/fake-a") == []
    outcomes = dict(
        zip(texts(browser, "#tasks td:first-child"), texts(browser, "#tasks td:nth-child(2)"), strict=True)
    )
    assert outcomes == {
        "t0": "passed",
        "t1": "passed",
        "t2": "failed",
        "t3": "passed",
        "t4": "passed",
        "t5": "error",
    }
    graph = browser.find_element(By.CSS_SELECTOR, "svg.flow")
    assert "sample" in graph.text and "strategy best_of_n" in graph.text and "end" in graph.text
    plots = browser.find_elements(By.CSS_SELECTOR, ".plots img")
    assert len(plots) == 2
    assert all(browser.execute_script("return arguments[0].naturalWidth", img) > 100 for img in plots)
    shot(browser, screenshots, "run")
    browser.find_element(By.ID, "failed-only").click()
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    WebDriverWait(browser, 10).until(lambda d: "failed=1" in d.current_url)
    assert sorted(texts(browser, "#tasks td:first-child")) == ["t2", "t5"]
    assert visit(browser, server.url + "/runs/fake-a?outcome=error") == []
    assert texts(browser, "#tasks td:first-child") == ["t5"]
    assert "simulated provider rejection" in browser.find_element(By.ID, "tasks").text


def test_task_page_shows_candidates_verdicts_and_escapes_html(
    browser: Any, server: LiveServer, screenshots: Path
) -> None:
    assert visit(browser, server.url + "/runs/fake-a/tasks/t1") == []
    assert browser.find_element(By.ID, "prompt").text == "q1: what is 1?"
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.candidate")
    assert [r.get_attribute("data-index") for r in rows] == ["0", "1"]
    chosen = browser.find_element(By.CSS_SELECTOR, "tr.candidate.chosen")
    assert chosen.get_attribute("data-index") == "1" and "★ chosen" in chosen.text
    # The hostile candidate is text on the page, and none of it ran.
    assert chosen.find_element(By.CSS_SELECTOR, "pre.cand-text").text == XSS + " The answer is 1."
    assert browser.find_element(By.ID, "answer").text == XSS + " The answer is 1."
    assert browser.execute_script("return window.__xss === undefined")
    assert (
        browser.find_elements(By.CSS_SELECTOR, "main img, main script:not([type='application/json'])") == []
    )
    verdicts = texts(browser, "tr.candidate > td:nth-child(3)")
    assert verdicts == ["failed", "passed"]
    chosen.find_element(By.CSS_SELECTOR, "details.verdict summary").click()
    assert "math_answer passed" in chosen.text and "extracted" in chosen.text
    assert "samples" in browser.find_element(By.CSS_SELECTOR, "table.info").text
    shot(browser, screenshots, "task")


def test_tree_expands_shows_node_text_and_deep_links(
    browser: Any, server: LiveServer, screenshots: Path
) -> None:
    assert visit(browser, server.url + "/runs/mcts/tree/q-42") == []
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.ID, "tree").get_attribute("data-ready") == "1"
    )
    on_path = texts(browser, "li.on-path > .row .label")
    assert on_path[1:] == ["Step 1⏎", "Step 2b⏎"]
    assert browser.find_element(By.ID, "chosen").text == "Step 1\nStep 2b"
    label = next(e for e in browser.find_elements(By.CSS_SELECTOR, "li.node .label") if e.text == "Other⏎")
    other = label.find_element(By.XPATH, "./ancestor::li[1]")
    assert other.find_elements(By.CSS_SELECTOR, "ul") == []
    other.find_element(By.CSS_SELECTOR, ".toggle").click()
    child = WebDriverWait(browser, 10).until(lambda d: other.find_element(By.CSS_SELECTOR, "ul li.node"))
    assert "The answer is 7." in child.text
    assert "visits" in child.text and "value" in child.text
    child.find_element(By.CSS_SELECTOR, ".label").click()
    assert browser.find_element(By.ID, "node-text").text == "The answer is 7."
    link = browser.current_url
    assert "node=" in link
    shot(browser, screenshots, "tree")
    # The link opens the tree at that node, selected.
    assert visit(browser, link) == []
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.ID, "tree").get_attribute("data-ready") == "1"
    )
    selected = browser.find_element(By.CSS_SELECTOR, "li.selected > .row .label")
    assert selected.text.startswith("The answer is 7.")
    assert browser.find_element(By.ID, "node-text").text == "The answer is 7."


def hover_tip(browser: Any, index: int) -> str:
    token = browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")[index]
    ActionChains(browser).move_to_element(token).perform()
    tip = WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "tip"))
    WebDriverWait(browser, 10).until(lambda d: tip.is_displayed())
    return str(tip.text)


def test_token_routing_tokens_by_model_with_alternatives_on_hover(
    browser: Any, server: LiveServer, screenshots: Path
) -> None:
    assert visit(browser, server.url + "/runs/routing/tokens/q-42") == []
    tokens = browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")
    assert "".join(t.text for t in tokens) == "The answer is 42."
    legend = browser.find_element(By.ID, "legend").text
    small, large = (int(part.split(": ")[1].split()[0]) for part in legend.split(" tokens")[:2])
    assert small > 0 and large > 0 and small + large == len(tokens)
    colours = {t.value_of_css_property("background-color") for t in tokens}
    assert len(colours) == 2
    tip = hover_tip(browser, 0)
    assert "alternatives:" in tip and "fake/" in tip and "entropy" in tip
    assert tip.count("%") >= 4  # the token's p and its alternatives'
    shot(browser, screenshots, "tokens")
    browser.find_element(By.ID, "by-entropy").click()
    WebDriverWait(browser, 10).until(lambda d: "colour=entropy" in d.current_url)
    assert "entropy (nats)" in browser.find_element(By.ID, "legend").text


def test_speculative_decoding_tokens_show_drafted_and_target_tokens(browser: Any, server: LiveServer) -> None:
    assert visit(browser, server.url + "/runs/speculative/tokens/q-42") == []
    tokens = browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")
    assert "".join(t.text for t in tokens) == "The answer is 42, I am sure."
    legend = browser.find_element(By.ID, "legend").text
    assert "fake/small: " in legend and "fake/large: " in legend
    drafted, corrected = (int(part.split(": ")[1].split()[0]) for part in legend.split(" tokens")[:2])
    assert drafted > 0 and corrected > 0 and drafted + corrected == len(tokens)
    tip = hover_tip(browser, len(tokens) - 1)
    assert "fake/large" in tip and "alternatives:" in tip


def test_smollm2_run_task_and_tokens(
    browser: Any, server: LiveServer, runs_dir: Path, screenshots: Path
) -> None:
    records = {r.task_id: r for r in read_records(runs_dir / "smollm2")}
    assert len(records) == 2 and all(r.status == "ok" for r in records.values())
    assert visit(browser, server.url + "/runs/smollm2") == []
    assert sorted(texts(browser, "#tasks td:first-child")) == sorted(records)
    task_id, record = next(iter(records.items()))
    assert visit(browser, server.url + "/runs/smollm2/tasks/" + quote(task_id)) == []
    chosen = browser.find_element(By.CSS_SELECTOR, "tr.candidate.chosen pre.cand-text")
    assert chosen.text == (record.answer or "").strip()
    assert "local/smollm2-135m" in browser.find_element(By.CSS_SELECTOR, "tr.candidate.chosen").text
    assert (
        "Janet" in browser.find_element(By.ID, "prompt").text
        or len(browser.find_element(By.ID, "prompt").text) > 20
    )
    browser.find_element(By.ID, "tokens-link").click()
    WebDriverWait(browser, 10).until(lambda d: "/tokens/" in d.current_url)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    tip = hover_tip(browser, 1)
    assert "alternatives:" in tip and "local/smollm2-135m" in tip
    assert len(browser.find_elements(By.CSS_SELECTOR, "#tip table.alternatives tr")) == 5
    shot(browser, screenshots, "tokens-smollm2")


def test_forks_page_draws_the_chart_and_marks_the_fork(
    browser: Any, server: LiveServer, screenshots: Path
) -> None:
    assert visit(browser, server.url + "/") == []
    browser.find_element(By.CSS_SELECTOR, '#runs-body tr[data-run="forks"] a').click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("/runs/forks"))
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    chart = browser.find_element(By.ID, "forks-chart")
    assert chart.is_displayed() and chart.size["width"] > 600
    fork = browser.find_element(By.CSS_SELECTOR, "#forks-chart line.fork")
    assert fork.get_attribute("data-index") == str(FORKS_AT)
    lines = browser.find_elements(By.CSS_SELECTOR, "#forks-chart polyline.outcome")
    assert [line.get_attribute("data-outcome") for line in lines] == ["say", "yes", "no"]
    tokens = browser.find_elements(By.CSS_SELECTOR, "#fork-tokens .tok")
    assert len(tokens) == len(FORKS_ANSWER)  # one character per fake-model token
    marked = browser.find_elements(By.CSS_SELECTOR, "#fork-tokens .tok.fork")
    assert [t.text for t in marked] == ["X"] and "forking token" in (marked[0].get_attribute("title") or "")
    assert marked[0].value_of_css_property("background-color") != tokens[0].value_of_css_property(
        "background-color"
    )
    assert texts(browser, "#forks-table tbody td:nth-child(2)") == ["X"]
    shot(browser, screenshots, "forks")


def test_compare_lists_the_differing_tasks_first(browser: Any, server: LiveServer, screenshots: Path) -> None:
    assert visit(browser, server.url + "/") == []
    for run in ("fake-a", "fake-b"):
        browser.find_element(By.CSS_SELECTOR, f"input.pick[value='{run}']").click()
    button = browser.find_element(By.ID, "compare-picked")
    assert button.is_enabled()
    button.click()
    WebDriverWait(browser, 10).until(lambda d: "/compare?" in d.current_url)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    rows = browser.find_elements(By.CSS_SELECTOR, "#compare tbody tr")
    order = [(r.get_attribute("data-task"), r.get_attribute("data-diff")) for r in rows]
    # t0: passed in A, failed in B; t2: the reverse; t1: both pass with other answers; t5: errors in both.
    assert order[:2] == [("t0", "outcome differs"), ("t2", "outcome differs")]
    assert order[2] == ("t1", "answer differs")
    assert sorted(order[3:]) == [("t3", "same"), ("t4", "same"), ("t5", "same")]
    assert "outcome differs: 2" in browser.find_element(By.ID, "diff-counts").text
    shot(browser, screenshots, "compare")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/runs/nope", "no run 'nope'"),
        ("/runs/fake-a/tasks/t99", "has no task 't99'"),
        ("/runs/mcts/tree/q-42?node=zzz", "has no node 'zzz'"),
        ("/runs/fake-a/tree/t1", "has no search tree"),
        ("/runs/mcts/tokens/q-42", "has no token detail"),
        ("/runs/fake-a?page=9", "page 9 is out of range"),
        ("/runs/fake-a?outcome=weird", "unknown outcome 'weird'"),
        ("/compare?a=fake-a&b=nope", "no batch run 'nope'"),
    ],
)
def test_bad_links_say_what_is_wrong(browser: Any, server: LiveServer, path: str, message: str) -> None:
    errors = visit(browser, server.url + path)
    assert all("status of 40" in e["message"] for e in errors)  # the page's own status, nothing else
    assert message in browser.find_element(By.ID, "error-message").text
    assert "Traceback" not in browser.page_source
