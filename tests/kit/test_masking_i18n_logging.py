import json
import logging
import re
from importlib import resources
from pathlib import Path

import pytest

from citybrain.kit.export import csv_bytes, neutralise
from citybrain.kit.i18n import catalog, negotiate, translate
from citybrain.kit.logging import configure_logging, get_logger, scrub
from citybrain.kit.masking import mask_name, mask_phone, mask_resident_id


def test_masks_match_the_design() -> None:
    assert mask_resident_id("410105198503141234") == "4101**********1234"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳娜娜") == "欧**娜"


def test_catalogs_have_the_same_keys_and_every_template_key_exists() -> None:
    zh, en = catalog("zh-CN"), catalog("en")
    assert set(zh) == set(en)
    root = Path(str(resources.files("citybrain")))
    used: set[str] = set()
    for template in root.rglob("templates/**/*.html"):
        used |= set(re.findall(r"t\('([a-z_]+\.[a-z_]+)'", template.read_text("utf-8")))
    # Dynamic keys such as 'sex.' ~ person.sex are listed by hand.
    used -= {"res.tab_"}
    used |= {"sex.M", "sex.F"}
    used |= {f"res.tab_{tab}" for tab in ("reports", "residents", "scans", "passes")}
    assert used, "no template keys found"
    assert used <= set(zh), sorted(used - set(zh))


def test_language_negotiation_defaults_to_chinese() -> None:
    assert negotiate(None, None) == "zh-CN"
    assert negotiate(None, "en-GB,en;q=0.9") == "en"
    assert negotiate("zh-CN", "en") == "zh-CN"
    assert translate("home.welcome", "en", name="Li") == "Welcome, Li"


def test_scrub_masks_id_numbers_and_mobiles() -> None:
    text = "id 410105198503141234 phone 13812345678 seq 1234567"
    assert scrub(text) == "id 4101**********1234 phone 138****5678 seq 1234567"


def test_logs_never_carry_raw_personal_data(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json_lines=True)
    get_logger("test").info("lookup", detail="410105198503141234", phone="13812345678")
    logging.getLogger("stdlib").warning("called 13912345678 about 11010519491231002X")
    out = capsys.readouterr().err
    assert "410105198503141234" not in out and "13812345678" not in out
    assert "13912345678" not in out and "11010519491231002X" not in out
    first = json.loads(out.splitlines()[0])
    assert first["detail"] == "4101**********1234"


def test_exports_neutralise_formula_cells() -> None:
    assert neutralise('=HYPERLINK("x")') == '\'=HYPERLINK("x")'
    assert neutralise("+1") == "'+1" and neutralise("@a") == "'@a" and neutralise("-2") == "'-2"
    assert neutralise("张三") == "张三" and neutralise(5) == 5
    body = csv_bytes(["姓名"], [["=1+1"]]).decode("utf-8")
    assert body.startswith("\ufeff") and "'=1+1" in body


def test_times_show_in_china_standard_time() -> None:
    import datetime as dt

    from citybrain.kit.web import china_time

    assert china_time(dt.datetime(2020, 1, 24, 16, 30, tzinfo=dt.UTC)) == "2020-01-25 00:30:00"
    assert china_time(None) == "—"
