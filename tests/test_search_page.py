"""The search page at `/`, in a real browser: Debian's chromium, headless, driven by selenium
through Debian's chromedriver, against a master and a replica index holding sample datasets
whose files a real data node serves.

Search, pick facets, page (and go back), open a dataset and its files, download a file and the
wget script, on the master and through the replica; the page must raise no console error and
stay readable on a narrow screen. Screenshots are saved in the test's tmp directory
(`ESGF_HA_SCREENSHOT=path` also copies the first one there, as docs/img/search-page.png is made).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from esgf_ha.records.samples import (
    SampleDataset,
    as_batch,
    cmip5_samples,
    cmip6_samples,
    write_bodies,
)
from tests.replicas import caught_up, start_master, start_replica
from tests.servers import DataServer, IndexServer

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# chromium and chromium-driver come from `make system-deps`: without them these tests fail
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT = 20.0


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[IndexServer, IndexServer, DataServer, list[SampleDataset]]]:
    base = tmp_path_factory.mktemp("page")
    root = base / "data"
    root.mkdir()
    data = DataServer(base / "data-node", {"esg_dataroot": root}).start()
    master = replica = None
    try:
        node = data.url.split("://", 1)[1]
        samples = cmip6_samples(25, data_node=node, url_base=data.url) + cmip5_samples(
            4, data_node=node, url_base=data.url
        )
        write_bodies(samples, root)
        master = start_master(base / "master")
        assert master.publish(as_batch(samples)).status_code == 200
        replica = start_replica(base / "replica", master)
        caught_up(replica, master)
        yield master, replica, data, samples
    finally:
        for server in (replica, master):
            if server is not None:
                server.stop()
        data.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic", "--window-size=1280,900",
                f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(arg)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False,
        "safebrowsing.enabled": False})  # fmt: skip
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, predicate, what: str):  # type: ignore[no-untyped-def]
    return WebDriverWait(driver, WAIT).until(lambda d: predicate(d), message=what)


def summary(driver) -> str:  # type: ignore[no-untyped-def]
    return driver.find_element(By.ID, "summary").text


def drawn(driver) -> str | None:  # type: ignore[no-untyped-def]
    """The summary once the newest state is drawn; until then the page shows an older one."""
    if driver.find_element(By.ID, "results").get_attribute("aria-busy") != "false":
        return None
    text = summary(driver)
    return text if "datasets" in text else None


def total_on_page(driver) -> int:  # type: ignore[no-untyped-def]
    return int(wait_for(driver, drawn, "results").split()[0])


def esg_total(server: IndexServer, **params: str) -> int:
    return int(server.search(type="Dataset", limit=0, **params)["response"]["numFound"])


def url_params(driver) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    return parse_qs(urlsplit(driver.current_url).query)


def downloaded(driver, suffix: str) -> Path:  # type: ignore[no-untyped-def]
    def done(_: object) -> Path | None:
        found = [p for p in driver.downloads.iterdir() if p.name.endswith(suffix)]
        return found[0] if found else None

    return wait_for(driver, done, f"a downloaded *{suffix}")


def console_errors(driver) -> list[dict]:  # type: ignore[no-untyped-def]
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.mark.parametrize("which", ["master", "replica"])
def test_search_page_in_chromium(site, browser, tmp_path: Path, which: str) -> None:  # type: ignore[no-untyped-def]
    master, replica, data, samples = site
    server = master if which == "master" else replica
    driver = browser
    driver.get(server.url + "/")
    # default view: latest versions, no replicas, all projects
    assert total_on_page(driver) == esg_total(server, latest="true", replica="false")
    # milliseconds from the start of navigation to the first results rendered (the page marks it)
    first_results = driver.execute_script(
        "return performance.getEntriesByName('first-results')[0].startTime"
    )
    assert first_results < 1000, first_results
    driver.save_screenshot(str(tmp_path / f"{which}-1-start.png"))
    if os.environ.get("ESGF_HA_SCREENSHOT") and which == "master":
        shutil.copy(tmp_path / f"{which}-1-start.png", os.environ["ESGF_HA_SCREENSHOT"])

    # from here every request takes 200 ms longer, so a read of the page between a click and
    # the newest answer would see the previous results (the page says when it is drawn)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": 200, "downloadThroughput": -1, "uploadThroughput": -1})  # fmt: skip

    # pick the project, then a facet value: counts equal esg-search's, state in the URL
    driver.find_element(By.CSS_SELECTOR, "#projects input[value='CMIP6']").click()
    wait_for(driver, lambda d: url_params(d).get("project") == ["CMIP6"], "project in URL")
    assert total_on_page(driver) == esg_total(
        server, project="CMIP6", latest="true", replica="false"
    )
    panel = driver.find_element(By.CSS_SELECTOR, "fieldset[data-facet='variable_id']")
    box = panel.find_element(By.CSS_SELECTOR, "input[value='tas']")
    shown = int(box.find_element(By.XPATH, "..").find_element(By.CLASS_NAME, "count").text)
    box.click()
    wait_for(driver, lambda d: url_params(d).get("variable_id") == ["tas"], "facet in URL")
    expected = esg_total(server, project="CMIP6", variable_id="tas", latest="true", replica="false")
    assert total_on_page(driver) == expected == shown

    # free text from the keyboard
    field = driver.find_element(By.ID, "q")
    field.clear()
    field.send_keys("historical", Keys.ENTER)
    wait_for(driver, lambda d: url_params(d).get("q") == ["historical"], "free text in URL")
    assert total_on_page(driver) == esg_total(server, project="CMIP6", variable_id="tas",
                                              query="historical", latest="true", replica="false")  # fmt: skip

    # a facet value picked from the keyboard (focus, then space)
    box = driver.find_element(
        By.CSS_SELECTOR, "fieldset[data-facet='table_id'] input[value='Amon']"
    )
    driver.execute_script("arguments[0].focus()", box)
    driver.switch_to.active_element.send_keys(Keys.SPACE)
    wait_for(driver, lambda d: url_params(d).get("table_id") == ["Amon"], "keyboard pick in URL")

    # paging, and the back button
    driver.get(server.url + "/?project=CMIP6")
    total = total_on_page(driver)
    assert total > 10
    first_page = [
        li.get_attribute("data-id")
        for li in driver.find_elements(By.CSS_SELECTOR, "#datasets > li")
    ]
    driver.find_element(By.ID, "next").click()
    wait_for(driver, lambda d: url_params(d).get("offset") == ["10"], "offset in URL")
    wait_for(driver, lambda d: "11 to" in summary(d), "second page")
    second_page = [
        li.get_attribute("data-id")
        for li in driver.find_elements(By.CSS_SELECTOR, "#datasets > li")
    ]
    assert second_page and not set(second_page) & set(first_page)
    driver.back()
    wait_for(driver, lambda d: "1 to 10" in summary(d), "first page again")

    # open a dataset: its details and files, and download one through the data node
    item = driver.find_element(By.CSS_SELECTOR, "#datasets > li")
    dataset_id = item.get_attribute("data-id")
    item.find_element(By.CSS_SELECTOR, "details.files summary").click()
    links = wait_for(driver, lambda d: item.find_elements(By.CSS_SELECTOR, "a.download"), "files")
    sample = next(s for s in samples if s.dataset["id"] == dataset_id)
    assert len(links) == len(sample.files)
    href = links[0].get_attribute("href")
    assert href.startswith(data.url + "/thredds/fileServer/")
    driver.save_screenshot(str(tmp_path / f"{which}-2-files.png"))
    links[0].click()
    name = href.rsplit("/", 1)[1]
    path = downloaded(driver, name)
    body = next(b for p, b in sample.bodies.items() if p.endswith("/" + name))
    wait_for(driver, lambda d: path.stat().st_size == len(body), "the whole file")
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(body).digest()

    # the wget script of the current selection
    driver.find_element(By.ID, "wget").click()
    script = downloaded(driver, ".sh")
    wait_for(
        driver, lambda d: "EOF--dataset.file.url.chksum_type.chksum" in script.read_text(), "script"
    )
    text = script.read_text()
    listed = re.findall(r"^'([^']+\.nc)' '(http[^']+)'", text, flags=re.M)
    files = server.search(type="File", limit=1000, project="CMIP6", latest="true",
                          replica="false")["response"]["docs"]  # fmt: skip
    assert sorted(url for _, url in listed) == sorted(str(f["url"][0]).split("|")[0] for f in files)

    # narrow screen: no horizontal scrolling
    driver.set_window_size(390, 844)
    driver.refresh()
    total_on_page(driver)
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, width
    driver.save_screenshot(str(tmp_path / f"{which}-3-narrow.png"))

    assert console_errors(driver) == []
    print(f"{which}: first results on screen {first_results:.0f} ms after navigation began")
