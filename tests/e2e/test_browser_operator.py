"""The operator's journeys in a real headless Chromium on the embedded default, started as the README starts it
(`smsmeter serve --demo`, nothing configured; the web service binds a free port, port 0): every command shows
its outcome on the page as it happens, without a reload.

- relay off, then relay on for a subscriber with credit: each reaches 1:1, seen live, and the reason the
  operator typed is kept on the command and in the audit log;
- relay on for the demo subscriber with no credit (Olga Sokolova): the meter refuses, and the page says why in
  words ("no credit: balance $0.00") and what to do;
- a tariff change to time of use reaches 1:1;
- an alarm is acknowledged;
- the console in Romanian and Russian shows no untranslated code, the language switch is in sight on every
  page, and no page resource fails to load on the main pages.
The last page of each journey (and a few on the way) is a screenshot under tests/artifacts/<journey>/."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.support.browser import Shots, chromium, new_context, require_chromium
from tests.support.codes import shown_codes
from tests.support.service import RunningService, running_service
from web import i18n

IVAN = "640100100010002"  # credit on the meter
JOHN = "640100100020001"  # credit, on the flat tariff
OLGA = "640100100030001"  # no credit: the meter has cut the supply
FINAL = "() => document.querySelector('[data-testid=outcome]')?.dataset.final === 'true'"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    require_chromium()
    with running_service(tmp_path_factory.mktemp("service"), {"SMSMETER_HTTP_PORT": "0"}, args=("--demo",)) as running:
        yield running


def _sign_in(browser: object, service: RunningService, locale: str = "en-US") -> object:
    username, password = (service.log_path.parent / "var" / "demo-login.txt").read_text().split()[:2]
    page = new_context(browser, locale=locale).new_page()  # type: ignore[attr-defined]
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(service.base_url + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/console"))
    return page


def _card(page: object, service: RunningService, code: str) -> None:
    page.goto(service.base_url + f"/console/subscribers?q={code}")  # type: ignore[attr-defined]
    page.click("[data-testid=subscriber-link]")  # type: ignore[attr-defined]
    page.wait_for_selector("[data-testid=subscriber-name]")  # type: ignore[attr-defined]


def _relay(page: object, action: str, reason: str) -> list[str]:
    """Send relay off/on from the card; the states the outcome box showed until it was final, in order."""
    page.fill("[data-testid=relay-reason]", reason)  # type: ignore[attr-defined]
    page.click(f"[data-testid=relay-{action}]")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(rf"ok=relay_{action}&command=\d+"))  # type: ignore[attr-defined]
    return _follow(page)


def _follow(page: object) -> list[str]:
    """Watch the outcome box (no reload) until the command is final; the states it went through."""
    page.evaluate(  # type: ignore[attr-defined]
        """() => {
            const box = document.querySelector('[data-testid=outcome]');
            window.seen = [];
            const note = () => { const s = box.dataset.state; if (s && window.seen.at(-1) !== s) window.seen.push(s); };
            note();
            new MutationObserver(note).observe(box, { attributes: true });
        }"""
    )
    page.wait_for_function(FINAL, timeout=60_000)  # type: ignore[attr-defined]
    seen: list[str] = page.evaluate("() => window.seen")  # type: ignore[attr-defined]
    return seen


def test_relay_off_then_on_with_credit_reach_1_1_live(service: RunningService) -> None:
    shots = Shots("operator-relay-off-on")
    with chromium() as browser:
        page = _sign_in(browser, service)
        _card(page, service, IVAN)
        label = page.locator("label[for^=relay-reason]")  # type: ignore[attr-defined]
        assert "required" in (label.get_attribute("class") or "")  # marked before the browser complains
        assert page.locator("[data-testid=relay-reason][required]").count() == 1  # type: ignore[attr-defined]

        seen = _relay(page, "off", "meter inspection at the door")
        assert "queued" in page.inner_text("[data-testid=flash]")  # type: ignore[attr-defined]
        assert seen[-1] == "1:1"
        assert page.inner_text("[data-testid=outcome-words]") == "Processed by the meter."  # type: ignore[attr-defined]
        shots.take(page, "relay-off-at-1-1")

        seen = _relay(page, "on", "inspection done, supply back")
        assert seen[-1] == "1:1"
        assert page.get_attribute("[data-testid=outcome]", "class").count("alert-success") == 1  # type: ignore[attr-defined]
        assert page.locator("[data-testid=outcome-reason]").is_hidden()  # type: ignore[attr-defined]
        shots.take(page, "relay-on-at-1-1")

        page.click("[data-testid=outcome] a")  # type: ignore[attr-defined]
        page.wait_for_url(re.compile(r"/console/commands/\d+$"))  # type: ignore[attr-defined]
        assert page.inner_text("[data-testid=command-note]") == "inspection done, supply back"  # type: ignore[attr-defined]
        page.goto(service.base_url + "/console/audit?action=meter.relay_on")  # type: ignore[attr-defined]
        assert "inspection done, supply back" in page.content()  # type: ignore[attr-defined]
        shots.take(page, "audit")


def test_relay_on_without_credit_is_refused_in_words(service: RunningService) -> None:
    shots = Shots("operator-relay-on-refused")
    with chromium() as browser:
        page = _sign_in(browser, service)
        _card(page, service, OLGA)
        assert page.inner_text("[data-testid=subscriber-name]") == "Olga Sokolova"  # type: ignore[attr-defined]
        seen = _relay(page, "on", "customer asks for the supply")
        assert "Relay on queued" in page.inner_text("[data-testid=flash]")  # type: ignore[attr-defined]
        assert seen[-1] == "rejected_meter"
        box = page.locator("[data-testid=outcome]")  # type: ignore[attr-defined]
        assert "alert-danger" in (box.get_attribute("class") or "")
        assert page.inner_text("[data-testid=outcome-state]") == "rejected meter"  # type: ignore[attr-defined]
        assert page.inner_text("[data-testid=outcome-words]") == "Refused by the meter."  # type: ignore[attr-defined]
        assert page.inner_text("[data-testid=outcome-reason]") == "no credit: balance $0.00"  # type: ignore[attr-defined]
        advice = page.inner_text("[data-testid=outcome-advice]")  # type: ignore[attr-defined]
        assert "Top up the account" in advice
        assert "emergency credit" in advice
        shots.take(page, "refused-in-words")


def test_a_tariff_change_to_time_of_use_reaches_1_1(service: RunningService) -> None:
    shots = Shots("operator-tariff-time-of-use")
    with chromium() as browser:
        page = _sign_in(browser, service)
        _card(page, service, JOHN)
        assert page.inner_text("[data-testid=tariff]") == "Residential flat"  # type: ignore[attr-defined]
        page.select_option("form[action$='/tariff'] select[name=tariff_id]", label="Residential time of use")  # type: ignore[attr-defined]
        page.click("form[action$='/tariff'] button")  # type: ignore[attr-defined]
        page.wait_for_url(re.compile(r"ok=tariff&command=\d+"))  # type: ignore[attr-defined]
        seen = _follow(page)
        assert seen[-1] == "1:1"
        assert page.inner_text("[data-outcome-kind]") == "set tariff"  # type: ignore[attr-defined]
        page.reload()  # type: ignore[attr-defined]
        assert page.inner_text("[data-testid=tariff]") == "Residential time of use"  # type: ignore[attr-defined]
        shots.take(page, "time-of-use-at-1-1")


def test_an_alarm_is_acknowledged(service: RunningService) -> None:
    shots = Shots("operator-alarm-acknowledged")
    with chromium() as browser:
        page = _sign_in(browser, service)
        page.click("nav >> text=Alarms")  # type: ignore[attr-defined]
        page.wait_for_url(re.compile(r"/console/alarms"))  # type: ignore[attr-defined]
        page.goto(service.base_url + "/console/alarms?open=true&kind=magnetic")  # type: ignore[attr-defined]
        row = page.locator("tr[data-alarm-id]:has-text('magnetic')").first  # type: ignore[attr-defined]
        alarm_id = row.get_attribute("data-alarm-id")
        shots.take(page, "open")
        row.locator("input[name=note]").fill("checked on site: magnet removed")
        row.locator("[data-testid=acknowledge]").click()
        page.wait_for_url(re.compile(r"ok=alarm_ack"))  # type: ignore[attr-defined]
        assert page.inner_text("[data-testid=flash]") == "Alarm acknowledged."  # type: ignore[attr-defined]
        page.goto(service.base_url + "/console/alarms?kind=magnetic")  # type: ignore[attr-defined]
        assert page.locator(f"[data-testid=alarm-ack-{alarm_id}] [data-testid=acknowledged]").count() == 1  # type: ignore[attr-defined]
        shots.take(page, "acknowledged")
        page.goto(service.base_url + "/console/audit?action=alarm.acknowledge")  # type: ignore[attr-defined]
        assert "magnet removed" in page.content()  # type: ignore[attr-defined]
        shots.take(page, "audit")


MAIN_PAGES = (
    "/console/subscribers",
    f"/console/subscribers?q={OLGA}",
    "/console/alarms",
    "/console/communication",
    "/console/wrong-sms",
    "/console/arrears",
    "/console/tariffs",
    "/console/reports",
    "/console/audit",
    "/console/transformers",
    "/console/groups",
    "/console/meters/1",
)


def _raw_codes(page: object, language: str) -> list[str]:
    """Codes shown as stored (`rejected_meter`, `no_credit`, `cover_open` …) where the language has words for
    them; data that is a code by nature (meter numbers, payloads, actor ids: `.code`) is not read."""
    text: str = page.evaluate(  # type: ignore[attr-defined]
        """() => {
            const skip = '.code, code, pre, script, style, option';
            const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            const texts = [];
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                if (!node.parentElement.closest(skip)) texts.push(node.textContent);
            }
            return texts.join(' ');
        }"""
    )
    with i18n.language(language):
        codes = {c for group in shown_codes().values() for c in group if i18n.gettext(c) != c}
    return sorted(c for c in codes if re.search(rf"(?<![\w.:/-]){re.escape(c)}(?![\w:-])", text))


@pytest.mark.parametrize("language", ["ro", "ru"])
def test_the_console_in_romanian_and_russian_shows_no_raw_code_and_no_page_resource_fails(
    service: RunningService, language: str
) -> None:
    shots = Shots(f"operator-console-{language}")
    failed: list[str] = []
    with chromium() as browser:
        page = _sign_in(browser, service, locale=language)
        page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)  # type: ignore[attr-defined]
        page.on(  # type: ignore[attr-defined]
            "console", lambda m: failed.append(f"{m.text} {page.url}") if "Failed to load" in m.text else None
        )
        _card(page, service, OLGA)
        _relay(page, "on", "проверка" if language == "ru" else "verificare")  # a refusal, so that its words show
        shown = {page.url: _raw_codes(page, language)}
        page.click("[data-testid=outcome] a")  # type: ignore[attr-defined]
        page.wait_for_url(re.compile(r"/console/commands/\d+$"))  # type: ignore[attr-defined]
        page.wait_for_function(FINAL)  # type: ignore[attr-defined]
        shown[page.url] = _raw_codes(page, language)
        for path in MAIN_PAGES:
            page.goto(service.base_url + path)  # type: ignore[attr-defined]
            page.wait_for_load_state("networkidle")  # type: ignore[attr-defined]
            assert page.get_attribute("html", "lang") == language  # type: ignore[attr-defined]
            assert page.locator(f"[data-testid=language-switch] [data-testid=language-{language}]").is_visible()  # type: ignore[attr-defined]
            shown[path] = _raw_codes(page, language)
        assert {path: codes for path, codes in shown.items() if codes} == {}
        shots.take(page, "audit")
        _card(page, service, OLGA)
        shots.take(page, "card")
    assert failed == []


def test_the_language_switch_is_in_sight_on_console_and_portal(service: RunningService) -> None:
    shots = Shots("language-switch")
    failed: list[str] = []
    with chromium() as browser:
        portal = new_context(browser).new_page()  # type: ignore[attr-defined]
        portal.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        portal.on("console", lambda m: failed.append(m.text) if "Failed to load" in m.text else None)
        portal.goto(service.base_url + "/portal/login")
        assert portal.locator("[data-testid=language-switch]").is_visible()
        portal.click("[data-testid=language-ru]")
        portal.wait_for_url(re.compile(r"/portal/login$"))
        assert portal.get_attribute("html", "lang") == "ru"
        _code, _password, subscriber, portal_password = (
            (service.log_path.parent / "var" / "demo-login.txt").read_text().split()[:4]
        )
        portal.fill("#code", subscriber)
        portal.fill("#password", portal_password)
        portal.click("form[action='/portal/login'] button")
        portal.wait_for_url(re.compile(r"/portal$"))
        portal.wait_for_load_state("networkidle")
        assert portal.locator("[data-testid=language-switch]").is_visible()
        portal.click("[data-testid=language-en]")
        portal.wait_for_url(re.compile(r"/portal$"))
        assert portal.get_attribute("html", "lang") == "en"
        shots.take(portal, "portal")
        console = _sign_in(browser, service)
        console.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)  # type: ignore[attr-defined]
        assert console.locator("[data-testid=language-switch]").is_visible()  # type: ignore[attr-defined]
        console.click("[data-testid=language-ro]")  # type: ignore[attr-defined]
        console.wait_for_load_state("networkidle")  # type: ignore[attr-defined]
        assert console.get_attribute("html", "lang") == "ro"  # type: ignore[attr-defined]
        shots.take(console, "console")
    assert failed == []
