"""GET /dashboard in headless Chromium, against a real oracle and a real scout: a wrong key
shows the API's own error, the right one stays in the tab's session storage (never the URL),
and the scout's row appears. The screenshot becomes docs/dashboard.png.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them); without them the test
says so and skips, and the rest of the suite runs.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, RunningOracle, auth
from tests.swarm.conftest import ScoutProcess, complete_all, scout_status, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="no Chromium here (apt-get install chromium chromium-driver, as .ci/run does)",
)


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,960"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.usefixtures("solo_outputs")  # taken before any scout joins the shared oracle
def test_the_dashboard_shows_a_live_scout_to_the_right_key(
    swarm: RunningOracle, swarm_client: openai.OpenAI, browser: object, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    driver: WebDriver = browser  # type: ignore[assignment]
    scout = ScoutProcess(swarm, tmp_path, "dashboard-1")
    try:
        wait_for(lambda: scout_status(swarm, "dashboard-1")["connected"], 90, "scout to join")
        complete_all(swarm_client)  # some traffic for the figures and the chart
        reserved = httpx.post(
            f"{swarm.base_url}/scouts/reserve",
            json={"scout_id": "dashboard-1", "reservation_duration": 30},
            headers=auth(ADMIN_KEY),
        )
        assert reserved.status_code == 201, reserved.text
        wait = WebDriverWait(driver, 30)
        driver.get(f"{swarm.base_url}/dashboard")

        def enter(key: str) -> None:
            field = wait.until(lambda d: d.find_element(By.ID, "key"))
            wait.until(lambda d: field.is_displayed())
            field.clear()
            field.send_keys(key)
            driver.find_element(By.ID, "enter").click()

        enter("sk-oracle-" + "0" * 40)
        wait.until(lambda d: d.find_element(By.ID, "error").text)
        assert driver.find_element(By.ID, "error").text == "Incorrect API key provided."
        enter(ADMIN_KEY)
        row = wait.until(
            lambda d: [
                r for r in d.find_elements(By.CSS_SELECTOR, "#scouts tr") if "dashboard-1" in r.text
            ]
        )[0]
        assert "busy" in row.text or "idle" in row.text
        wait.until(lambda d: "dashboard-1" in d.find_element(By.ID, "reservations").text)
        assert driver.find_element(By.ID, "state").text == "operational"
        assert ADMIN_KEY not in driver.current_url
        stored = driver.execute_script("return sessionStorage.getItem('shard-dashboard-key')")
        assert stored == ADMIN_KEY
        driver.save_screenshot(str(ROOT / "docs" / "dashboard.png"))
    finally:
        scout.stop()
    wait_for(lambda: not scout_status(swarm, "dashboard-1")["connected"], 30, "scout to leave")
