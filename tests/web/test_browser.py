"""The cockpit in a real browser: headless Chromium (Debian's chromium and chromium-driver, which .ci/run installs)
driven by Selenium against a real uvicorn on 127.0.0.1 over a DB real paper agents wrote. The pages load with no
console error, the charts carry the DB's numbers, a click on a trade opens its explanation, force-exit works end to
end on a paper agent, and nothing answers without the token. TB_WRITE_SCREENSHOTS=1 writes a PNG of each page to
docs/screenshots/ (for the README)."""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from cockpit_env import TOKEN, web_settings
from tracer.store import Store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(not (Path(CHROMIUM).is_file() and Path(DRIVER).is_file()),
                                reason="headless browser tests need Debian's chromium and chromium-driver "
                                       "(apt-get install -y chromium chromium-driver; .ci/run installs them)")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LOG = logging.getLogger("test-browser")


@pytest.fixture
def browser(tmp_path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-extensions", "--window-size=1280,1100", f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait(cond: Callable[[], Any], timeout: float = 20.0) -> Any:
    end = time.time() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.time() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def requested_urls(driver: Any) -> set[str]:
    """Every URL the pages asked for since the last call (Chrome's performance log)."""
    import json
    out = set()
    for e in driver.get_log("performance"):
        msg = json.loads(e["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            out.add(msg["params"]["request"]["url"])
    return out


def login(driver: Any, url: str) -> None:
    from selenium.webdriver.common.by import By
    driver.get(url + "/login")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.ID, "login").click()
    wait(lambda: driver.current_url.rstrip("/") == url)


def shot(driver: Any, name: str) -> None:
    if os.environ.get("TB_WRITE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return Math.min(document.body.scrollHeight, 1500)")
        driver.set_window_size(1280, max(800, height + 40))
        driver.save_screenshot(str(SHOTS / f"{name}.png"))
        driver.set_window_size(1280, 1100)


def test_nothing_answers_without_the_token(server, browser):
    from selenium.webdriver.common.by import By
    for path in ("/", "/signals", "/research", "/backtests", "/symbol?symbol=BTC/USD", "/trade/1"):
        browser.get(server.url + path)
        assert browser.current_url.endswith("/login"), path
    browser.get(server.url + "/api/v1/agents")
    assert "missing or wrong token" in browser.find_element(By.TAG_NAME, "body").text
    browser.get(server.url + "/static/cockpit.js")          # the static files too
    assert browser.current_url.endswith("/login")
    browser.get(server.url + "/login")
    browser.find_element(By.ID, "token").send_keys("wrong")
    browser.find_element(By.ID, "login").click()
    assert wait(lambda: browser.find_elements(By.ID, "error"))[0].text == "wrong token"
    shot(browser, "login")


def test_pages_load_without_console_errors_and_charts_carry_the_db_numbers(server, browser):
    from selenium.webdriver.common.by import By
    st = Store(server.settings.db_path)
    login(browser, server.url)
    for agent in ("hybrid", "futures"):
        canvas = browser.find_element(By.CSS_SELECTOR, f"canvas.equity[data-agent='{agent}']")
        last = st.last_run(agent)["equity"]
        assert float(wait(lambda: canvas.get_attribute("data-last"))) == pytest.approx(last)
        assert canvas.get_attribute("data-count") == "40"
        eq = browser.find_element(By.CSS_SELECTOR, f"#agent-{agent} [data-field='equity']")
        assert float(eq.get_attribute("data-value")) == pytest.approx(last)
        n, pnl, _ = st.trade_stats(agent)
        tot = browser.find_element(By.CSS_SELECTOR, f"#agent-{agent} [data-field='total_pnl']")
        assert float(tot.get_attribute("data-value")) == pytest.approx(pnl)
    rows = browser.find_elements(By.CSS_SELECTOR, "#positions tbody tr[data-symbol]")
    assert len(rows) == st.conn.execute("SELECT COUNT(*) FROM positions WHERE status='open'").fetchone()[0]
    # live refresh: the status line is written by the poller without a reload
    wait(lambda: browser.find_element(By.ID, "status").text.startswith("updated"))
    shot(browser, "overview")

    sym = st.conn.execute("SELECT symbol FROM trades ORDER BY id LIMIT 1").fetchone()[0]
    browser.get(server.url + "/symbol?symbol=" + sym)
    candles = browser.find_element(By.ID, "candles")
    clock = max(st.last_run(a)["clock"] for a in ("hybrid", "futures"))
    from tracer.data.replay import bundled_dir, candle_path, load_candles
    df = load_candles(candle_path(bundled_dir(), sym))
    df = df[df.index <= clock]
    assert float(candles.get_attribute("data-last-close")) == pytest.approx(df["close"].iloc[-1])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#markers tbody tr.trade")) >= 2     # an entry and an exit
    shot(browser, "symbol")

    browser.get(server.url + "/signals")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#signals tbody tr")) == 300
    shot(browser, "signals")
    browser.get(server.url + "/research")
    calls = st.conn.execute("SELECT COUNT(*) FROM research_calls").fetchone()[0]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#calls tbody tr")) == calls > 0
    assert len(browser.find_elements(By.CSS_SELECTOR, "#evals tbody tr")) == 1
    assert browser.find_element(By.CSS_SELECTOR, "pre.digest").text
    shot(browser, "research")
    browser.get(server.url + "/backtests")
    overlay = browser.find_element(By.ID, "overlay")
    assert set(wait(lambda: overlay.get_attribute("data-runs")).split(",")) == {"hybrid-jan", "futures-jan"}
    assert len(browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 2
    shot(browser, "backtests")
    assert errors(browser) == []
    # nothing fetched from anywhere but the cockpit itself (no CDN, font or script from the network)
    urls = requested_urls(browser)
    assert any(u.endswith("/static/cockpit.js") for u in urls) and any("/api/v1/" in u for u in urls)
    web = {u for u in urls if u.split(":", 1)[0] in ("http", "https", "ws", "wss")}   # not the browser's own chrome://
    assert web and {u for u in web if not u.startswith(server.url + "/")} == set()
    st.close()


def test_a_click_on_a_trade_opens_its_explanation(server, browser):
    from selenium.webdriver.common.by import By
    st = Store(server.settings.db_path)
    login(browser, server.url)
    row = browser.find_element(By.CSS_SELECTOR, "table.trades tbody tr.trade")
    href = row.get_attribute("data-href")
    oid = href.rsplit("/", 1)[1]
    row.find_elements(By.TAG_NAME, "td")[3].click()
    wait(lambda: "/trade/" in browser.current_url)
    ex = browser.find_element(By.ID, "explanation")
    assert ex.get_attribute("data-order-id") == oid
    trail = st.order_trail(oid)
    assert trail["signal"]["decision_reason"] in browser.find_element(By.ID, "decision").text
    fills = browser.find_elements(By.CSS_SELECTOR, "li.fill")
    assert fills and f"{trail['orders'][0]['fills'][0]['price']}" in fills[0].text
    assert browser.find_elements(By.CSS_SELECTOR, "li.closed-trade")
    assert errors(browser) == []
    shot(browser, "trade")
    st.close()


def test_force_exit_end_to_end_on_a_paper_agent(server, browser):
    from selenium.webdriver.common.by import By
    from tracer.agents.hybrid import build
    st = Store(server.settings.db_path)
    held = st.open_positions("hybrid")[0]
    login(browser, server.url)
    # entries stopped first (the button writes controls as /stopentry does): the closed symbol is not bought again
    browser.find_element(By.CSS_SELECTOR, "button.ctl[data-action='stop-entry'][data-agent='hybrid']").click()
    assert "paused hybrid" in wait(lambda: browser.find_element(By.ID, "control-message").text)
    assert st.is_paused("hybrid") and st.control_of("hybrid")["reason"] == "stopentry by web"
    wait(lambda: browser.find_element(By.CSS_SELECTOR, "#agent-hybrid [data-field='paused']").is_displayed())
    sel = f"#positions tr[data-agent='hybrid'][data-symbol='{held.symbol}']"
    button = browser.find_element(By.CSS_SELECTOR, sel + " button.force-exit")
    button.click()
    assert button.text == "Confirm" and st.pending_requests("hybrid") == []     # the first click only arms it
    button.click()
    msg = wait(lambda: (lambda t: t if "forced exit" in t else "")(browser.find_element(By.ID, "control-message").text))
    assert "forced exit queued" in msg
    [req] = st.pending_requests("hybrid", "force_exit")
    assert req["target"] == held.symbol and req["actor"] == "web"
    loop = build(web_settings(server.folder), LOG)            # the agent's next cycles carry it out
    loop.run(cycles=2)
    loop.store.close()
    [t] = st.conn.execute("SELECT * FROM trades WHERE entry_order_id=?", (held.entry_order_id,)).fetchall()
    assert t["exit_reason"] == "force_exit"
    # the live refresh drops the closed position from the table without a reload
    wait(lambda: not browser.find_elements(By.CSS_SELECTOR, sel), timeout=30)
    assert st.control_requests("hybrid")[0]["status"] == "done"
    assert errors(browser) == []
    st.close()


def test_open_position_rows_follow_the_db_and_keep_a_queued_force_exit(server, browser):
    """The page is left open (it refreshes every second here). The agent's next cycle raises the trailing stop and
    closes half the position (save_positions upserts qty and stop_loss): the row shows the DB's numbers, and a
    force-exit already queued on it stays queued."""
    from dataclasses import replace

    from selenium.webdriver.common.by import By
    st = Store(server.settings.db_path)
    login(browser, server.url)
    opened = st.open_positions("hybrid")
    p = opened[0]
    sel = f"#positions tr[data-agent='hybrid'][data-symbol='{p.symbol}']"
    wait(lambda: browser.find_element(By.ID, "status").text.startswith("updated"))
    button = browser.find_element(By.CSS_SELECTOR, sel + " button.force-exit")
    button.click()
    button.click()
    wait(lambda: "forced exit queued" in browser.find_element(By.ID, "control-message").text)
    moved = replace(p, qty=p.qty / 2, stop_loss=p.stop_loss * 1.02)
    with st.transaction():
        st.save_positions("hybrid", [moved] + opened[1:])
    db = st.conn.execute("SELECT qty, stop_loss FROM positions WHERE entry_order_id=?", (p.entry_order_id,)).fetchone()

    def shown() -> tuple[float, float]:
        cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, sel + " td")]
        return float(cells[3]), float(cells[5])

    got = wait(lambda: (lambda q, stop: (q, stop) if q == pytest.approx(db["qty"], rel=1e-5) else None)(*shown()),
               timeout=10)
    assert got == (pytest.approx(db["qty"], rel=1e-5), pytest.approx(db["stop_loss"], rel=1e-5))
    assert len(browser.find_elements(By.CSS_SELECTOR, sel)) == 1
    row = browser.find_element(By.CSS_SELECTOR, sel)
    assert row.get_attribute("data-entry") == p.entry_order_id
    queued = row.find_element(By.CSS_SELECTOR, "button.force-exit")
    assert (queued.text, queued.is_enabled()) == ("exit queued", False)
    assert errors(browser) == []
    st.close()
