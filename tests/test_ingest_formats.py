"""Dataset layouts: RecBole atomic files, MovieLens u.data/u.item, SASRec text, and the ml-100k download.

All files here are tiny and synthetic (written into tmp_path); the real MovieLens data is never copied.
"""

from __future__ import annotations

import hashlib
import io
import urllib.error
import zipfile
from pathlib import Path

import pytest

from user_models.data import movielens
from user_models.data.prepare import PrepareConfig, prepare
from user_models.data.readers import companion_items, infer_format, read_items, read_log
from user_models.errors import InputError

NO_KCORE = PrepareConfig(min_user_events=1, min_item_events=1)

U_DATA = "1\t10\t5\t881250949\n1\t20\t1\t881250949\n2\t10\t3\t881250950\n"


def u_item_line(item: int, title: str, genres: set[int]) -> str:
    flags = "|".join("1" if g in genres else "0" for g in range(19))
    return f"{item}|{title}|01-Jan-1995||http://example.invalid/{item}|{flags}\n"


def write_movielens(root: Path) -> Path:
    root.mkdir()
    (root / "u.data").write_text(U_DATA)
    # Latin-1 like the real file: the title has a byte that is not valid UTF-8.
    text = u_item_line(10, "Caf\xe9 (1995)", {1, 5}) + u_item_line(20, "Plain (1996)", set())
    (root / "u.item").write_bytes(text.encode("latin-1"))
    return root


def test_movielens_original_layout(tmp_path):
    root = write_movielens(tmp_path / "ml")
    assert infer_format(root) == "movielens"
    log, items = movielens.read_ml100k(root)
    ds = prepare(log, NO_KCORE, items)
    assert ds.items.select("raw_id", "title", "category").rows() == [
        ("10", "Café (1995)", "Action|Comedy"), ("20", "Plain (1996)", None)]
    assert ds.behaviors == ("dislike", "neutral", "like")
    # user 1 rated 10 then 20 in the same second: file order is kept
    assert ds.sequences.user(0)[0].tolist() == [1, 2]
    assert ds.sequences.user(0)[1].tolist() == [3, 1]


def test_recbole_atomic_files(tmp_path):
    (tmp_path / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "7\t1\t4\t100.0\n7\t2\t2\t200.0\n8\t1\t5\t150.0\n")
    (tmp_path / "toy.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        '1\tToy "Story"\t1995\tAnimation Children\'s Comedy\n2\tGoldenEye\t1995\tAction\n')
    assert infer_format(tmp_path / "toy.inter") == "recbole"
    item_file = companion_items(tmp_path / "toy.inter", "recbole")
    assert item_file == tmp_path / "toy.item"
    ds = prepare(read_log(tmp_path / "toy.inter"), NO_KCORE, read_items(item_file, "recbole"))
    assert ds.items.select("title", "category").rows() == [
        ('Toy "Story"', "Animation|Children's|Comedy"), ("GoldenEye", "Action")]
    assert ds.meta.extra["columns"] == {"user": "user_id", "item": "item_id", "timestamp": "timestamp",
                                        "rating": "rating"}
    assert ds.interactions["timestamp"].to_list() == [100, 200, 150]


def test_sasrec_bad_line_is_named(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text("1 2\n1 3\n1 2 3\n")
    with pytest.raises(InputError, match=r"seq.txt: line 3: expected 'user item', got '1 2 3'"):
        read_log(path)


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-100k/u.data", U_DATA)
        z.writestr("ml-100k/u.item", u_item_line(10, "A", {1}) + u_item_line(20, "B", {2}))
    return buf.getvalue()


class _Response(io.BytesIO):
    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_download_verifies_checksum_and_extracts(tmp_path, monkeypatch):
    payload = _zip_bytes()
    seen = []
    monkeypatch.setattr(movielens, "urlopen", lambda url, timeout: seen.append(url) or _Response(payload))
    monkeypatch.setattr(movielens, "ML100K_MD5", hashlib.md5(payload).hexdigest())
    root = movielens.download_ml100k(tmp_path / "cache")
    assert seen == [movielens.ML100K_URL]
    assert sorted(p.name for p in root.iterdir()) == ["u.data", "u.item"]
    log, items = movielens.read_ml100k(root)
    assert prepare(log, NO_KCORE, items).meta.n_interactions == 3
    # a second call reuses the copy without touching the network
    monkeypatch.setattr(movielens, "urlopen", lambda url, timeout: pytest.fail("network used"))
    assert movielens.download_ml100k(tmp_path / "cache") == root


def test_download_checksum_mismatch_extracts_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(movielens, "urlopen", lambda url, timeout: _Response(_zip_bytes()))
    with pytest.raises(InputError, match="checksum mismatch"):
        movielens.download_ml100k(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_download_without_network_is_a_clear_error(tmp_path, monkeypatch):
    def offline(url: str, timeout: float) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(movielens, "urlopen", offline)
    with pytest.raises(InputError, match="download failed .* no network"):
        movielens.download_ml100k(tmp_path / "cache")
