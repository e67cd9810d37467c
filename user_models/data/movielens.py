"""MovieLens-100K: read a local copy (RecBole atomic or the original layout) or download it.

The archive comes from GroupLens and is checked against the MD5 that GroupLens publishes next to it
(``ml-100k.zip.md5``) and its size before anything is extracted. MovieLens may not be redistributed: the
files stay where the user put them and never enter the dataset artifact (only their sha256 does).
"""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from user_models.data.readers import RawItems, RawLog, read_items, read_log
from user_models.errors import InputError

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_MD5 = "0e33842e24a9c977be4e0107933c0723"
"""Published by GroupLens at ``ml-100k.zip.md5``."""
ML100K_MEMBERS = ("ml-100k/u.data", "ml-100k/u.item", "ml-100k/u.genre", "ml-100k/README")
DEFAULT_CACHE = Path("~/.cache/recsim/ml-100k")
DOWNLOAD_TIMEOUT_S = 60.0

urlopen = urllib.request.urlopen
"""The opener :func:`download_ml100k` uses (tests replace it; they never touch the network)."""


def read_ml100k(data_dir: str | Path) -> tuple[RawLog, RawItems]:
    """The ratings and movies of a local MovieLens-100K copy.

    ``data_dir`` may hold the RecBole atomic files (``ml-100k.inter``, ``ml-100k.item``) or the original
    GroupLens files (``u.data``, ``u.item``).
    """
    root = Path(data_dir)
    if (root / "ml-100k.inter").is_file():
        log = read_log(root / "ml-100k.inter", "recbole")
        item_file = root / "ml-100k.item"
        fmt = "recbole"
    elif (root / "u.data").is_file():
        log = read_log(root / "u.data", "movielens")
        item_file = root / "u.item"
        fmt = "movielens"
    else:
        raise InputError(f"{root}: no MovieLens-100K files (expected ml-100k.inter or u.data); pass the "
                         "directory with --data-dir or fetch it with --download")
    if not item_file.is_file():
        raise InputError(f"{item_file}: missing; MovieLens-100K needs its movie file next to the ratings")
    return log, read_items(item_file, fmt)  # type: ignore[arg-type]


def download_ml100k(target: str | Path | None = None, url: str = ML100K_URL) -> Path:
    """Download and verify the GroupLens archive, extract ``u.data``/``u.item`` into ``target``.

    Returns ``target`` (default ``~/.cache/recsim/ml-100k``). A copy already there is reused.

    Raises:
        InputError: no network, an HTTP error, or a checksum mismatch (nothing is extracted then).
    """
    root = Path(target).expanduser() if target is not None else DEFAULT_CACHE.expanduser()
    if (root / "u.data").is_file() and (root / "u.item").is_file():
        return root
    try:
        with urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            payload = response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(f"{url}: download failed ({reason}); no network? Download the archive elsewhere, "
                         "unzip it and pass --data-dir") from None
    digest = hashlib.md5(payload, usedforsecurity=False).hexdigest()
    if digest != ML100K_MD5:
        raise InputError(f"{url}: checksum mismatch (md5 {digest}, expected {ML100K_MD5}); the download is "
                         "corrupt or the archive changed; nothing was extracted")
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
        members = {name: archive.read(name) for name in ML100K_MEMBERS if name in archive.namelist()}
    except zipfile.BadZipFile as exc:
        raise InputError(f"{url}: not a zip archive ({exc})") from None
    for needed in ("ml-100k/u.data", "ml-100k/u.item"):
        if needed not in members:
            raise InputError(f"{url}: archive lacks {needed}")
    root.mkdir(parents=True, exist_ok=True)
    for name, data in members.items():
        dest = root / Path(name).name
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
    return root
