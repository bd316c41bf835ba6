"""Attribute-list ids in SQLite: kept across restarts, agreed on by processes sharing them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daxproxy.core.config import SettingError, Settings
from daxproxy.dax.attribute_lists import AttributeLists, Full
from daxproxy.edge.cli import main
from daxproxy.service.attribute_store import (
    FILE_NAME,
    SqliteListStore,
    default_data_dir,
    open_store,
)


def test_ids_outlive_the_store(tmp_path: Path) -> None:
    store = SqliteListStore(str(tmp_path / "data"))
    first = AttributeLists(store=store)
    ab, c = first.id_of(("a", "b")), first.id_of(("c",))
    assert ab >= 2
    store.close()
    again = AttributeLists(store=SqliteListStore(str(tmp_path / "data")))
    # A new list after the restart gets a new id, never one given before.
    d = again.id_of(("d",))
    assert d not in (1, ab, c)
    assert again.names_of(ab) == ("a", "b")
    assert again.names_of(c) == ("c",)
    assert again.id_of(("a", "b")) == ab


def test_processes_sharing_the_file_agree(tmp_path: Path) -> None:
    one = AttributeLists(store=SqliteListStore(str(tmp_path)))
    two = AttributeLists(store=SqliteListStore(str(tmp_path)))
    x = one.id_of(("x",))
    assert two.id_of(("x",)) == x  # found, not assigned again
    y = two.id_of(("y",))
    assert y != x
    assert one.names_of(y) == ("y",)  # added by the other, read from the file


def test_the_cap_counts_every_process_lists(tmp_path: Path) -> None:
    one = AttributeLists(max_lists=3, store=SqliteListStore(str(tmp_path)))
    two = AttributeLists(max_lists=3, store=SqliteListStore(str(tmp_path)))
    one.id_of(("a",))
    two.id_of(("b",))  # with the empty list, three lists are named
    with pytest.raises(Full):
        one.id_of(("c",))
    assert two.names_of(one.id_of(("a",))) == ("a",)


@pytest.mark.parametrize("list_id", [0, -5, 2**63, 2**70, 999])
def test_ids_never_given_have_no_names(tmp_path: Path, list_id: int) -> None:
    lists = AttributeLists(store=SqliteListStore(str(tmp_path)))
    assert lists.names_of(list_id) is None


def test_names_keep_order_and_any_text(tmp_path: Path) -> None:
    lists = AttributeLists(store=SqliteListStore(str(tmp_path)))
    names = ("z", "ä ☃", 'a"b', "")
    list_id = lists.id_of(names)
    fresh = AttributeLists(store=SqliteListStore(str(tmp_path)))
    assert fresh.names_of(list_id) == names
    assert fresh.id_of(("",)) != list_id


def test_the_default_data_dir_is_per_user() -> None:
    assert default_data_dir({"XDG_DATA_HOME": "/x"}) == "/x/daxproxy"
    assert default_data_dir({}) == os.path.expanduser("~/.local/share/daxproxy")


def test_open_store_makes_the_data_dir(tmp_path: Path) -> None:
    store = open_store(Settings(data_dir=str(tmp_path / "a" / "b")))
    assert store.path == str(tmp_path / "a" / "b" / FILE_NAME)
    store.close()


def test_a_data_dir_that_cannot_be_made_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SettingError) as caught:
        open_store(Settings(data_dir=str(tmp_path / "file" / "data")))
    assert caught.value.setting == "data_dir"
    assert str(tmp_path / "file" / "data") in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_data_dir_that_cannot_be_written_names_the_setting(tmp_path: Path) -> None:
    SqliteListStore(str(tmp_path)).close()  # the file is there: only a write would fail
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(SettingError) as caught:
            open_store(Settings(data_dir=str(tmp_path)))
        assert caught.value.setting == "data_dir"
    finally:
        tmp_path.chmod(0o700)


def test_the_command_line_checks_the_data_dir_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 with the one line of a bad setting, as the settings' own checks give it,
    before any process, backend or listener starts."""
    (tmp_path / "file").write_text("")
    argv = ["--data-dir", str(tmp_path / "file"), "--upstream", "http://127.0.0.1:9"]
    assert main(argv, {}) == 2
    assert capsys.readouterr().err.startswith("daxproxy: setting 'data_dir': ")
